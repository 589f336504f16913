#!/bin/sh
# Preload mode, end to end: an unmodified server program (c-tests/preload_probe.c, which never
# includes sesscache.h) run without the library and with
# LD_PRELOAD=target/release/libsesscache.so under several SESSCACHE_URL settings.
#
# Run from the top of the tree after `make`:   sh c-tests/preload_check.sh
# Each assertion prints "ok - ..." or "FAIL - ..." (details on "#" lines); the last line is
# "preload: N passed, M failed", and the exit status is non-zero when M > 0.
set -u
# Only the settings given below may reach the probe.
unset SESSCACHE_URL SESSCACHE_STATS SESSCACHE_LOG

B=build
P=$B/preload_probe
LIB=$(pwd)/target/release/libsesscache.so
CC=${CC:-cc}
SUITE=preload
. c-tests/checks.sh

# The value of KEY in a probe output file ("" when absent).
val() { awk -F= -v k="$2" '$1 == k { sub(/^[^=]*=/, ""); print; exit }' "$1"; }
# The keys of a probe output file, one per line.
keys() { sed 's/=.*//' "$1"; }

# expect RUN KEY VALUE: the probe's output in run RUN says KEY=VALUE.
expect() {
    got=$(val "$B/preload.$1.out" "$2")
    if [ "$got" = "$3" ]; then
        pass "($1) $2=$3"
    else
        fail "($1) $2=$3"
        echo "got '$got'" | note
    fi
}

# same RUN REF KEY: KEY has the same value in runs RUN and REF.
same() {
    got=$(val "$B/preload.$1.out" "$3")
    want=$(val "$B/preload.$2.out" "$3")
    if [ -n "$want" ] && [ "$got" = "$want" ]; then
        pass "($1) $3 as in ($2): $got"
    else
        fail "($1) $3 as in ($2)"
        echo "got '$got', ($2) has '$want'" | note
    fi
}

# run NAME [VAR=value...]: runs the probe with those environment variables; its output in
# $B/preload.NAME.out and .err, its exit status in $B/preload.NAME.rc.
run() {
    name=$1
    shift
    env "$@" "$P" >"$B/preload.$name.out" 2>"$B/preload.$name.err"
    echo $? >"$B/preload.$name.rc"
}

exited0() {
    rc=$(cat "$B/preload.$1.rc")
    if [ "$rc" -eq 0 ] && [ -s "$B/preload.$1.out" ]; then
        pass "($1) the probe ran to the end, every handshake completed (exit 0)"
    else
        fail "($1) the probe ran to the end (exit $rc)"
        tail -n 20 "$B/preload.$1.err" | note
    fi
}

identical() {
    if cmp -s "$B/preload.$2.out" "$B/preload.$1.out"; then
        pass "($1) output identical to ($2) ($(wc -l <"$B/preload.$1.out") observations)"
    else
        fail "($1) output identical to ($2)"
        diff "$B/preload.$2.out" "$B/preload.$1.out" | head -n 20 | note
    fi
}

same_keys() {
    keys "$B/preload.$2.out" >"$B/preload.$2.keys"
    keys "$B/preload.$1.out" >"$B/preload.$1.keys"
    if [ -s "$B/preload.$2.keys" ] && cmp -s "$B/preload.$2.keys" "$B/preload.$1.keys"; then
        pass "($1) the same observations as ($2): all handshakes completed"
    else
        fail "($1) the same observations as ($2)"
        diff "$B/preload.$2.keys" "$B/preload.$1.keys" | head -n 20 | note
    fi
}

# ---- build ---------------------------------------------------------------------------------
echo "== build $P"
mkdir -p $B
if $CC -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Iinclude -Ic-tests \
       $(pkg-config --cflags openssl) c-tests/preload_probe.c c-tests/tls_util.c -o $P \
       $(pkg-config --libs openssl) 2>$B/preload_probe.build.log; then
    pass "probe compiles (-std=c11 -Wall -Wextra -Werror)"
else
    note <$B/preload_probe.build.log
    fail "probe compiles"
    finish
fi
if ldd $P | grep -q libsesscache; then
    fail "probe is built without libsesscache"
else
    pass "probe is built without libsesscache (only LD_PRELOAD brings it in)"
fi
if [ -f "$LIB" ]; then
    pass "library present: target/release/libsesscache.so"
else
    fail "library present: target/release/libsesscache.so (run make first)"
    finish
fi

