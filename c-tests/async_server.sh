#!/bin/sh
# The example event-loop server (examples/async_server.c, one thread, epoll) against a
# redis-server this script starts:
# a. async mode on redis://: TLS 1.2 and TLS 1.3 sessions resume (openssl s_client, then
#    build/bench_client), and the server says its handshakes were suspended for lookups;
# b. Redis stalled (CLIENT PAUSE 1500 ALL; DEBUG SLEEP 1.5): a resuming client's handshake
#    waits for Redis and still resumes, while full handshakes started during the stall, one
#    after the other, each complete in well under the stall;
# c. the same server in blocking mode (sesscache_attach) as the control: there a full
#    handshake started during the stall waits for Redis too;
# d. shm: and memory: (and redis:// l1= hits): sessions resume, no handshake is suspended;
# e. under valgrind: an async server stopped by SIGTERM while a handshake waits for a
#    stalled Redis exits cleanly: no error, no definite leak.
# Every server must exit 0 on SIGTERM. Prints ok/FAIL lines and "async-server: N passed, M
# failed". Run from the top of the tree after `make`; needs redis-server, redis-cli (Debian:
# redis-server, redis-tools), openssl and valgrind: without them the checks fail, loudly.
set -u
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/ports.sh
SUITE=async-server
. c-tests/checks.sh
SERVER=${ASYNC_SERVER:-build/async_server}
CLIENT=${BENCH_CLIENT:-build/bench_client}
STALL_MS=1500   # how long Redis stalls in b. and c.
QUICK_MS=500    # b.: each full handshake during the stall completes within this

for t in redis-server redis-cli openssl valgrind; do
    command -v $t >/dev/null 2>&1 || { fail "$t is required (apt-get install redis-server redis-tools openssl valgrind)"; finish; }
