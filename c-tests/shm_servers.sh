#!/bin/sh
# The shm: backend between real server processes, with libsesscache preloaded:
# a. two unmodified `openssl s_server` processes opening the same shm:NAME: a session made
#    on one resumes on the other (TLS 1.2 session IDs; TLS 1.3 tickets, once); with
#    memory: (one cache per process) the same sessions do not resume across them;
# b. nginx with two workers (reuseport: the kernel spreads connections over them) and
#    ssl_session_cache none: with shm: every resumption succeeds, whichever worker made the
#    session; with memory: (a copy per worker) a session resumes only on its own worker;
#    without the library it does not resume at all.
# c. SESSCACHE_STATS while servers run: periodic lines from a server later killed; a path
#    nginx's workers cannot write is said once, not once per worker per interval.
# Prints ok/FAIL lines and "shm-servers: N passed, M failed"; exits non-zero on failure.
# Run from the top of the tree after `make lib`. nginx: the Debian package `nginx`.
set -u
# Each server gets its settings below; the caller's would change what the tests observe.
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/sserver.sh
. c-tests/ports.sh
. c-tests/nginx.sh
SUITE=shm-servers
. c-tests/checks.sh
# The line of a stats file with the most lookups (the counters are the segment's, so the
# last process to exit saw them all), then one field of it.
stats_last() { sort -t= -k3,3n "$1" 2>/dev/null | tail -n 1; }
field() { echo "$1" | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }

lib=$SSERVER_LIB
dir=$(mktemp -d "${TMPDIR:-/tmp}/shm-servers.XXXXXX") || { echo "FAIL - mktemp"; echo "shm-servers: 0 passed, 1 failed"; exit 1; }
chmod 0755 "$dir"   # nginx's workers (user nobody) write their stats under it
seg_s=shmsrv-$$; seg_n=shmngx-$$
S1=; S2=
cleanup() {
    sserver_cleanup
    ngx_stop
    rm -rf "$dir"
    rm -f "/dev/shm/sesscache-$seg_s" "/dev/shm/sesscache-$seg_n"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
rm -f "/dev/shm/sesscache-$seg_s" "/dev/shm/sesscache-$seg_n"

if [ ! -f "$lib" ]; then
    echo "FAIL - $lib is missing: run 'make lib' first"; echo "shm-servers: 0 passed, 1 failed"; exit 1
fi

# ---- a. two openssl s_server processes -------------------------------------------------
two_servers() { sserver_two "$dir" "$dir/a" "$@"; }
two_wait() { sserver_two_wait; }

mkdir "$dir/a"
sserver_cert "$dir/a" || fail "openssl could not make a certificate"

echo "# a. two openssl s_server processes, SESSCACHE_URL=shm:$seg_s?size=4M"
# server 1: connections 1, 3, 4, 6; server 2: connections 2, 5, 7.
f0=$failed
if two_servers 4 3 SESSCACHE_URL="shm:$seg_s?size=4M" SESSCACHE_STATS="$dir/a/stats"; then
    pids="$S1 $S2"
    check "$(stat -c %a "/dev/shm/sesscache-$seg_s" 2>&1)" 600 "s_server: both servers use /dev/shm/sesscache-$seg_s, mode 0600"
    sserver_cross "$dir/a"
    if two_wait; then ok "s_server: both servers served their connections and exited"; else fail "s_server: a server did not exit after its connections"; fi
    check "$C1" "New TLSv1.2" "s_server TLS 1.2: full handshake on server 1"
    check "$C2" "Reused TLSv1.2" "s_server TLS 1.2: server 1's session resumes on server 2"
    check "$C3" "Reused TLSv1.2" "s_server TLS 1.2: and again on server 1"
    check "$C4" "New TLSv1.3" "s_server TLS 1.3: full handshake on server 1, ticket saved"
    check "$C5" "Reused TLSv1.3" "s_server TLS 1.3: server 1's ticket resumes on server 2"
    check "$C6" "New TLSv1.3" "s_server TLS 1.3: the ticket replayed to server 1 is refused (single use across processes)"
    check "$C7" "New TLSv1.3" "s_server TLS 1.3: and replayed to server 2 too"
    # (A server that found its port busy wrote one too: the pids tell them apart.)
    check "$(for p in $pids; do grep -c "^sesscache stats pid=$p " "$dir/a/stats"; done | tr '\n' ' ')" "1 1 " \
        "s_server: each server wrote its stats line at exit"
    st=$(stats_last "$dir/a/stats")
    check "$(field "$st" lookups) $(field "$st" hits) $(field "$st" misses) $(field "$st" errors)" "5 3 2 0" \
        "s_server: segment stats: lookups hits misses errors"
    [ "$failed" -eq "$f0" ] || show "$dir/a/stats" "$dir/s1/server.err" "$dir/s2/server.err"
else
    fail "s_server: the two shm: servers did not start"; show "$dir/s1/server.err" "$dir/s2/server.err"
    for _p in $S1 $S2; do sserver_stop "$_p"; done; exec 8>&-; S1=; S2=
fi
rm -f "/dev/shm/sesscache-$seg_s"

echo "# a. control: the same with SESSCACHE_URL=memory: (one cache per process)"
if two_servers 3 2 SESSCACHE_URL=memory:; then
    c1=$(sserver_connect "$P1" -tls1_2 -sess_out "$dir/a/m12.pem")
    c2=$(sserver_connect "$P2" -tls1_2 -sess_in "$dir/a/m12.pem")
    c3=$(sserver_connect "$P1" -tls1_2 -sess_in "$dir/a/m12.pem")
    c4=$(SSERVER_LINGER=1 sserver_connect "$P1" -tls1_3 -sess_out "$dir/a/m13.pem")
    c5=$(sserver_connect "$P2" -tls1_3 -sess_in "$dir/a/m13.pem")
    two_wait || fail "memory: control: a server did not exit after its connections"
    check "$c1 | $c2 | $c3" "New TLSv1.2 | New TLSv1.2 | Reused TLSv1.2" \
        "memory: control TLS 1.2: server 1's session does not resume on server 2 (but does on server 1)"
    check "$c4 | $c5" "New TLSv1.3 | New TLSv1.3" "memory: control TLS 1.3: server 1's ticket does not resume on server 2"
else
    fail "memory: control: the servers did not start"; show "$dir/s1/server.err" "$dir/s2/server.err"
    for _p in $S1 $S2; do sserver_stop "$_p"; done; exec 8>&-; S1=; S2=
fi

# ---- b. nginx, two workers ---------------------------------------------------------------
if [ -x /usr/sbin/nginx ]; then NGX_BIN=/usr/sbin/nginx; else NGX_BIN=$(command -v nginx || true); fi

# 10 rounds of `s_client -reconnect` (6 TLS 1.2 connections each); prints "NEW REUSED".
reconnects() {
    _r=0; _new=0; _reused=0
    while [ $_r -lt "$1" ]; do
        timeout 10 openssl s_client -connect "127.0.0.1:$NGX_PORT" -tls1_2 -reconnect \
            </dev/null >"$ndir/reconnect.out" 2>&1
        _new=$((_new + $(grep -c '^New, TLSv1.2' "$ndir/reconnect.out")))
        _reused=$((_reused + $(grep -c '^Reused, TLSv1.2' "$ndir/reconnect.out")))
        _r=$((_r + 1))
    done
    echo "$_new $_reused"
}
count() { grep -c -e "$1" "$ndir/clients"; }

if [ -z "$NGX_BIN" ]; then
    fail "nginx is not installed (apt-get install nginx): the nginx tests cannot run"
else
    echo "# b. nginx ($($NGX_BIN -v 2>&1 | sed 's/^nginx version: //')), 2 workers, reuseport, SESSCACHE_URL=shm:$seg_n?size=4M"
    ndir=$dir/ngx-shm; mkdir "$ndir"
    sserver_cert "$ndir"
    f0=$failed
    if ngx_start "$ndir" LD_PRELOAD="$lib" SESSCACHE_URL="shm:$seg_n?size=4M" SESSCACHE_STATS="$ndir/stats"; then
        master=$NGX_PID; workers_started=$NGX_WORKERS
        set -- $(reconnects 10); rc_new=$1; rc_reused=$2
        check "$rc_new $rc_reused" "10 50" "nginx shm TLS 1.2: 10 x s_client -reconnect: 10 new, all 50 reconnections resumed"
        ngx_pairs_cross "$ndir"
        check "$(count ' Reused TLSv1.2 ')" "$ROUNDS" "nginx shm TLS 1.2: $ROUNDS saved sessions resumed (-sess_in)"
        check "$(count '-new New TLSv1.3 ')" "$ROUNDS" "nginx shm TLS 1.3: $ROUNDS full handshakes, tickets saved"
        check "$(count '-resume Reused TLSv1.3 ')" "$ROUNDS" "nginx shm TLS 1.3: each ticket resumed once"
        check "$(count '-replay New TLSv1.3 ')" "$ROUNDS" "nginx shm TLS 1.3: each replayed ticket refused"
        check "$workers" 2 "nginx shm: the access log shows both workers serving ($workers_started)"
        if [ "$cross_reused" -ge 1 ] && [ "$cross_new" -eq 0 ] && [ "$same_new" -eq 0 ]; then
            ok "nginx shm: $cross_reused of $((cross_reused + same_reused)) resumptions on the other worker than the one that made the session, none refused"
        else
            fail "nginx shm: cross-worker resumed $cross_reused, cross-worker refused $cross_new, same-worker resumed $same_reused, same-worker refused $same_new"
        fi
        hits_seen=$(( rc_reused + $(count ' Reused TLSv') ))
        refused_seen=$(count '-replay New TLSv1.3 ')
        # The operator's tool, while nginx runs: the segment's own counters.
        cli=${SESSCACHE_CLI:-target/cli/release/sesscache}
        if [ -x "$cli" ]; then
            live=$("$cli" stats --json "shm:$seg_n" 2>&1)
            live_hits=$(echo "$live" | python3 -c 'import json, sys; print(json.load(sys.stdin)["hits"])' 2>/dev/null)
            check "$live_hits" "$hits_seen" "nginx shm: 'sesscache stats' while nginx runs: hits = the resumptions the clients saw"
        else
            fail "nginx shm: the sesscache tool is not built ($cli; make cli)"
        fi
        if ngx_stop; then ok "nginx shm: master and workers exited on SIGQUIT"; else fail "nginx shm: nginx did not exit on SIGQUIT in 10 s"; fi
        check "$(sed -n 's/^sesscache stats pid=\([0-9]*\) .*/\1/p' "$ndir/stats" | sort -n | tr '\n' ' ')" \
            "$(echo $master $workers_started | tr ' ' '\n' | sort -n | tr '\n' ' ')" \
            "nginx shm: master and both workers wrote a stats line at exit"
        st=$(stats_last "$ndir/stats")
        check "$(field "$st" hits) $(field "$st" misses)" "$hits_seen $refused_seen" \
            "nginx shm: segment stats: hits = resumptions the clients saw, misses = replays"
        check "$(grep -c ' errors=0 ' "$ndir/stats")" 3 "nginx shm: errors=0 in every stats line"
        [ "$failed" -eq "$f0" ] || show "$ndir/stats" "$ndir/clients" "$ndir/access.log" "$ndir/error.log"
    else
        fail "nginx shm: nginx did not start"
    fi
    rm -f "/dev/shm/sesscache-$seg_n"

    echo "# b. control: nginx with SESSCACHE_URL=memory: (each worker has its own copy)"
    ndir=$dir/ngx-memory; mkdir "$ndir"
    sserver_cert "$ndir"
    if ngx_start "$ndir" LD_PRELOAD="$lib" SESSCACHE_URL=memory:; then
        ngx_pairs_cross "$ndir"
        ngx_stop || fail "nginx memory: nginx did not exit on SIGQUIT in 10 s"
        if [ "$cross_reused" -eq 0 ] && [ "$cross_new" -ge 1 ] && [ "$same_new" -eq 0 ]; then
            ok "nginx memory: control: $cross_new sessions offered to the other worker, none resumed; $same_reused resumed on their own worker"
        else
            fail "nginx memory: control: cross-worker resumed $cross_reused (want 0), refused $cross_new (want >= 1); same-worker resumed $same_reused, refused $same_new (want 0)"
            show "$ndir/clients" "$ndir/access.log"
        fi
    else
        fail "nginx memory: nginx did not start"
    fi

    echo "# b. control: nginx without the library"
    ndir=$dir/ngx-plain; mkdir "$ndir"
    sserver_cert "$ndir"
    if ngx_start "$ndir"; then
        set -- $(reconnects 3)
        ngx_stop || fail "nginx without the library: nginx did not exit on SIGQUIT in 10 s"
        if [ $(($1 + $2)) -eq 18 ] && [ "$2" -lt 15 ]; then
            ok "nginx without the library: control: $2 of 15 reconnections resumed (ssl_session_cache none)"
        else
            fail "nginx without the library: control: $1 new, $2 resumed (want 18 connections, fewer than 15 resumed)"
        fi
    else
        fail "nginx without the library: nginx did not start"
    fi
fi

# ---- c. SESSCACHE_STATS while servers run ----------------------------------------------
echo "# c. SESSCACHE_STATS_INTERVAL=1: lines while a server runs; a path workers cannot write, said once"
seg_c=shmstats-$$
mkdir "$dir/c"
cp "$dir/a/cert.pem" "$dir/a/key.pem" "$dir/c/"
if sserver_start "$dir/c" 3 SESSCACHE_URL="shm:$seg_c?size=1M" SESSCACHE_STATS="$dir/c/stats" \
    SESSCACHE_STATS_INTERVAL=1; then
    cpid=$SSERVER_PID
    sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$dir/c/s.pem" >/dev/null
    sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/c/s.pem" >/dev/null
    # Within 2.5 s (at 1 s intervals), a periodic line that counts the resumption.
    # shellcheck disable=SC2317 # run by wait_for
    counted() {
        _l=$(grep "^sesscache stats-running pid=$cpid " "$dir/c/stats" | tail -n 1)
        [ "$(field "$_l" lookups) $(field "$_l" hits)" = "1 1" ]
    }
    wait_for 2.5 counted
    n=$(grep -c "^sesscache stats-running pid=$cpid " "$dir/c/stats")
    # Stopped by a signal, as HAProxy and s_server are: no line at exit.
    sserver_stop "$cpid"
    if [ "$n" -ge 1 ]; then ok "stats: the running server wrote $n periodic lines"; else fail "stats: no periodic line in 2.5 s"; show "$dir/c/stats"; fi
    last=$(grep "^sesscache stats-running pid=$cpid " "$dir/c/stats" | tail -n 1)
    check "$(field "$last" lookups) $(field "$last" hits)" "1 1" "stats: the periodic line counts the resumption (lookups hits)"
    check "$(grep -c "^sesscache stats pid=$cpid " "$dir/c/stats")" 0 "stats: (no line at exit: the server was killed)"
else
    fail "stats: s_server did not start"
fi
rm -f "/dev/shm/sesscache-$seg_c"
if [ -n "$NGX_BIN" ]; then
    ndir=$dir/ngx-stats; mkdir "$ndir" "$ndir/private"
    chmod 0700 "$ndir/private"   # root's: nginx's workers (nobody) cannot write in it
    sserver_cert "$ndir"
    if ngx_start "$ndir" LD_PRELOAD="$lib" SESSCACHE_URL="shm:$seg_c?size=1M" \
        SESSCACHE_STATS="$ndir/private/stats" SESSCACHE_STATS_INTERVAL=1; then
        ngx_pairs "$ndir" 4 0
        # The time is what is tested: two or three intervals, and the failure said once.
        sleep 2.5
        ngx_stop || fail "stats: nginx did not exit on SIGQUIT"
        said=$(cat "$ndir/error.log" "$ndir/nginx.out" 2>/dev/null | grep -c 'SESSCACHE_STATS: cannot write')
        check "$said" 1 "stats: two workers that cannot write the path, for 2.5 s at 1 s intervals: said once"
        [ "$said" -eq 1 ] || show "$ndir/error.log" "$ndir/nginx.out"
        if grep -q '^sesscache stats pid=' "$ndir/private/stats" 2>/dev/null; then
            ok "stats: the master (root) still wrote its line"
        else
            fail "stats: the master wrote no line"; show "$ndir/private/stats"
        fi
    else
        fail "stats: nginx did not start"
    fi
    rm -f "/dev/shm/sesscache-$seg_c"
fi

cleanup
trap - EXIT
echo "shm-servers: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1
exit 0