# ---- the runs ------------------------------------------------------------------------------
run a
run b LD_PRELOAD="$LIB" SESSCACHE_URL=memory: SESSCACHE_STATS=stderr
run b_debug LD_PRELOAD="$LIB" SESSCACHE_URL=memory: SESSCACHE_LOG=debug
run c LD_PRELOAD="$LIB" 'SESSCACHE_URL=memory:?tickets=keep'
run f LD_PRELOAD="$LIB" 'SESSCACHE_URL=memory:?force=1' SESSCACHE_LOG=info
seg=preload-probe-$$
run g LD_PRELOAD="$LIB" "SESSCACHE_URL=shm:$seg?size=1M"
rm -f "/dev/shm/sesscache-$seg"
run d_bogus LD_PRELOAD="$LIB" SESSCACHE_URL=bogus: SESSCACHE_STATS=stderr
run d_capacity LD_PRELOAD="$LIB" 'SESSCACHE_URL=memory:?capacity=banana' SESSCACHE_STATS=stderr
run e LD_PRELOAD="$LIB"

echo "== (a) without the library"
exited0 a
expect a tls12.resumed_on_other_ctx 0
expect a tls13.resumed_on_other_ctx 0
calls=$(val $B/preload.a.out own_cb.calls)
if [ -n "$calls" ] && [ "$calls" -gt 0 ]; then
    pass "(a) own_cb.calls > 0: $calls"
else
    fail "(a) own_cb.calls > 0 (got '$calls')"
fi

echo "== (b) LD_PRELOAD, SESSCACHE_URL=memory:"
exited0 b
expect b tls12.resumed_on_other_ctx 1
expect b tls13.resumed_on_other_ctx 1
expect b tls12.second_resumed 1
expect b tls13.replay_resumed 0
# Nothing changes at the context level; a server connection gets stateful tickets (memory:
# in the process that opened it: tickets=auto); a client connection of a generic context and
# a connection of a context whose program turned its cache off see no change.
same b a server.no_ticket
same b a server_ex.no_ticket
expect b server.conn.no_ticket 1
same b a generic.client_conn.no_ticket
same b a cache_off.conn.no_ticket
# In a forked child, memory: is a private copy: stateless tickets stay (never worse).
expect b forked.conn.no_ticket 0
same b a generic_client.tls12.resumed
same b a generic_client.tls13.resumed
expect b generic_client.tls12.resumed 1
# Closed without close_notify: the session stays resumable (RFC 5246).
expect a unclean.tls12.resumed_on_other_ctx 0
expect b unclean.tls12.resumed_on_other_ctx 1
expect b unclean.tls13.resumed_on_other_ctx 1
same b a server.cache_mode
same b a client.no_ticket
same b a client.cache_mode
same b a client.options
for k in client.new_cb_set client.get_cb_set client.remove_cb_set; do same b a $k; done
same b a own_cb.calls
expect b own_cb.getter_returns_own 1
expect b own_cb.resumed_on_other_ctx 1
# With stateful TLS 1.2 sessions the program's callback now sees the session (with OpenSSL's
# default TLS 1.2 tickets the session has no ID and the callback is not called: (a) has 0).
calls=$(val $B/preload.b.out own_cb.tls12.calls)
if [ -n "$calls" ] && [ "$calls" -ge 1 ]; then
    pass "(b) own_cb.tls12.calls >= 1: $calls"
else
    fail "(b) own_cb.tls12.calls >= 1 (got '$calls')"
fi
expect b own_cb.tls12.resumed_on_other_ctx 1
# A context whose program turned its cache off behaves as without the library (stateless
# tickets included), and is not answered from the cache.
same b a cache_off.resumed
same b a cache_off.tls12.resumed
expect b cache_off.resumed 1
expect b cache_off.resumed_from_cache 0
expect b cache_off.tls12.resumed_from_cache 0
expect b cache_off.still_resumes_elsewhere 1
expect b cache_off.tls12.still_resumes_elsewhere 1
stats=$(grep '^sesscache stats ' $B/preload.b.err)
nstats=$(grep -c '^sesscache stats ' $B/preload.b.err)
hits=$(echo "$stats" | sed -n 's/.* hits=\([0-9][0-9]*\) .*/\1/p' | head -n 1)
if [ "$nstats" -eq 1 ] && echo "$stats" |
   grep -Eq '^sesscache stats pid=[0-9]+ lookups=[0-9]+ hits=[0-9]+ misses=[0-9]+ stores=[0-9]+ removes=[0-9]+ evictions=[0-9]+ expirations=[0-9]+ rejected=[0-9]+ errors=[0-9]+ entries=[0-9]+ bytes=[0-9]+ net_errors=[0-9]+ timeouts=[0-9]+ breaker_opens=[0-9]+ queue_drops=[0-9]+ sni_refused=[0-9]+$'; then
    pass "(b) one stats line on stderr at exit"
