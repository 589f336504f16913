#!/bin/sh
# The command-line tool (cli/, built by `make cli` without the library's `interpose`
# feature) against the C library (built by `make` with it):
#   (a) the tool defines none of the OpenSSL functions the library interposes, and
#   (b) target/release/libsesscache.so still defines every one of them; the names are the
#       `#[no_mangle]` functions of src/ffi/interposed.rs, read from the source each run;
#   (c) `sesscache --version` is the library's version;
#   (d) `sesscache stats URL` refuses memory: (exit 7), a bad URL (exit 3, the message names
#       the bad part) and a missing shm: segment (exit 5), creating nothing;
#   (e) with a segment made by an unmodified `openssl s_server` preloaded with the library
#       (SESSCACHE_URL=shm:NAME): `stats` (--json, --watch) counts what the handshakes did,
#       as the server's own SESSCACHE_STATS line says; `ls` lists it; `check` accepts it and
#       a key_file made by `keygen`; `flush` empties it; `rm` removes it;
#   (f) `check` gives distinct exit statuses for a bad URL (3), a foreign-owned segment (4),
#       a missing one (5, and it is still missing afterwards), a corrupt one (6), memory:
#       (7); `ls` reports the bad segments in their rows; `rm` refuses bad names (3) and
#       says not found (8); redis: `check`, `stats` and `flush` of an absent server (and
#       of an absent cluster) fail at once (5); with a redis-server of its own, `stats`
#       counts the entries under the prefix and reads the counters' hash, `flush` deletes
#       only the entries under the prefix;
#   (g) `--help` works for the tool and every subcommand and documents the exit statuses.
#
# Run from the top of the tree after `make lib cli`:   sh c-tests/cli_check.sh [CLI]
# (e) needs the openssl command; the foreign-owned segment of (f) needs root (chown).
# (CLI defaults to target/cli/release/sesscache, where `make cli` builds it.)
# Each assertion prints "ok - ..." or "FAIL - ..." (details on "#" lines); the last line is
# "cli: N passed, M failed", and the exit status is non-zero when M > 0.
set -u
unset SESSCACHE_URL SESSCACHE_STATS SESSCACHE_LOG

B=build
CLI=${1:-target/cli/release/sesscache}
LIB=target/release/libsesscache.so
SRC=src/ffi/interposed.rs
SUITE=cli
. c-tests/checks.sh
. c-tests/ports.sh

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

echo "== (d) sesscache stats URL: what it refuses"
# The counters, one "name value" a line, named as the fields of struct sesscache_stats in
# include/sesscache.h, in their order.
sed -n '/^typedef struct sesscache_stats {$/,/^}/s/^  uint64_t \([a-z_]*\);$/\1/p' \
    include/sesscache.h >$B/cli.fields
# run LABEL ARGS...: runs the tool; output in $B/cli.LABEL.out and .err, exit status in $rc.
run() {
    _l=$1; shift
    "$CLI" "$@" >$B/cli.$_l.out 2>$B/cli.$_l.err
    rc=$?
}
# expect LABEL STATUS WHAT: the last run exited STATUS.
expect() {
    if [ "$rc" -eq "$2" ]; then
        pass "$3: exit $2: $(head -n 1 $B/cli.$1.err)"
    else
        fail "$3: exit $2 (got $rc)"
        cat $B/cli.$1.out $B/cli.$1.err | note
    fi
}

