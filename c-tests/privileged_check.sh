#!/bin/sh
# The library in a privileged program: a setuid or setgid program run by another user
# ignores SESSCACHE_URL, SESSCACHE_STATS and SESSCACHE_LOG (the invoking user controls the
# environment, not the program's privileges) and refuses password_env in a URL; the same
# program without the bit honours them (the control).
#
# c-tests/privileged_probe.c, linked with a copy of target/release/libsesscache.so in a
# directory every user can read, is run as `nobody` (setpriv):
#   a. plain copy: the segment is created (owned by nobody), the stats line written, debug
#      log lines printed, password_env read;
#   b. setuid-root copy: no segment, no stats file (its directory is root's: only the
#      privileges could write there), no debug line, a warning that SESSCACHE_URL is
#      ignored, password_env refused with a message that says why;
#   c. setgid copy (group root): the same as b.
# Needs root (chown, setuid bits, setpriv); without it every check fails, loudly.
# Run from the top of the tree after `make lib`, with CC, SSL_CFLAGS, SSL_LIBS as c-tests/run.sh
# sets them.
set -u
SUITE=privileged
. c-tests/checks.sh
unset SESSCACHE_URL SESSCACHE_STATS SESSCACHE_LOG
CC=${CC:-cc}
SO=target/release/libsesscache.so
if [ "$(id -u)" != 0 ]; then
    fail "c-tests/privileged_check.sh must run as root (it makes setuid copies and runs them as nobody)"
    finish
fi
if [ ! -f "$SO" ]; then fail "$SO is missing: run 'make lib' first"; finish; fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/privileged.XXXXXX") || { fail "mktemp"; finish; }
names=
cleanup() {
    for _n in $names; do rm -f "/dev/shm/sesscache-$_n"; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
chmod 0755 "$dir"
soname=$(objdump -p "$SO" | sed -n 's/^ *SONAME *//p')
cp "$SO" "$dir/$soname" && ln -s "$soname" "$dir/libsesscache.so"
# shellcheck disable=SC2086
if ! $CC -std=c11 -Wall -Wextra -Werror ${SSL_CFLAGS:-} -Iinclude c-tests/privileged_probe.c \
        -o "$dir/probe" -L"$dir" -lsesscache -Wl,-rpath,"$dir" ${SSL_LIBS:--lssl -lcrypto} \
        2>"$dir/cc.err"; then
    fail "the probe does not compile"; show "$dir/cc.err"; finish
fi
mkdir "$dir/open" "$dir/root"
chmod 1777 "$dir/open"      # anyone may write here (the control's stats)
chmod 0775 "$dir/root"      # root's (user and group): only the privileges could write here
cp "$dir/probe" "$dir/probe-suid"; chmod 4755 "$dir/probe-suid"
cp "$dir/probe" "$dir/probe-sgid"; chgrp root "$dir/probe-sgid"; chmod 2755 "$dir/probe-sgid"

# run NAME PROGRAM STATS_PATH: PROGRAM as nobody with the three variables set, and a URL
# argument with password_env; output in $dir/NAME.out.
run() {
    _seg=priv-$$-$1; names="$names $_seg"
    setpriv --reuid=65534 --regid=65534 --clear-groups env \
        SESSCACHE_URL="shm:$_seg?size=1M" SESSCACHE_STATS="$3" SESSCACHE_LOG=debug \
        SC_PRIV_PW=not-a-secret \
        "$2" "redis://127.0.0.1:1?password_env=SC_PRIV_PW&insecure_plaintext=1" \
        >"$dir/$1.out" 2>&1
    echo $? >"$dir/$1.rc"
}

echo "# a. a plain copy, run as nobody: the environment is honoured (the control)"
run plain "$dir/probe" "$dir/open/plain.stats"
seg=/dev/shm/sesscache-priv-$$-plain
check "$(cat "$dir/plain.rc")" 0 "a: the probe ran"
if [ -e "$seg" ] && [ "$(stat -c %U "$seg")" = nobody ]; then
    ok "a: SESSCACHE_URL honoured: $seg made, owned by nobody"
else
    fail "a: SESSCACHE_URL honoured (no segment owned by nobody)"; show "$dir/plain.out"
fi
if grep -q '^sesscache stats ' "$dir/open/plain.stats" 2>/dev/null; then
    ok "a: SESSCACHE_STATS honoured: the stats line written"
else
    fail "a: SESSCACHE_STATS honoured"; show "$dir/plain.out"
fi
if grep -q 'debug' "$dir/plain.out"; then ok "a: SESSCACHE_LOG=debug honoured"; else fail "a: SESSCACHE_LOG=debug honoured"; show "$dir/plain.out"; fi
if grep -q 'probe: open failed: .*127.0.0.1:1\|probe: opened' "$dir/plain.out" &&
   ! grep -q 'password_env: refused' "$dir/plain.out"; then
    ok "a: password_env read (the URL got past its password)"
else
    fail "a: password_env read"; show "$dir/plain.out"
fi

for kind in suid sgid; do
    if [ $kind = suid ]; then echo "# b. a setuid-root copy, run as nobody: the environment is ignored"; else echo "# c. a setgid-root copy, run as nobody: the environment is ignored"; fi
    run $kind "$dir/probe-$kind" "$dir/root/$kind.stats"
    seg=/dev/shm/sesscache-priv-$$-$kind
    check "$(cat "$dir/$kind.rc")" 0 "$kind: the probe ran"
    grep -q 'probe: done' "$dir/$kind.out" || fail "$kind: the probe did not finish"
    if [ ! -e "$seg" ]; then ok "$kind: SESSCACHE_URL ignored: no segment made"; else fail "$kind: SESSCACHE_URL ignored, but $seg exists (owner $(stat -c %U "$seg"))"; fi
    if [ ! -e "$dir/root/$kind.stats" ]; then ok "$kind: SESSCACHE_STATS ignored: nothing written in root's directory"; else fail "$kind: SESSCACHE_STATS ignored, but $dir/root/$kind.stats was written"; fi
    if ! grep -q 'debug' "$dir/$kind.out"; then ok "$kind: SESSCACHE_LOG=debug ignored"; else fail "$kind: SESSCACHE_LOG=debug ignored"; show "$dir/$kind.out"; fi
    if grep -q 'SESSCACHE_URL is ignored: this program runs with privileges' "$dir/$kind.out"; then
        ok "$kind: says that SESSCACHE_URL is ignored, and why"
    else
        fail "$kind: says that SESSCACHE_URL is ignored"; show "$dir/$kind.out"
    fi
    if grep -q 'probe: open failed: password_env: refused in a program running with privileges' "$dir/$kind.out" &&
       ! grep -q 'not-a-secret' "$dir/$kind.out"; then
        ok "$kind: password_env refused, with the reason (and no password in the message)"
    else
        fail "$kind: password_env refused"; show "$dir/$kind.out"
    fi
done
finish
