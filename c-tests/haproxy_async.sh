#!/bin/sh
# HAProxy 2.6 with `ssl-mode-async` and libsesscache preloaded on redis:// (issue 23, async
# lookups). HAProxy processes ("hosts", `nbthread 1`, `tune.ssl.cachesize 0`, bind option
# `no-tls-tickets`: TLS 1.2 session IDs and TLS 1.3 stateful tickets, every lookup asked of
# sesscache) with SESSCACHE_URL=redis://…?insecure_plaintext=1&timeout_ms=3000&force=1, and
# a redis-server this script starts (DEBUG enabled: `DEBUG SLEEP` stalls it):
#   h1  ssl-mode-async   where the sessions are made
#   h2  ssl-mode-async   where they resume (a, b)
#   h3  ssl-mode-async, `timeout client 1s` (HAProxy 2.6's handshake timeout too) (d)
#   h4  without ssl-mode-async: the control (c)
# a. a session made on h1 resumes on h2, TLS 1.2 and TLS 1.3;
# b. Redis stalled (STALL seconds, default 2) while a client resumes on h2: that client waits,
#    then resumes; full handshakes to h2 started during the stall complete in < 500 ms each
#    (the lookup waits in an OpenSSL async job, HAProxy's event loop goes on), TLS 1.2 and 1.3;
# c. the control: the same against h4, whose first full handshake waits for the stall (>= 1 s);
# d. h3 times out a resuming connection while its lookup waits (the connection is closed with
#    its async job paused: HAProxy defers SSL_free until the async fd fires); once Redis
#    answers, `show fd` lists no async fd, HAProxy's job count is back, h3 still serves;
# e. OpenSSL 3.0 runs these handshakes, sesscache's callbacks included, on 32 KiB fibre
#    stacks without a guard page: c-tests/async_stack.c (preloaded first, built here with
#    cc) finds the deepest h1-h3's stacks went (h4 runs no job): it must stay below 24 KiB;
# f. 16 clients resuming on h2 for 2 s (TLS 1.2, 1.3; build/bench_client), Redis answering at
#    once: h2 survives (most lookups end before the job would pause); h2 and h3 keep no
#    eventfd open afterwards;
# and no host logs an alert or an error, none dies, each stops (SIGUSR1) with status 0.
# Prints ok/FAIL lines and "haproxy-async: N passed, M failed"; exits non-zero on failure.
# Run from the top of the tree after `make lib`. Needs haproxy, redis-server, redis-cli and
# python3 (HAProxy's stats socket) and cc: without one of them every check fails, loudly.
set -u
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/sserver.sh            # SSERVER_LIB, sserver_cert, sserver_connect
. c-tests/servers/common.sh     # ports.sh, wait_tls
. c-tests/servers/haproxy.sh    # haproxy_start
SUITE=haproxy-async
. c-tests/checks.sh

STALL=${STALL:-2}
BENCH_CLIENT=${BENCH_CLIENT:-${B:-build}/bench_client}
lib=$SSERVER_LIB
REDIS_SERVER=$(command -v redis-server || true)
REDIS_CLI=$(command -v redis-cli || true)
missing=
[ -x "$HAPROXY_BIN" ] || missing="$missing haproxy($HAPROXY_BIN)"
[ -n "$REDIS_SERVER" ] && [ -n "$REDIS_CLI" ] || missing="$missing redis-server/redis-cli"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v "${CC:-cc}" >/dev/null 2>&1 || missing="$missing ${CC:-cc}"
[ -f "$lib" ] || missing="$missing $lib(make lib)"
if [ -n "$missing" ]; then fail "missing:$missing: the HAProxy async tests cannot run"; finish; fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/haproxy-async.XXXXXX") || { fail "mktemp"; finish; }
HOSTS="h1 h2 h3 h4"
h1_PID=; h2_PID=; h3_PID=; h4_PID=; RPID=; SLEEPER=; CLIENT=
cleanup() {
    for _p in $CLIENT $SLEEPER $h1_PID $h2_PID $h3_PID $h4_PID $RPID; do
        kill -9 "$_p" 2>/dev/null && wait "$_p" 2>/dev/null
    done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

now_ms() { date +%s%3N; }
rcli() { "$REDIS_CLI" -p "$RPORT" "$@"; }
gone() { ! kill -0 "$1" 2>/dev/null; }
# stats NAME COMMAND: host NAME's answer to COMMAND on its stats socket.
stats() {
    python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b"\n")
sys.stdout.write(b"".join(iter(lambda: s.recv(65536), b"")).decode())' "$dir/$1/sock" "$2"
}
async_fds() { stats "$1" "show fd" | grep -c 'ssl_async'; }
jobs_of() { stats "$1" "show info" | sed -n 's/^Jobs: //p'; }