# Segments of this run, /dev/shm/sesscache-NAME (src/store/shm/segment.rs), removed at the
# end whatever happens; the server, stopped.
name=cli-check-$$-$(date +%s)
seg=/dev/shm/sesscache-$name
missing=$name-missing
foreign=$name-foreign
corrupt=$name-corrupt
dir=$(mktemp -d "${TMPDIR:-/tmp}/cli-check.XXXXXX")
SSERVER_PID=; redis_pid=
cleanup() {
    [ -n "$SSERVER_PID" ] && kill "$SSERVER_PID" 2>/dev/null
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -f "$seg" "/dev/shm/sesscache-$missing" "/dev/shm/sesscache-$foreign" \
        "/dev/shm/sesscache-$corrupt"
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

run memory stats 'memory:'
if [ "$rc" -eq 7 ] && [ ! -s $B/cli.memory.out ] && grep -q 'memory:' $B/cli.memory.err; then
    pass "(d) stats memory: is refused, exit 7: $(head -n 1 $B/cli.memory.err)"
else
    fail "(d) stats memory: is refused, exit 7 (got $rc)"
    cat $B/cli.memory.out $B/cli.memory.err | note
fi

run bogus stats 'bogus:'
if [ "$rc" -eq 3 ] && [ ! -s $B/cli.bogus.out ] && grep -q "'bogus'" $B/cli.bogus.err; then
    pass "(d) stats bogus: exits 3, the message names 'bogus': $(head -n 1 $B/cli.bogus.err)"
else
    fail "(d) stats bogus: exits 3, the message names 'bogus' (exit $rc)"
    cat $B/cli.bogus.out $B/cli.bogus.err | note
fi

run usage stats
if [ "$rc" -eq 2 ] && grep -qi '^usage:' $B/cli.usage.err; then
    pass "(d) stats without a URL: usage on stderr, exit 2"
else
    fail "(d) stats without a URL: usage on stderr, exit 2 (exit $rc)"
    note <$B/cli.usage.err
fi

run missing_stats stats "shm:$missing"
if [ "$rc" -eq 5 ] && grep -q 'no such segment' $B/cli.missing_stats.err &&
   [ ! -e "/dev/shm/sesscache-$missing" ]; then
    pass "(d) stats of a missing segment: exit 5, 'no such segment', nothing created"
else
    fail "(d) stats of a missing segment: exit 5, 'no such segment', nothing created (exit $rc)"
    { cat $B/cli.missing_stats.err; ls -l "/dev/shm/sesscache-$missing" 2>&1; } | note
fi

echo "== (e) a segment made by openssl s_server with the library preloaded: shm:$name"
# field FILE NAME: the value of "NAME" in a one-line JSON object.
jfield() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | head -n 1; }
# sfield LINE NAME: NAME=VALUE of a SESSCACHE_STATS line.
sfield() { echo "$1" | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }
have_seg=0
if ! command -v openssl >/dev/null 2>&1; then
    fail "(e) the openssl command is installed (apt-get install openssl)"
else
    . c-tests/sserver.sh
    sserver_cert "$dir" || fail "(e) openssl could not make a certificate"
    if sserver_start "$dir" 3 SESSCACHE_URL="shm:$name?size=1M" SESSCACHE_STATS="$dir/stats"; then
        c1=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$dir/s12.pem")
        c2=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/s12.pem")
        c3=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/s12.pem")
        if sserver_wait "$SSERVER_PID"; then SSERVER_PID=; fi
        if [ "$c1 / $c2 / $c3" = "New TLSv1.2 / Reused TLSv1.2 / Reused TLSv1.2" ]; then
            pass "(e) s_server: one full handshake, two resumed through shm:$name"
        else
            fail "(e) s_server: one full handshake, two resumed (got '$c1 / $c2 / $c3')"
            note <"$dir/server.err"
        fi
        [ -f "$seg" ] && have_seg=1
    else
        fail "(e) openssl s_server starts with the library preloaded"
    fi