done
for p in "$SERVER" "$CLIENT"; do
    [ -x "$p" ] || { fail "$p is missing: run 'make' and 'make $CLIENT' first"; finish; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/async-server.XXXXXX") || { fail "mktemp"; finish; }
SPID=; RPID=; BG=
cleanup() {
    for _p in $BG $SPID; do kill "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; done
    [ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
    rm -f "/dev/shm/sesscache-as$$"
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
now_ms() { date +%s%3N; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -days 2 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || fail "openssl could not make a certificate"

# Redis, with DEBUG allowed (Redis 7 refuses it otherwise; older ones do not know the option).
RPORT=$(free_port)
for opt in "--enable-debug-command yes" ""; do
    # shellcheck disable=SC2086 # the option's two words
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" $opt >>"$dir/redis.log" 2>&1 &
    RPID=$!
    wait_redis "$RPORT" 5 && break
    kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; RPID=
done
[ -n "$RPID" ] || { fail "redis-server did not start"; show "$dir/redis.log"; finish; }
echo "# $(redis-server --version | cut -d' ' -f1-3) on 127.0.0.1:$RPORT"
rcli() { redis-cli -p "$RPORT" "$@"; }
REDIS="redis://127.0.0.1:$RPORT?insecure_plaintext=1&timeout_ms=3000&prefix=as$$:"

# start NAME [WRAPPER…] -- ARGS…: the server (under WRAPPER, e.g. valgrind) on a free port,
# output in $dir/NAME.out and .err; sets SPID and SPORT once it says "listening on".
listening() { grep -q '^listening on' "$1" || ! kill -0 "$2" 2>/dev/null; }
start() {
    _name=$1; shift
    _wrap=
    while [ "$1" != -- ]; do _wrap="$_wrap $1"; shift; done
    shift
    for _try in 1 2 3; do
        SPORT=$(free_port)
        # shellcheck disable=SC2086 # the wrapper's words
        $_wrap "$SERVER" -p "$SPORT" -c "$dir/cert.pem" -k "$dir/key.pem" "$@" >"$dir/$_name.out" 2>"$dir/$_name.err" &
        SPID=$!
        wait_for 60 listening "$dir/$_name.out" "$SPID" && grep -q '^listening on' "$dir/$_name.out" && return 0
        kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; SPID=
    done
    show "$dir/$_name.err"
    return 1
}
# stop NAME: SIGTERM; ok if it exits 0; sets COUNTS to its last line (connections, resumed,
# suspended, failed).
stop() {
    kill -TERM "$SPID"; wait "$SPID"; _rc=$?; SPID=
    COUNTS=$(grep '^async_server: ' "$dir/$1.err" | tail -n 1)
    if [ $_rc -eq 0 ] && [ -n "$COUNTS" ]; then ok "$1: exits 0 on SIGTERM (${COUNTS#async_server: })"
    else fail "$1: exit status $_rc on SIGTERM"; show "$dir/$1.err"; fi
}
count() { echo "$COUNTS" | sed -n "s/.* \([0-9]*\) $1.*/\1/p"; }

# conn ARGS…: one HTTP request over `openssl s_client` to the server; prints e.g.
# "Reused TLSv1.2 200" (with -sess_out the session is the last one the server sent: the
# client reads until the server closes).
conn() {
    printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' |
        timeout 10 openssl s_client -connect "127.0.0.1:$SPORT" -ign_eof "$@" 2>/dev/null |
        awk '/^(New|Reused), TLSv/ { r = $1 " " $2; gsub(",", "", r) }
             /^HTTP\/1\.0 200 / { s = " 200" }
             END { print r s }'
}
# stored N: at least N sessions are in Redis under this run's prefix (stores are asynchronous).
nstored() { rcli --scan --pattern "as$$:*" | grep -vc 'stats$'; }
stored() { [ "$(nstored)" -ge "$1" ]; }
# new_session PROTO FILE [WAIT]: a full handshake, its session saved in FILE; with WAIT, until
# Redis holds what it stored (TLS 1.3: the server's two tickets).
new_session() {
    _n=$(nstored)
    conn "-tls$1" -sess_out "$2"
    if [ -n "${3:-}" ]; then
        if [ "$1" = 1_3 ]; then _n=$((_n + 2)); else _n=$((_n + 1)); fi
        wait_for 5 stored $_n
    fi
}

# resume_pair NAME PROTO [WAIT]: a new session, then resumed; with WAIT, first until Redis
# holds one session more than before.
resume_pair() {
    _a=$(new_session "$2" "$dir/sess" ${3:+"$3"})
    _b=$(conn "-tls$2" -sess_in "$dir/sess")
    v=$(echo "$2" | tr _ .)
    check "$_a / $_b" "New TLSv$v 200 / Reused TLSv$v 200" "$1: TLS $v session resumes"
}
# load NAME PROTO: bench_client, 4 resuming clients for 1 s: every connection completes, and
# (nearly) all resume (a client's first resumption may come before its session is stored).
load() {
    _out=$("$CLIENT" --port "$SPORT" --clients 4 --seconds 1 "--tls$2" 2>"$dir/client.err")
    _frac=$(echo "$_out" | sed -n 's/.*resumed_fraction \([0-9.]*\) .*failed \([0-9]*\) .*/\1 \2/p')
    case $_frac in
        0.9[5-9]*\ 0 | 1.0000\ 0) ok "$1: bench_client TLS $2: ${_out%% seconds*}" ;;
        *) fail "$1: bench_client TLS $2: $_out"; show "$dir/client.err" ;;
    esac
}

# ---- a. async, redis:// -----------------------------------------------------------------
if start async -- -u "$REDIS" -m async; then
    resume_pair "a. async redis" 1_2 wait
    resume_pair "a. async redis" 1_3 wait
    load "a. async redis" 1_2
    load "a. async redis" 1_3
    stop async
    s=$(count suspended)
    if [ "${s:-0}" -ge 2 ] && [ "$(count failed)" = 0 ]; then ok "a. async redis: $s handshakes were suspended for a lookup, none failed"
    else fail "a. async redis: suspended ${s:-?}, failed $(count failed) (want >= 2 and 0)"; fi
else
    fail "a. the async server did not start"
fi

# ---- b. and c.: Redis stalled -------------------------------------------------------------
# stall KIND: CLIENT PAUSE (returns at once) or DEBUG SLEEP (in the background; returns once
# Redis no longer answers).
stall() {
    if [ "$1" = pause ]; then
        [ "$(rcli CLIENT PAUSE $STALL_MS ALL)" = OK ]
    else
        rcli DEBUG SLEEP "$(echo "$STALL_MS" | awk '{print $1 / 1000}')" >"$dir/sleep.out" 2>&1 &
        BG=$!
        wait_for 2 redis_stalled "$RPORT"
    fi
}
# stalled NAME KIND PROTO: with the server up and Redis stalled by KIND, one client resumes a
# session over PROTO in the background while full handshakes (the other protocol's and its
# own, in turn) run one after the other until it is done. Sets RES (what the resuming client
# got), RES_MS (from the stall's start to its end), FULL (how many full handshakes ended
# while it waited, after the first 300 ms), FULL_MAX (the longest, ms), FULL_BAD (those that
# failed).
stalled() {
    new_session "$3" "$dir/stall.sess" wait >/dev/null
    t0=$(now_ms)
    stall "$2" || { fail "$1: could not stall Redis ($2)"; return 1; }
    (conn "-tls$3" -sess_in "$dir/stall.sess" >"$dir/resumer"; now_ms >"$dir/resumer.end") &
    _r=$!
    FULL=0; FULL_MAX=0; FULL_BAD=0; _i=0
    while kill -0 $_r 2>/dev/null && [ $(($(now_ms) - t0)) -lt 10000 ]; do
        _i=$((_i + 1))
        if [ $((_i % 2)) = 0 ]; then _p=1_2; else _p=1_3; fi
        _s=$(now_ms)
        _got=$(conn "-tls$_p")
        _e=$(now_ms)
        case $_got in "New TLSv"*" 200") ;; *) FULL_BAD=$((FULL_BAD + 1)) ;; esac
        [ $((_e - _s)) -gt "$FULL_MAX" ] && FULL_MAX=$((_e - _s))
        kill -0 $_r 2>/dev/null && [ $((_e - t0)) -ge 300 ] && FULL=$((FULL + 1))
    done
    wait $_r
    [ -n "$BG" ] && { wait "$BG"; BG=; }
    RES=$(cat "$dir/resumer")
    RES_MS=$(($(cat "$dir/resumer.end") - t0))
    # Redis answers again before the next step.
    wait_redis "$RPORT" 5
    echo "# $1: resuming client ${RES:-failed} after $RES_MS ms; full handshakes meanwhile: $FULL, longest $FULL_MAX ms, $FULL_BAD failed"
}