else
    fail "(b) one stats line on stderr at exit (found $nstats)"
    note <$B/preload.b.err
fi
if [ -n "$hits" ] && [ "$hits" -ge 3 ]; then
    pass "(b) stats hits >= 3: $stats"
else
    fail "(b) stats hits >= 3"
    note <$B/preload.b.err
fi
identical b_debug b
if grep -q 'debug: attach' $B/preload.b_debug.err && grep -q 'debug: hit' $B/preload.b_debug.err; then
    pass "(b, SESSCACHE_LOG=debug) attach and hit events logged on stderr"
else
    fail "(b, SESSCACHE_LOG=debug) attach and hit events logged on stderr"
    head -n 20 $B/preload.b_debug.err | note
fi

n=$(grep -c 'turned its session cache off; sesscache leaves' $B/preload.b_debug.err)
# The probe makes 6 cache-off contexts that accept connections: each is named once.
if [ "$n" -eq 6 ]; then
    pass "(b, SESSCACHE_LOG=debug) each of the 6 cache-off contexts is named once in the log"
else
    fail "(b, SESSCACHE_LOG=debug) cache-off contexts named once each (found $n lines, want 6)"
    grep 'turned' $B/preload.b_debug.err | head -n 10 | note
fi
if grep -q 'turned its session cache off' $B/preload.b.err; then
    fail "(b) nothing about cache-off contexts at the default log level"
else
    pass "(b) nothing about cache-off contexts at the default log level"
fi

echo "== (c) SESSCACHE_URL='memory:?tickets=keep'"
exited0 c
expect c server.no_ticket 0
expect c server.conn.no_ticket 0

echo "== (f) SESSCACHE_URL='memory:?force=1': the cache serves cache-off contexts too"
exited0 f
expect f cache_off.conn.no_ticket 1
expect f cache_off.resumed 1
expect f cache_off.tls12.resumed 1
expect f cache_off.resumed_from_cache 1
expect f cache_off.tls12.resumed_from_cache 1
expect f forked.conn.no_ticket 1
# Switched by SNI to another cache-off context, a TLS 1.2 session still gets an ID (OpenSSL
# asks the current context's mode) and resumes through the cache.
expect f sni_off.tls12.resumed 1
same b a sni_off.tls12.resumed
same f a generic.client_conn.no_ticket
n=$(grep -c 'force=1: the cache serves it' $B/preload.f.err)
if [ "$n" -ge 1 ]; then
    pass "(f) forcing is said in the log at info level"
else
    fail "(f) forcing is said in the log at info level"
    note <$B/preload.f.err
fi

echo "== (g) SESSCACHE_URL=shm:NAME: one cache for every process, forked ones too"
exited0 g
expect g server.conn.no_ticket 1
expect g forked.conn.no_ticket 1
same g a cache_off.resumed

for d in bogus capacity; do
    echo "== (d) bad SESSCACHE_URL: $d"
    exited0 d_$d
    same_keys d_$d a
    expect d_$d tls12.resumed_on_other_ctx 0
    expect d_$d tls13.resumed_on_other_ctx 0
    identical d_$d a
    n=$(grep -c 'SESSCACHE_URL' $B/preload.d_$d.err)
    line=$(grep 'SESSCACHE_URL' $B/preload.d_$d.err)
    if [ "$n" -eq 1 ] && echo "$line" | grep -q "$d"; then
        pass "(d_$d) one stderr line about SESSCACHE_URL, naming '$d'"
    else
        fail "(d_$d) one stderr line about SESSCACHE_URL, naming '$d' (found $n lines)"
        note <$B/preload.d_$d.err
    fi
done

echo "== (e) LD_PRELOAD, SESSCACHE_URL unset"
exited0 e
identical e a
if [ -s $B/preload.e.err ]; then
    fail "(e) nothing on stderr"
    head -n 20 $B/preload.e.err | note
else
    pass "(e) nothing on stderr"
fi

echo
finish