fi
if [ "$have_seg" = 1 ]; then
    line=$(grep '^sesscache stats ' "$dir/stats" 2>/dev/null | tail -n 1)
    run json stats --json "shm:$name"
    got="$(jfield $B/cli.json.out lookups) $(jfield $B/cli.json.out hits) $(jfield $B/cli.json.out stores) $(jfield $B/cli.json.out entries)"
    want="$(sfield "$line" lookups) $(sfield "$line" hits) $(sfield "$line" stores) $(sfield "$line" entries)"
    if [ "$rc" -eq 0 ] && [ "$got" = "$want" ] && [ "$(jfield $B/cli.json.out hits)" = 2 ] &&
       [ "$(jfield $B/cli.json.out entries)" -ge 1 ] 2>/dev/null &&
       [ "$(wc -l <$B/cli.json.out)" -eq 1 ] && grep -q '"hit_ratio":[01]\.' $B/cli.json.out; then
        pass "(e) stats --json: lookups hits stores entries '$got', as the server counted, 2 hits for 2 resumptions"
    else
        fail "(e) stats --json agrees with the server's stats line and the 2 resumptions (exit $rc)"
        { echo "stats --json: '$got'; server: '$want'"; echo "$line"; cat $B/cli.json.out $B/cli.json.err; } | note
    fi
    run plain stats "shm:$name"
    if [ "$rc" -eq 0 ] && [ -s $B/cli.fields ] &&
       grep -v '^hit_ratio ' $B/cli.plain.out | sed 's/ .*//' | cmp -s - $B/cli.fields &&
       ! grep -v '^hit_ratio ' $B/cli.plain.out | grep -Evq '^[a-z_]+ [0-9]+$' &&
       grep -Eq '^hit_ratio [0-9.]+$' $B/cli.plain.out; then
        pass "(e) stats: the $(wc -l <$B/cli.fields) counters of struct sesscache_stats in order, then hit_ratio"
    else
        fail "(e) stats: every counter of struct sesscache_stats, then hit_ratio (exit $rc)"
        { cat $B/cli.plain.out $B/cli.plain.err; echo "expected the names:"; cat $B/cli.fields; } | note
    fi
    run watch stats --json --watch 1 --count 2 "shm:$name"
    if [ "$rc" -eq 0 ] && [ "$(grep -c '^{.*"lookups":' $B/cli.watch.out)" -eq 2 ]; then
        pass "(e) stats --watch 1 --count 2: two JSON lines"
    else
        fail "(e) stats --watch 1 --count 2: two JSON lines (exit $rc)"
        cat $B/cli.watch.out $B/cli.watch.err | note
    fi
    run ls ls
    run ls_json ls --json
    if grep -Eq "^$name +[^ ]+ +0600 +[0-9]+ +[0-9]+ +[0-9]+" $B/cli.ls.out &&
       grep -q "{\"name\":\"$name\",\"owner\":\"[^\"]*\",\"uid\":$(id -u),\"mode\":\"0600\",\"size\":1048576,\"entries\":[0-9]*,\"bytes\":[0-9]*,\"problem\":null}" $B/cli.ls_json.out; then
        pass "(e) ls and ls --json list $name: owner, mode 0600, size 1048576, entries and bytes"
    else
        fail "(e) ls and ls --json list $name with its owner, mode, size and fill"
        cat $B/cli.ls.out $B/cli.ls.err $B/cli.ls_json.out | note
    fi
    run check_ok check "shm:$name"
    expect check_ok 0 "(e) check shm:$name"
    run keygen keygen
    run keygen2 keygen
    if [ "$rc" -eq 0 ] && grep -Eqx '[0-9a-f]{64}' $B/cli.keygen.out && [ "$(wc -l <$B/cli.keygen.out)" -eq 1 ] &&
       ! cmp -s $B/cli.keygen.out $B/cli.keygen2.out; then
        pass "(e) keygen: one line of 64 lowercase hex digits, a new one each time"
    else
        fail "(e) keygen: one line of 64 lowercase hex digits, a new one each time"
        cat $B/cli.keygen.out $B/cli.keygen2.out $B/cli.keygen.err | note
    fi
    (umask 077; cat $B/cli.keygen.out $B/cli.keygen2.out >"$dir/keys")
    run check_key check "shm:$name?key_file=$dir/keys"
    expect check_key 0 "(e) check with a key_file of two keygen keys (mode 0600)"
    chmod 0644 "$dir/keys"
    run check_key644 check "shm:$name?key_file=$dir/keys"
    expect check_key644 4 "(e) check with that key_file readable by others: Permission"
    run flush flush "shm:$name"
    run after_flush stats --json "shm:$name"
    if grep -q '^removed [1-9][0-9]* entries' $B/cli.flush.out && [ "$(jfield $B/cli.after_flush.out entries)" = 0 ] &&
       [ "$(jfield $B/cli.after_flush.out bytes)" = 0 ]; then
        pass "(e) flush: $(cat $B/cli.flush.out); entries and bytes 0 afterwards"
    else
        fail "(e) flush empties the segment"
        cat $B/cli.flush.out $B/cli.flush.err $B/cli.after_flush.out | note
    fi
    run flush_memory flush 'memory:'
    expect flush_memory 7 "(e) flush memory: is refused"
