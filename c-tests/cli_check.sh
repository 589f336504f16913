#!/bin/sh
# The command-line tool (cli/, built by `make cli` without the library's `interpose`
# feature) against the C library (built by `make` with it):
#   (a) the tool defines none of the OpenSSL functions the library interposes, and
#   (b) target/release/libsesscache.so still defines every one of them; the names are the
#       `#[no_mangle]` functions of src/ffi/interposed.rs, read from the source each run;
#   (c) `sesscache --version` is the library's version;
#   (d) `sesscache stats URL` prints the counters for memory: and a fresh shm: segment, and
#       refuses a bad URL with exit status 1 and a message naming the bad part.
#
# Run from the top of the tree after `make lib cli`:   sh c-tests/cli_check.sh [CLI]
# (CLI defaults to target/cli/release/sesscache, where `make cli` builds it.)
# Each assertion prints "ok - ..." or "FAIL - ..." (details on "#" lines); the last line is
# "cli: N passed, M failed", and the exit status is non-zero when M > 0.
set -u
unset SESSCACHE_URL SESSCACHE_STATS SESSCACHE_LOG

B=build
CLI=${1:-target/cli/release/sesscache}
LIB=target/release/libsesscache.so
SRC=src/ffi/interposed.rs
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }
note() { sed 's/^/#   /'; }
finish() {
    echo "cli: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

mkdir -p $B
if [ ! -x "$CLI" ] || [ ! -f "$LIB" ]; then
    fail "$CLI and $LIB are built (make lib cli)"
    finish
fi

echo "== the interposed OpenSSL names: $SRC"
# The name of the function following each #[no_mangle] (or #[unsafe(no_mangle)]) attribute.
names=$(awk '
    /^[[:space:]]*#\[(unsafe\()?no_mangle\)?\]/ { want = 1; next }
    want && /fn[[:space:]]+[A-Za-z_][A-Za-z0-9_]*/ {
        s = $0; sub(/^.*fn[[:space:]]+/, "", s); sub(/[^A-Za-z0-9_].*$/, "", s)
        print s; want = 0
    }' "$SRC" 2>/dev/null | sort -u)
n_names=$(echo "$names" | grep -c .)
if [ "$n_names" -gt 0 ]; then
    pass "$n_names interposed functions in $SRC: $(echo $names)"
else
    fail "found no #[no_mangle] function in $SRC (moved? update SRC in this script)"
    finish
fi

echo "== (a) the tool defines none of them: $CLI"
nm --defined-only "$CLI" >$B/cli.nm 2>$B/cli.nm.err
# A stripped binary would pass the check below for nothing: it must have a symbol table.
if grep -Eq ' [Tt] main$' $B/cli.nm; then
    pass "(a) $CLI has a symbol table (main is defined)"
else
    fail "(a) $CLI has a symbol table (nm found no main)"
    note <$B/cli.nm.err
fi
for name in $names; do
    if grep -Eq " $name(@.*)?\$" $B/cli.nm; then
        fail "(a) the tool defines $name"
        grep -E " $name(@.*)?\$" $B/cli.nm | note
    else
        pass "(a) the tool does not define $name"
    fi
done

echo "== (b) the C library still defines (exports) every one: $LIB"
nm -D --defined-only "$LIB" >$B/cli.lib.nm 2>&1
for name in $names; do
    if grep -Eq " T $name\$" $B/cli.lib.nm; then
        pass "(b) the library exports $name"
    else
        fail "(b) the library exports $name"
    fi
done

echo "== (c) sesscache --version"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
out=$("$CLI" --version 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && [ -n "$version" ] && [ "$out" = "sesscache $version" ]; then
    pass "(c) --version prints 'sesscache $version' (Cargo.toml)"
else
    fail "(c) --version prints 'sesscache $version' (Cargo.toml)"
    echo "got '$out', exit $rc" | note
fi
# The C library's own answer, sesscache_version(), where Python can ask it.
if command -v python3 >/dev/null 2>&1; then
    so_version=$(python3 -c 'import ctypes, sys
f = ctypes.CDLL(sys.argv[1]).sesscache_version
f.restype = ctypes.c_char_p
print(f().decode())' "$(pwd)/$LIB" 2>&1)
    if [ "$so_version" = "$version" ]; then
        pass "(c) the C library's sesscache_version() is $version too"
    else
        fail "(c) the C library's sesscache_version() is $version too"
        echo "got '$so_version'" | note
    fi
fi

echo "== (d) sesscache stats URL"
# The counters, one "name value" a line, named as the fields of struct sesscache_stats in
# include/sesscache.h, in their order.
sed -n '/^typedef struct sesscache_stats {$/,/^}/s/^  uint64_t \([a-z_]*\);$/\1/p' \
    include/sesscache.h >$B/cli.fields
# stats LABEL URL: runs `sesscache stats URL`; output in $B/cli.LABEL.out and .err, exit
# status in $rc.
stats() {
    "$CLI" stats "$2" >$B/cli.$1.out 2>$B/cli.$1.err
    rc=$?
}
# counters LABEL URL: the run succeeded and printed every counter, entries 0.
counters() {
    if [ "$rc" -eq 0 ] && [ -s $B/cli.fields ] &&
       sed 's/ .*//' $B/cli.$1.out | cmp -s - $B/cli.fields &&
       ! grep -Evq '^[a-z_]+ [0-9]+$' $B/cli.$1.out &&
       grep -qx 'entries 0' $B/cli.$1.out; then
        pass "(d) stats $2: the $(wc -l <$B/cli.$1.out) counters of struct sesscache_stats, entries 0"
    else
        fail "(d) stats $2: every counter of struct sesscache_stats (exit $rc)"
        { cat $B/cli.$1.out $B/cli.$1.err; echo "expected the names:"; cat $B/cli.fields; } | note
    fi
}

stats memory 'memory:'
counters memory 'memory:'

stats bogus 'bogus:'
if [ "$rc" -eq 1 ] && [ ! -s $B/cli.bogus.out ] && grep -q "'bogus'" $B/cli.bogus.err; then
    pass "(d) stats bogus: exits 1, the message names 'bogus': $(head -n 1 $B/cli.bogus.err)"
else
    fail "(d) stats bogus: exits 1, the message names 'bogus' (exit $rc)"
    cat $B/cli.bogus.out $B/cli.bogus.err | note
fi

"$CLI" stats >$B/cli.usage.out 2>$B/cli.usage.err
rc=$?
if [ "$rc" -eq 2 ] && grep -q '^usage:' $B/cli.usage.err; then
    pass "(d) stats without a URL: usage on stderr, exit 2"
else
    fail "(d) stats without a URL: usage on stderr, exit 2 (exit $rc)"
    note <$B/cli.usage.err
fi

# A fresh shm: segment, /dev/shm/sesscache-NAME (src/store/shm/segment.rs), removed at the
# end whatever happens.
name=cli-check-$$-$(date +%s)
seg=/dev/shm/sesscache-$name
trap 'rm -f "$seg"' EXIT
trap 'exit 1' INT TERM HUP
if [ -e "$seg" ]; then
    fail "(d) $seg does not exist yet"
else
    stats shm_new "shm:$name"
    counters shm_new "shm:$name (new)"
    if [ -f "$seg" ]; then
        pass "(d) stats shm:$name made $seg"
    else
        fail "(d) stats shm:$name made $seg"
    fi
    stats shm_again "shm:$name"
    counters shm_again "shm:$name (existing)"
fi
rm -f "$seg"

echo
finish