if start stall-async -- -u "$REDIS" -m async; then
    for kind in pause sleep; do
        for proto in 1_2 1_3; do
            v=$(echo $proto | tr _ .)
            name="b. async, Redis stalled ($kind), TLS $v resumption"
            stalled "$name" $kind $proto || continue
            if [ "$RES" = "Reused TLSv$v 200" ] && [ "$RES_MS" -ge $((STALL_MS - 300)) ]; then
                ok "$name: the resuming client waited for Redis ($RES_MS ms) and resumed"
            else
                fail "$name: the resuming client got '$RES' after $RES_MS ms (want Reused, >= $((STALL_MS - 300)) ms)"
            fi
            if [ "$FULL" -ge 3 ] && [ "$FULL_MAX" -lt $QUICK_MS ] && [ "$FULL_BAD" = 0 ]; then
                ok "$name: $FULL full handshakes completed while it waited, each in < $QUICK_MS ms (longest $FULL_MAX ms)"
            else
                fail "$name: full handshakes during the stall: $FULL done while it waited (want >= 3), longest $FULL_MAX ms (want < $QUICK_MS), $FULL_BAD failed"
            fi
        done
    done
    stop stall-async
else
    fail "b. the async server did not start"
fi

if start stall-blocking -- -u "$REDIS" -m blocking; then
    for kind in pause sleep; do
        proto=1_2; [ $kind = sleep ] && proto=1_3
        v=$(echo $proto | tr _ .)
        name="c. blocking (control), Redis stalled ($kind), TLS $v resumption"
        stalled "$name" $kind $proto || continue
        if [ "$FULL_MAX" -ge 800 ] && [ "$RES" = "Reused TLSv$v 200" ]; then
            ok "$name: a full handshake started during the stall waited for Redis too ($FULL_MAX ms)"
        else
            fail "$name: the longest full handshake took $FULL_MAX ms (want >= 800: the thread waits for Redis); resuming client: '$RES'"
        fi
    done
    stop stall-blocking
    check "$(count suspended)" 0 "c. blocking: no handshake suspended"