fi

echo "== (f) check: distinct exit statuses, nothing created"
run check_bad check 'shm:bad/name'
expect check_bad 3 "(f) check of a bad URL (Url)"
run check_memory check 'memory:'
expect check_memory 7 "(f) check memory: (State)"
run check_missing check "shm:$missing"
expect check_missing 5 "(f) check of a missing segment (Unavailable)"
if [ -e "/dev/shm/sesscache-$missing" ]; then
    fail "(f) check of a missing segment created /dev/shm/sesscache-$missing"
else
    pass "(f) check of a missing segment created nothing"
fi
if [ "$have_seg" = 1 ]; then
    cp "$seg" "/dev/shm/sesscache-$corrupt"
    # The magic number and the layout version: the first 12 bytes of the header.
    dd if=/dev/zero of="/dev/shm/sesscache-$corrupt" bs=12 count=1 conv=notrunc 2>/dev/null
    run check_corrupt check "shm:$corrupt"
    expect check_corrupt 6 "(f) check of a corrupt segment (Incompatible)"
    if [ "$(id -u)" = 0 ]; then
        cp "$seg" "/dev/shm/sesscache-$foreign"
        chown 65534:65534 "/dev/shm/sesscache-$foreign"
        chmod 0600 "/dev/shm/sesscache-$foreign"
        run check_foreign check "shm:$foreign"
        expect check_foreign 4 "(f) check of a segment of uid 65534, mode 0600 (Permission)"
    else
        echo "# (f) skipped: a segment of another user (needs root for chown)"
    fi
    run ls_bad ls --json
    if [ "$rc" -eq 0 ] && grep -q "{\"name\":\"$corrupt\",.*\"entries\":null,\"bytes\":null,\"problem\":\"[^\"]*not a sesscache segment" $B/cli.ls_bad.out &&
       { [ "$(id -u)" != 0 ] || grep -q "{\"name\":\"$foreign\",\"owner\":\"[^\"]*\",\"uid\":65534,.*\"problem\":\"refusing" $B/cli.ls_bad.out; } &&
       grep -q "{\"name\":\"$name\",.*\"problem\":null}" $B/cli.ls_bad.out; then
        pass "(f) ls: the corrupt and the foreign segments are reported in their rows, the good one listed"
    else
        fail "(f) ls: the corrupt and the foreign segments are reported in their rows (exit $rc)"
        cat $B/cli.ls_bad.out $B/cli.ls_bad.err | note
    fi
    run rm rm "$name"
    if [ "$rc" -eq 0 ] && [ ! -e "$seg" ]; then
        pass "(f) rm $name removed $seg"
    else
        fail "(f) rm $name removed $seg (exit $rc)"
        note <$B/cli.rm.err
    fi