# ---- Redis and the hosts --------------------------------------------------------------------
RPORT=$(free_port)
"$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --enable-debug-command yes >"$dir/redis.log" 2>&1 &
RPID=$!
wait_redis "$RPORT" 5 || { fail "redis-server did not start"; show "$dir/redis.log"; finish; }
url="redis://127.0.0.1:$RPORT?insecure_plaintext=1&timeout_ms=3000&force=1"
sserver_cert "$dir" || { fail "openssl req (test certificate)"; finish; }
"${CC:-cc}" -shared -fPIC -O2 c-tests/async_stack.c -o "$dir/async_stack.so" -ldl -lpthread ||
    { fail "cc c-tests/async_stack.c"; finish; }

# host NAME ASYNC(1|0) TIMEOUT_CLIENT: starts HAProxy NAME in $dir/NAME; sets NAME_PID, NAME_PORT.
host() {
    mkdir -p "$dir/$1" && cp "$dir/cert.pem" "$dir/key.pem" "$dir/$1/" || return 1
    HAPROXY_GLOBAL="    stats socket $dir/$1/sock mode 600 level admin"
    [ "$2" = 1 ] && HAPROXY_GLOBAL="$HAPROXY_GLOBAL
    ssl-mode-async"
    HAPROXY_TIMEOUT_CLIENT=$3
    haproxy_start "$dir/$1" 0 LD_PRELOAD="$dir/async_stack.so $lib" SESSCACHE_URL="$url" \
        ASYNC_STACK_OUT="$dir/$1/stack" || return 1
    eval "$1_PID=\$HAPROXY_PID; $1_PORT=\$HAPROXY_PORT"
    HAPROXY_PID=
}
HAPROXY_NBTHREAD=1
HAPROXY_BIND=no-tls-tickets
host h1 1 10s && host h2 1 10s && host h3 1 1s && host h4 0 10s ||
    { fail "a HAProxy host did not start"; show "$dir"/h?/stderr; finish; }
ok "four HAProxy hosts up (nbthread 1; h1-h3 ssl-mode-async, h4 without), preloaded, on one Redis"

# session PROTO FILE: a session made on h1 saved in FILE, once Redis holds it.
stored() { [ "$(rcli DBSIZE)" -gt "$1" ]; }
session() {
    _n=$(rcli DBSIZE)
    [ "$(sserver_connect "$h1_PORT" "-$1" -sess_out "$2")" = "New $3" ] && wait_for 5 stored "$_n"
}
# stall SECONDS: Redis sleeps SECONDS (DEBUG SLEEP) in the background; returns once it does.
stall() {
    rcli DEBUG SLEEP "$1" >/dev/null 2>&1 &
    SLEEPER=$!
    wait_for 2 redis_stalled "$RPORT"
}
unstall() { wait "$SLEEPER" 2>/dev/null; SLEEPER=; wait_redis "$RPORT" 5; }
# pending: a request waits, unread, in Redis's receive buffer (a lookup sent while it sleeps).
pending() { ss -Htn state established "( sport = :$RPORT )" | awk '$1 > 0 { f = 1 } END { exit !f }'; }
# resume_bg PORT PROTO FILE: a client resuming FILE on PORT, in the background (CLIENT);
# writes "RESULT MS" to $dir/resume.out.
resume_bg() {
    rm -f "$dir/resume.out"
    (_t=$(now_ms); _r=$(sserver_connect "$1" "-$2" -sess_in "$3")
     echo "${_r:-none} $(($(now_ms) - _t))" >"$dir/resume.out") &
    CLIENT=$!
}
# full PORT PROTO: one full handshake; prints "RESULT MS".
full() { _t=$(now_ms); _r=$(sserver_connect "$1" "-$2"); echo "${_r:-none} $(($(now_ms) - _t))"; }