else
    fail "c. the blocking server did not start"
fi

# ---- d. backends that answer at once -------------------------------------------------------
for url in "shm:as$$" "memory:" "$REDIS&l1=1000"; do
    name="d. async ${url%%\?*}"; w=
    case $url in redis*) name="d. async redis l1=1000"; w="wait" ;; esac
    if start d -- -u "$url" -m async; then
        resume_pair "$name" 1_2 ${w:+"$w"}
        case $url in redis*) ;; *)
            resume_pair "$name" 1_3
            load "$name" 1_3 ;;
        esac
        load "$name" 1_2
        stop d
        s=$(count suspended)
        case $url in
            *l1=*) # The TLS 1.2 resumptions hit the process's own copies after the first ones.
                c=$(count resumed)
                if [ "${s:-9999}" -lt $((c / 10 + 2)) ]; then ok "$name: $s of $c resumptions suspended (l1 hits do not)"
                else fail "$name: $s of $c resumptions suspended (l1 hits should not be)"; fi ;;
            *) check "${s:-?}" 0 "$name: no handshake suspended" ;;
        esac
    else
        fail "$name: the server did not start"
    fi
done

# ---- e. valgrind ---------------------------------------------------------------------------
VG="valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99"
# shellcheck disable=SC2086 # the command's words
if start vg $VG -- -u "$REDIS" -m async; then
    resume_pair "e. valgrind" 1_2 wait
    resume_pair "e. valgrind" 1_3 wait
    # SIGTERM while a handshake waits for a stalled Redis: the suspended SSL is freed.
    new_session 1_2 "$dir/vg.sess" wait >/dev/null
    stall pause
    (conn -tls1_2 -sess_in "$dir/vg.sess" >/dev/null) &
    _c=$!
    sleep 0.5 # (valgrind is slow: let the ClientHello reach the server and suspend it)
    stop vg
    wait $_c
    # The exit status says no error and no definite leak (stop); the library's threads still
    # running at exit (a lookup waiting for the paused Redis) may leave "possibly lost" blocks.
    if grep -Eq 'definitely lost|Invalid (read|write|free)|uninitialised|Mismatched' "$dir/vg.err"; then
        fail "e. valgrind: errors or leaks"; grep -E -A12 'definitely lost|Invalid|uninitialised|Mismatched' "$dir/vg.err" | note
    else
        ok "e. valgrind: no error, no definite leak ($(grep -c 'possibly lost in loss' "$dir/vg.err") blocks possibly lost)"
    fi
    s=$(count suspended)
    if [ "${s:-0}" -ge 3 ]; then ok "e. valgrind: $s handshakes suspended, the last one still when SIGTERM came"
    else fail "e. valgrind: ${s:-?} handshakes suspended (want >= 3: 2 resumptions, and one when SIGTERM came)"; fi
    wait_redis "$RPORT" 5
else
    fail "e. the server did not start under valgrind"
fi

finish