fi
# redis: nothing listens on port 1; the tool must say so at once, not hang.
redis_url='redis://127.0.0.1:1?insecure_plaintext=1&timeout_ms=500'
timeout 10 "$CLI" check "$redis_url" >$B/cli.check_redis.out 2>$B/cli.check_redis.err
rc=$?
expect check_redis 5 "(f) check of a redis server that is not there (Unavailable, within the timeout)"
run stats_redis stats "$redis_url"
expect stats_redis 5 "(f) stats of a redis cache whose server is not there (Unavailable)"
run flush_redis flush "$redis_url"
expect flush_redis 5 "(f) flush of a redis cache whose server is not there (Unavailable)"
run stats_cluster stats 'redis+cluster://127.0.0.1:1?insecure_plaintext=1'
expect stats_cluster 5 "(f) stats of a redis+cluster cache whose nodes are not there (Unavailable)"
run flush_cluster flush 'redis+cluster://127.0.0.1:1?insecure_plaintext=1'
expect flush_cluster 5 "(f) flush of a redis+cluster cache whose nodes are not there (Unavailable)"
# A redis-server of this run on a Unix socket: stats counts the entries under the prefix
# (not the other keys) and reads the counters' hash; flush deletes the entries only.
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    sock=$dir/redis.sock
    redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no \
        --daemonize no >"$dir/redis.log" 2>&1 &
    redis_pid=$!
    wait_for 5 test -S "$sock"
    for k in sesscache:aa sesscache:bb sesscache:cc sesscache:not-hex other:keep; do
        redis-cli -s "$sock" SET "$k" xy >/dev/null
    done
    redis-cli -s "$sock" HSET sesscache:stats lookups 8 hits 6 reported_at 1 >/dev/null
    run stats_redis_ok stats --json "redis+unix://$sock?insecure_plaintext=1"
    if [ "$rc" -eq 0 ] && grep -q '"scope":"fleet",.*"lookups":8,"hits":6,.*"entries":3,"bytes":6,.*"hit_ratio":0.7500,"entries_complete":true,"reported_s_ago":[0-9][0-9]*,"server":{"redis_primaries":1,"redis_used_memory":[0-9]' $B/cli.stats_redis_ok.out; then
        pass "(f) stats of a redis cache: the fleet's counters from its hash, the 3 entries (6 bytes) under the prefix, Redis's figures"
    else
        fail "(f) stats of a redis cache: the fleet's counters, entries and bytes (exit $rc)"
        cat $B/cli.stats_redis_ok.out $B/cli.stats_redis_ok.err | note
    fi
    run flush_redis_ok flush "redis+unix://$sock?insecure_plaintext=1"
    left=$(redis-cli -s "$sock" KEYS '*' 2>&1 | sort | tr '\n' ' ')
    if [ "$rc" -eq 0 ] && grep -q '^removed 3 entries' $B/cli.flush_redis_ok.out && [ "$left" = "other:keep sesscache:not-hex sesscache:stats " ]; then
        pass "(f) flush of a redis cache: the 3 entries under sesscache: deleted; other keys and the counters kept"
    else
        fail "(f) flush of a redis cache deletes the keys under its prefix only (exit $rc, left: $left)"
        cat $B/cli.flush_redis_ok.out $B/cli.flush_redis_ok.err | note
    fi
    kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; redis_pid=
else
    fail "(f) stats and flush of a redis cache need redis-server and redis-cli (apt install redis-server redis-tools)"
fi
run rm_again rm "$name"
expect rm_again 8 "(f) rm of a segment that does not exist"
run rm_bad rm '../etc/passwd'
expect rm_bad 3 "(f) rm of a name that is not a segment name"

echo "== (g) --help"
for cmd in "" stats ls rm check flush keygen; do
    # shellcheck disable=SC2086
    "$CLI" $cmd --help >$B/cli.help.out 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && grep -q '^Usage: sesscache' $B/cli.help.out &&
       grep -q '^Exit status:' $B/cli.help.out && grep -q 'Incompatible' $B/cli.help.out; then
        pass "(g) sesscache $cmd --help: usage and the exit statuses"
    else
        fail "(g) sesscache $cmd --help: usage and the exit statuses (exit $rc)"
        note <$B/cli.help.out
    fi
done

echo
finish