# ---- a. across hosts ------------------------------------------------------------------------
for p in tls1_2:TLSv1.2 tls1_3:TLSv1.3; do
    proto=${p%%:*}; v=${p#*:}
    if session "$proto" "$dir/a-$proto" "$v"; then
        check "$(sserver_connect "$h2_PORT" "-$proto" -sess_in "$dir/a-$proto")" "Reused $v" \
            "a. $v: a session made on h1 resumes on h2 (ssl-mode-async, through Redis)"
    else
        fail "a. $v: no session from h1 in Redis"
    fi
done

# ---- b and c. Redis stalled: a resuming client and three full handshakes --------------------
# stalled_round LABEL HOST PROTO VERSION: sets FULL_MS (the full handshakes' times), RESUME
# (the resuming client's "RESULT MS"), WAITING (1 if that client still waited after them)
# and ASYNC_FDS (how many async fds HOST's `show fd` listed then).
stalled_round() {
    FULL_MS=; RESUME=; WAITING=0; ASYNC_FDS=
    eval "_port=\$$2_PORT"
    session "$3" "$dir/s" "$4" || { fail "$1: no session from h1 in Redis"; return 1; }
    stall "$STALL" || { fail "$1: Redis did not stall"; return 1; }
    resume_bg "$_port" "$3" "$dir/s"
    if ! wait_for 2 pending; then
        fail "$1: the resuming handshake sent no lookup to Redis"; unstall; wait "$CLIENT"; return 1
    fi
    for _i in 1 2 3; do
        _f=$(full "$_port" "$3")
        [ "${_f% *}" = "New $4" ] || fail "$1: full handshake $_i during the stall: ${_f% *}"
        FULL_MS="$FULL_MS ${_f##* }"
    done
    kill -0 "$CLIENT" 2>/dev/null && WAITING=1
    ASYNC_FDS=$(async_fds "$2")
    wait "$CLIENT"; CLIENT=
    RESUME=$(cat "$dir/resume.out" 2>/dev/null)
    unstall
}
for p in tls1_2:TLSv1.2 tls1_3:TLSv1.3; do
    proto=${p%%:*}; v=${p#*:}
    stalled_round "b. $v h2" h2 "$proto" "$v" || continue
    slow=$(echo "$FULL_MS" | awk '{ for (i = 1; i <= NF; i++) if ($i >= 500) n++; print n + 0 }')
    check "$slow" 0 "b. $v: Redis stalled ${STALL} s, h2's full handshakes during a resumption's lookup take < 500 ms each (ms:$FULL_MS)"
    check "$WAITING" 1 "b. $v: the resuming client still waits after them"
    check "$ASYNC_FDS" 1 "b. $v: meanwhile h2 polls one async fd (show fd: the paused job's eventfd)"
    check "${RESUME% *}" "Reused $v" "b. $v: the resuming client resumes once Redis answers (after ${RESUME##* } ms)"
done
if stalled_round "c. TLSv1.2 h4" h4 tls1_2 TLSv1.2; then
    first=$(echo "$FULL_MS" | awk '{ print $1 }')
    if [ "$first" -ge 1000 ]; then
        ok "c. control, without ssl-mode-async: h4's first full handshake waits for the stall ($first ms; ms:$FULL_MS)"
    else
        fail "c. control, without ssl-mode-async: h4's first full handshake took $first ms (< 1000: the stall did not block the event loop?)"
    fi
    check "${RESUME% *}" "Reused TLSv1.2" "c. control: the resuming client resumes once Redis answers (after ${RESUME##* } ms)"
fi

# ---- d. a connection closed while its job is paused -----------------------------------------
jobs0=$(jobs_of h3)
# Redis sleeps longer than h3's 1 s timeout plus these checks, less than timeout_ms (3 s).
if session tls1_2 "$dir/d" TLSv1.2 && stall 2.5; then
    resume_bg "$h3_PORT" tls1_2 "$dir/d"
    wait_for 2 pending || fail "d. the resuming handshake on h3 sent no lookup to Redis"
    # h3's `timeout client 1s` ends the handshake while the lookup waits.
    if wait_for "$STALL" gone "$CLIENT" && redis_stalled "$RPORT"; then
        ok "d. h3 timed out the resuming connection while Redis still slept"
        check "$(async_fds h3)" 1 "d. h3 keeps the paused connection's async fd polled (show fd), to free it later"
    else
        fail "d. h3 did not time out the resuming connection while Redis slept (event loop blocked?)"
    fi
    wait "$CLIENT"; CLIENT=
    unstall
    no_async() { [ "$(async_fds h3)" = 0 ] && [ "$(jobs_of h3)" = "$jobs0" ]; }
    if wait_for 5 no_async; then
        ok "d. once Redis answers, h3 has no async fd left and its job count is back ($jobs0)"
    else
        fail "d. h3 after the stall: $(async_fds h3) async fds, Jobs $(jobs_of h3) (before: $jobs0)"
        stats h3 "show fd" | grep ssl_async | note
    fi
    check "$(full "$h3_PORT" tls1_2 | sed 's/ [0-9]*$//')" "New TLSv1.2" "d. h3 still serves a full handshake"
else
    fail "d. no session from h1, or Redis did not stall"
fi

# ---- f. load: resuming clients, Redis answering at once -------------------------------------
# Most lookups finish before the job would pause: the connection's eventfd must still be
# shown to HAProxy once (it deletes every async fd at close, and aborts on one it never
# added). bench_client: 16 threads, each resuming its own session on h2 for 2 s.
if [ -x "$BENCH_CLIENT" ]; then
    for proto in tls1_2 tls1_3; do
        out=$("$BENCH_CLIENT" --port "$h2_PORT" --clients 16 --seconds 2 "--$proto" 2>"$dir/bench.err")
        rc=$?
        if [ $rc -eq 0 ] && kill -0 "$h2_PID" 2>/dev/null; then
            ok "f. $proto: 16 resuming clients on h2 for 2 s, h2 alive ($out)"
        else
            fail "f. $proto: 16 resuming clients on h2 (exit $rc, h2 $(kill -0 "$h2_PID" 2>/dev/null && echo alive || echo dead)): $out"
            show "$dir/bench.err" "$dir/h2/stderr"
        fi
    done
else
    fail "f. $BENCH_CLIENT is missing: run 'make build/bench_client'"
fi
for h in h2 h3; do
    eval "pid=\$${h}_PID"
    check "$(ls -l "/proc/$pid/fd" 2>/dev/null | grep -c 'eventfd')" 0 "f. $h: no eventfd left open once its connections closed"
done

# ---- every host: alive, quiet, stops with status 0 ------------------------------------------
for h in $HOSTS; do
    eval "pid=\$${h}_PID"
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"; fail "$h died (exit status $?)"; show "$dir/$h/stderr"; eval "${h}_PID="; continue
    fi
    kill -USR1 "$pid"
    if wait_for 10 gone "$pid"; then
        wait "$pid"; check "$?" 0 "$h stops on SIGUSR1 with status 0"
    else
        kill -9 "$pid" 2>/dev/null; wait "$pid"; fail "$h did not stop within 10 s of SIGUSR1"
    fi
    eval "${h}_PID="
    # HAProxy's own lines at stop are "[WARNING] … Proxy … stopped": anything else is news.
    loud=$(grep -v '^\[WARNING\] *([0-9]*) : Proxy .* stopped (cumulated conns' "$dir/$h/stderr" |
           grep -ci 'alert\|emerg\|error\|crash\|panic\|warn')
    if [ "$loud" -eq 0 ]; then ok "$h logged no alert, warning or error"
    else fail "$h logged $loud alert, warning or error lines"; show "$dir/$h/stderr"; fi
done

# ---- e. the async jobs' stacks (written by each host at exit) ------------------------------
for h in h1 h2 h3; do
    line=$(tail -n 1 "$dir/$h/stack" 2>/dev/null)
    deep=$(echo "$line" | sed -n 's/.* deepest \([0-9]*\)$/\1/p')
    if [ -z "$deep" ]; then
        fail "e. $h: no async job stack measured ($line)"
    elif [ "$deep" -lt 24576 ]; then
        ok "e. $h: the deepest async job stack used $deep bytes of $(echo "$line" | awk '{ print $5 }') ($(echo "$line" | awk '{ print $3 }') fibre(s))"
    else
        fail "e. $h: an async job stack used $deep bytes (>= 24 KiB of OpenSSL's 32 KiB, no guard page)"
    fi
done
finish
