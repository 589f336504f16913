#!/bin/sh
# redis:// between real server processes ("hosts"), with libsesscache preloaded into
# unmodified `openssl s_server`s, against redis-servers this script starts itself:
# a. two hosts resume each other's sessions (TLS 1.2 IDs; TLS 1.3 tickets, once across the
#    fleet); `sesscache stats` sees the fleet's counters while a host still runs, and once
#    both have exited they are the sums of the hosts' own SESSCACHE_STATS lines;
# b. what Redis holds is not a readable session (and, as a control, with
#    insecure_plaintext=1 it is);
# c. a value altered in Redis, moved to another session's key, or sealed under a key the
#    host does not have is a miss and an error, never a session;
# d. key rotation: a host whose key file puts a new key first still resumes sessions sealed
#    under the old one;
# e. faults: Redis killed (every handshake completes, none waits past the timeout's bound,
#    the circuit opens) and restarted (resumption comes back by itself); Redis stalled
#    (handshakes stay bounded);
# f. requirepass: the right password (from the environment) works; a wrong one is said
#    clearly in the log, without the password;
# g. nginx, two workers: sessions resume across workers;
# h. a Redis Cluster of three nodes made by the test: a. again, through redis+cluster://.
# Prints ok/FAIL lines and "redis-servers: N passed, M failed"; exits non-zero on failure.
# Run from the top of the tree after `make lib`. Needs redis-server and redis-cli (Debian:
# redis-server, redis-tools): without them every check fails, loudly.
set -u
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/sserver.sh
. c-tests/ports.sh
. c-tests/nginx.sh
SUITE=redis-servers
. c-tests/checks.sh
field() { echo "$1" | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }
CLI=${CLI:-target/cli/release/sesscache}
# fleet URL: `sesscache stats --json URL` (the fleet's counters, as reported to Redis).
fleet() { "$CLI" stats --json "$1" 2>>"$dir/cli.err"; }
jfield() { echo "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }
# sum FILE NAME: NAME summed over the SESSCACHE_STATS lines in FILE.
sum() { grep '^sesscache stats ' "$1" | sed -n "s/.* $2=\([0-9]*\).*/\1/p" | awk '{s += $1} END {print s + 0}'; }
now_ms() { date +%s%3N; }
# quiet STATS LABEL: at least two stats lines (a server that found its port busy writes one
# too), none counting an error, network error, timeout, breaker opening or dropped write.
quiet() {
    _n=$(grep -c '^sesscache stats ' "$1")
    _loud=$(grep -v ' errors=0 .* net_errors=0 timeouts=0 breaker_opens=0 queue_drops=0 sni_refused=0$' "$1" | wc -l)
    if [ "$_n" -ge 2 ] && [ "$_loud" -eq 0 ]; then ok "$2"; else fail "$2"; show "$1"; fi
}

lib=$SSERVER_LIB
REDIS_SERVER=$(command -v redis-server || true)
REDIS_CLI=$(command -v redis-cli || true)
if [ -z "$REDIS_SERVER" ] || [ -z "$REDIS_CLI" ]; then
    fail "redis-server and redis-cli are required (apt-get install redis-server redis-tools): the redis:// tests cannot run"
    finish
fi
if [ ! -f "$lib" ]; then fail "$lib is missing: run 'make lib' first"; finish; fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/redis-servers.XXXXXX") || { fail "mktemp"; finish; }
chmod 0755 "$dir"
S1=; S2=; RPID=; RPORT=; RAUTH=; sleeper=
cleanup() {
    sserver_cleanup
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null && wait "$sleeper" 2>/dev/null
    ngx_stop 2>/dev/null
    for _p in ${CPIDS:-}; do kill -9 "$_p" 2>/dev/null; done
    [ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

rcli() { "$REDIS_CLI" -p "$RPORT" ${RAUTH:+--no-auth-warning -a "$RAUTH"} "$@"; }
# redis_start PORT [redis-server options…]: a fresh, empty Redis on 127.0.0.1:PORT; sets RPID.
redis_start() {
    _port=$1; shift
    "$REDIS_SERVER" --port "$_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" "$@" >>"$dir/redis.log" 2>&1 &
    RPID=$!; RPORT=$_port
    wait_redis "$_port" 5 ${RAUTH:+--no-auth-warning -a "$RAUTH"} && return 0
    echo "# redis-server did not answer on port $_port:"; tail -n 5 "$dir/redis.log"
    return 1
}
redis_stop() { [ -n "$RPID" ] && kill -9 "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null; RPID=; }
# keys PREFIX: the entries' keys under PREFIX, one a line (not PREFIXstats, the hash of
# the fleet's counters).
keys() { rcli --scan --pattern "$1*" 2>/dev/null | grep -vx "${1}stats"; }
# wait_keys PREFIX N [SECONDS]: until at least N keys are under PREFIX (writes are
# asynchronous), at most SECONDS (default 5).
keys_ge() { [ "$(keys "$1" | wc -l)" -ge "$2" ]; }
wait_keys() { wait_for "${3:-5}" keys_ge "$1" "$2"; }
# value KEY FILE: the value's bytes into FILE (redis-cli --raw adds a newline).
value() { rcli --raw GET "$1" | head -c -1 >"$2"; }
# mk_keys FILE HEX…: a private key file.
mk_keys() { _f=$1; shift; (umask 077; printf '%s\n' "$@" >"$_f"); }
two_servers() { sserver_two "$dir" "$dir/cert" "$@"; }
two_wait() { sserver_two_wait; }
stop_two() { for _p in $S1 $S2; do sserver_stop "$_p"; done; exec 8>&-; S1=; S2=; }

mkdir "$dir/cert"
sserver_cert "$dir/cert" || fail "openssl could not make a certificate"
K1=$(openssl rand -hex 32); K2=$(openssl rand -hex 32); K3=$(openssl rand -hex 32)
mk_keys "$dir/k1" "$K1"
mk_keys "$dir/k2" "$K2"
mk_keys "$dir/k21" "$K2" "$K1"
P=$(free_port)
redis_start "$P" || { fail "redis-server did not start"; finish; }
echo "# $("$REDIS_SERVER" --version | cut -d' ' -f1-3) on 127.0.0.1:$RPORT"
base="redis://127.0.0.1:$RPORT"

# ---- a. two hosts ------------------------------------------------------------------------
pre=a$$:
url="$base?key_file=$dir/k1&prefix=$pre&timeout_ms=200"
echo "# a. two s_server hosts, SESSCACHE_URL=$url"
f0=$failed
if two_servers 3 2 SESSCACHE_URL="$url" SESSCACHE_STATS="$dir/a.stats"; then
    c1=$(sserver_connect "$P1" -tls1_2 -sess_out "$dir/s12.pem")
    wait_keys "$pre" 1
    c2=$(sserver_connect "$P2" -tls1_2 -sess_in "$dir/s12.pem")
    n=$(keys "$pre" | wc -l)
    c3=$(SSERVER_LINGER=1 sserver_connect "$P1" -tls1_3 -sess_out "$dir/t13.pem")
    wait_keys "$pre" $((n + 1))
    c4=$(sserver_connect "$P2" -tls1_3 -sess_in "$dir/t13.pem")
    # Host 2 resumed twice and has exited (its line is written); host 1 still runs (it
    # waits for a third connection) and stored at least c1's session and c3's ticket: the
    # fleet's figures show both, host 1's from its periodic reports.
    _w=0; h1_stores=0
    while :; do
        live=$(fleet "$url")
        h2_stores=$(field "$(grep "^sesscache stats pid=$S2 " "$dir/a.stats")" stores)
        [ -n "$live" ] && [ -n "$h2_stores" ] && h1_stores=$(($(jfield "$live" stores) - h2_stores))
        [ -n "$live" ] && [ "$(jfield "$live" hits)" -ge 2 ] && [ "$h1_stores" -ge 2 ] && break
        [ $_w -ge 50 ] && break
        sleep 0.1; _w=$((_w + 1))
    done
    case $live in
        *'"scope":"fleet"'*'"hits":2,'*'"entries_complete":true,"reported_s_ago":'[0-9]*)
            if [ "$h1_stores" -ge 2 ]; then
                ok "a: sesscache stats while host 1 runs: host 2's 2 hits, host 1's $h1_stores stores, within 5 s"
            else
                fail "a: sesscache stats while host 1 runs: host 1's stores (saw $h1_stores)"; echo "# $live"
            fi ;;
        *) fail "a: sesscache stats while host 1 runs: the fleet's 2 hits and its stores"; echo "# $live"; show "$dir/cli.err" ;;
    esac
    c5=$(sserver_connect "$P1" -tls1_3 -sess_in "$dir/t13.pem")
    two_wait || fail "a: a host did not exit after its connections"
    # Both exited normally: each reported its last figures on the way out.
    done_=$(fleet "$url")
    _bad=
    for _f in lookups hits misses stores removes errors; do
        [ "$(jfield "$done_" $_f)" = "$(sum "$dir/a.stats" $_f)" ] || _bad="$_bad $_f"
    done
    if [ -z "$_bad" ] && [ "$(jfield "$done_" lookups)" -ge 3 ]; then
        ok "a: sesscache stats after both exited: lookups, hits, misses, stores, removes and errors are the sums of the hosts' own lines"
    else
        fail "a: sesscache stats after both exited: the sums of the hosts' own lines (differ:$_bad)"
        echo "# $done_"; show "$dir/a.stats"
    fi
    check "$c1" "New TLSv1.2" "a: TLS 1.2: full handshake on host 1"
    check "$c2" "Reused TLSv1.2" "a: TLS 1.2: host 1's session resumes on host 2"
    check "$c3" "New TLSv1.3" "a: TLS 1.3: full handshake on host 1, ticket saved"
    check "$c4" "Reused TLSv1.3" "a: TLS 1.3: host 1's ticket resumes on host 2"
    check "$c5" "New TLSv1.3" "a: TLS 1.3: the ticket replayed to host 1 is refused (once in the fleet)"
    quiet "$dir/a.stats" "a: both hosts: no error, network error, timeout, breaker opening or dropped write"
    [ "$failed" -eq "$f0" ] || show "$dir/a.stats" "$dir/s1/server.err" "$dir/s2/server.err"
else
    fail "a: the two hosts did not start"; show "$dir/s1/server.err" "$dir/s2/server.err"; stop_two
fi

# ---- b. nothing readable in Redis --------------------------------------------------------
echo "# b. what Redis holds under $pre"
nk=0; readable=0
for k in $(keys "$pre"); do
    nk=$((nk + 1))
    value "$k" "$dir/v"
    # The first byte is the entry's flags; a session would follow it.
    tail -c +2 "$dir/v" >"$dir/v.der"
    openssl sess_id -inform DER -noout <"$dir/v.der" 2>/dev/null && readable=$((readable + 1))
    openssl sess_id -inform DER -noout <"$dir/v" 2>/dev/null && readable=$((readable + 1))
done
[ "$nk" -ge 1 ] && ok "b: Redis holds $nk values under the prefix" || fail "b: Redis holds no value under $pre"
check "$readable" 0 "b: no value in Redis is a readable session (openssl sess_id fails on every one)"
pre=b$$:
if sserver_start "$dir/cert" 1 SESSCACHE_URL="$base?insecure_plaintext=1&prefix=$pre"; then
    sserver_connect "$SSERVER_PORT" -tls1_2 >/dev/null
    sserver_wait "$SSERVER_PID" || fail "b: the plaintext host did not exit"
    wait_keys "$pre" 1
    value "$(keys "$pre" | head -n 1)" "$dir/p"
    if tail -c +2 "$dir/p" | openssl sess_id -inform DER -noout 2>/dev/null; then
        ok "b: control: with insecure_plaintext=1 the value is a readable session (the check above can see one)"
    else
        fail "b: control: the insecure_plaintext=1 value is not readable either: the check above proves nothing"
    fi
else
    fail "b: the plaintext host did not start"
fi

# ---- c. altered, moved, foreign ----------------------------------------------------------
pre=c$$:
url="$base?key_file=$dir/k1&prefix=$pre&timeout_ms=200"
echo "# c. values altered, moved or sealed under an unknown key"
f0=$failed
if two_servers 3 3 SESSCACHE_URL="$url" SESSCACHE_STATS="$dir/c.stats"; then
    sserver_connect "$P1" -tls1_2 -sess_out "$dir/x.pem" >/dev/null
    wait_keys "$pre" 1
    kx=$(keys "$pre" | head -n 1)
    sserver_connect "$P1" -tls1_2 -sess_out "$dir/y.pem" >/dev/null
    wait_keys "$pre" 2
    ky=$(keys "$pre" | grep -v "^$kx\$" | head -n 1)
    sserver_connect "$P1" -tls1_2 -sess_out "$dir/z.pem" >/dev/null
    wait_keys "$pre" 3
    kz=$(keys "$pre" | grep -v -e "^$kx\$" -e "^$ky\$" | head -n 1)
    # x: one byte of the sealed body changed (to a letter it is not).
    value "$kx" "$dir/vx"
    b=$(od -An -tx1 -j 30 -N 1 "$dir/vx" | tr -d ' ')
    if [ "$b" = 41 ]; then new=B; else new=A; fi
    rcli SETRANGE "$kx" 30 "$new" >/dev/null
    # y: replaced by z's value (sealed for z's ID).
    value "$kz" "$dir/vz"
    rcli -x SET "$ky" <"$dir/vz" >/dev/null
    r1=$(sserver_connect "$P2" -tls1_2 -sess_in "$dir/x.pem")
    r2=$(sserver_connect "$P2" -tls1_2 -sess_in "$dir/y.pem")
    r3=$(sserver_connect "$P2" -tls1_2 -sess_in "$dir/z.pem")
    h1=$S1; h2=$S2
    two_wait || fail "c: a host did not exit"
    check "$r1" "New TLSv1.2" "c: a value altered in Redis (SETRANGE) does not resume"
    check "$r2" "New TLSv1.2" "c: a value moved under another session's key does not resume"
    check "$r3" "Reused TLSv1.2" "c: the untouched session still resumes"
    e1=$(field "$(grep "^sesscache stats pid=$h1 " "$dir/c.stats")" errors)
    e2=$(field "$(grep "^sesscache stats pid=$h2 " "$dir/c.stats")" errors)
    check "$e1 $e2" "0 2" "c: host 2 counted both as errors (host 1 none)"
    [ "$failed" -eq "$f0" ] || show "$dir/c.stats" "$dir/s2/server.err"
else
    fail "c: the hosts did not start"; stop_two
fi
# A host with another key: the sessions of host 1 are misses and errors there.
if sserver_start "$dir/cert" 1 SESSCACHE_URL="$base?key_file=$dir/k2&prefix=$pre&timeout_ms=200" \
    SESSCACHE_STATS="$dir/c2.stats"; then
    r=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/z.pem")
    sserver_wait "$SSERVER_PID" || fail "c: the other-key host did not exit"
    check "$r" "New TLSv1.2" "c: a session sealed under a key the host lacks does not resume"
    check "$(field "$(cat "$dir/c2.stats")" errors)" 1 "c: and counts as an error"
else
    fail "c: the other-key host did not start"
fi

# ---- d. key rotation ---------------------------------------------------------------------
pre=d$$:
echo "# d. rotation: host 1 seals under K1; host 2's key file has K2 first, then K1"
if sserver_start "$dir/cert" 1 SESSCACHE_URL="$base?key_file=$dir/k1&prefix=$pre"; then
    sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$dir/r.pem" >/dev/null
    sserver_wait "$SSERVER_PID" || fail "d: host 1 did not exit"
    wait_keys "$pre" 1
    if sserver_start "$dir/cert" 2 SESSCACHE_URL="$base?key_file=$dir/k21&prefix=$pre"; then
        r1=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/r.pem")
        r2=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$dir/r2.pem")
        sserver_wait "$SSERVER_PID" || fail "d: host 2 did not exit"
        check "$r1" "Reused TLSv1.2" "d: a session sealed under the old key resumes after rotation"
        check "$r2" "New TLSv1.2" "d: (a new session on the rotated host)"
    else
        fail "d: host 2 did not start"
    fi
    # The new session is sealed under K2: a host with only K1 cannot open it.
    wait_keys "$pre" 2
    if sserver_start "$dir/cert" 1 SESSCACHE_URL="$base?key_file=$dir/k1&prefix=$pre"; then
        r=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/r2.pem")
        sserver_wait "$SSERVER_PID" || fail "d: the old host did not exit"
        check "$r" "New TLSv1.2" "d: the rotated host seals under the new key (an old-key host cannot open it)"
    else
        fail "d: the old-key host did not start"
    fi
else
    fail "d: host 1 did not start"
fi

# ---- e. faults ---------------------------------------------------------------------------
pre=e$$:
T=50
url="$base?key_file=$dir/k1&prefix=$pre&timeout_ms=$T"
echo "# e. faults, timeout_ms=$T"
# timed PORT ARGS…: "RESULT MS" for one connection.
timed() { _t0=$(now_ms); _r=$(sserver_connect "$@"); echo "$_r $(( $(now_ms) - _t0 ))"; }
# pad PORT N: N more connections, so that a server started for a fixed number of accepts
# exits normally (and writes its stats line).
pad() { _i=0; while [ "$_i" -lt "$2" ]; do sserver_connect "$1" -tls1_2 >/dev/null; _i=$((_i + 1)); done; }
EN=48
if sserver_start "$dir/cert" $EN SESSCACHE_URL="$url" SESSCACHE_STATS="$dir/e.stats"; then
    E=$SSERVER_PORT; EP=$SSERVER_PID; used=0
    base_ms=$(timed "$E" -tls1_2 -sess_out "$dir/e.pem" | cut -d' ' -f3); used=1
    wait_keys "$pre" 1
    redis_stop
    worst=0; done_n=0; all_new=1
    i=0
    while [ $i -lt 8 ]; do
        set -- $(timed "$E" -tls1_2 -sess_in "$dir/e.pem")
        [ "$1 $2" = "New TLSv1.2" ] || all_new=0
        [ "$3" -gt "$worst" ] && worst=$3
        [ -n "$1" ] && done_n=$((done_n + 1))
        i=$((i + 1)); used=$((used + 1))
    done
    check "$done_n $all_new" "8 1" "e: Redis killed: all 8 handshakes completed (full handshakes)"
    # A handshake here takes base_ms; the cache may add its timeout (plus scheduling slack).
    bound=$((base_ms + T + 400))
    if [ "$worst" -le "$bound" ]; then
        ok "e: Redis killed: the slowest handshake took $worst ms (alone: $base_ms ms; bound $bound ms)"
    else
        fail "e: Redis killed: a handshake took $worst ms, more than $bound ms"
    fi
    # (DEBUG SLEEP, for the stall below, is refused unless enabled: Redis 7 and later.)
    debug_opt=
    [ "$("$REDIS_SERVER" --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')" -ge 7 ] 2>/dev/null &&
        debug_opt="--enable-debug-command local"
    # shellcheck disable=SC2086 # none or one option and its value
    redis_start "$RPORT" $debug_opt || fail "e: redis-server did not restart"
    # Resumption comes back by itself: new sessions are stored and resume again. (While the
    # breaker is open nothing is stored: a try waits 0.5 s at most for its session's key.)
    back=; i=0
    while [ $i -lt 15 ] && [ -z "$back" ]; do
        nk=$(keys "$pre" | wc -l)
        sserver_connect "$E" -tls1_2 -sess_out "$dir/e2.pem" >/dev/null
        wait_keys "$pre" $((nk + 1)) 0.5 2>/dev/null
        [ "$(sserver_connect "$E" -tls1_2 -sess_in "$dir/e2.pem")" = "Reused TLSv1.2" ] && back=$i
        i=$((i + 1)); used=$((used + 2))
    done
    if [ -n "$back" ]; then ok "e: Redis restarted: resumption came back by itself (after $((back + 1)) tries)"; else fail "e: Redis restarted: no resumption in 15 tries"; fi
    # Stalled: Redis sleeps 3 s; lookups give up after the timeout. The stall must be seen
    # (PING unanswered) before the handshake and last past it, or this measures nothing.
    rcli DEBUG SLEEP 3 >"$dir/sleep.out" 2>&1 &
    sleeper=$!
    wait_for 2 redis_stalled "$RPORT"; stalled=$?
    set -- $(timed "$E" -tls1_2 -sess_in "$dir/e2.pem"); used=$((used + 1))
    if [ $stalled -eq 0 ] && kill -0 "$sleeper" 2>/dev/null; then
        ok "e: Redis stalled: PING went unanswered before the handshake, DEBUG SLEEP still ran after it"
    else
        fail "e: Redis stalled: the stall did not take effect around the handshake (PING unanswered: $([ $stalled -eq 0 ] && echo yes || echo no)): $(cat "$dir/sleep.out")"
    fi
    if [ "$1" = New ] || [ "$1" = Reused ]; then
        if [ "$3" -le "$bound" ]; then ok "e: Redis stalled: the handshake took $3 ms (bound $bound ms)"; else fail "e: Redis stalled: the handshake took $3 ms, more than $bound ms"; fi
    else
        fail "e: Redis stalled: the handshake did not complete"
    fi
    # (The last connections need no Redis: they run while it still sleeps.)
    pad "$E" $((EN - used))
    wait "$sleeper"; sleeper=
    sserver_wait "$EP" || fail "e: the host did not exit after its $EN connections"
    st=$(cat "$dir/e.stats" 2>/dev/null)
    if [ -z "$st" ]; then
        fail "e: no stats line from the host"
    else
        [ "$(field "$st" breaker_opens)" -ge 1 ] && ok "e: the circuit breaker opened ($(field "$st" breaker_opens) times)" || fail "e: the breaker never opened: $st"
        [ "$(( $(field "$st" timeouts) + $(field "$st" net_errors) ))" -ge 1 ] && ok "e: timeouts and network errors were counted" || fail "e: no timeout or network error counted: $st"
    fi
else
    fail "e: the host did not start"
fi

# ---- f. passwords ------------------------------------------------------------------------
redis_stop
PW=pw-$(openssl rand -hex 8)
RAUTH=$PW
redis_start "$(free_port)" --requirepass "$PW" || fail "f: redis-server with requirepass did not start"
base="redis://127.0.0.1:$RPORT"
pre=f$$:
echo "# f. requirepass"
if two_servers 1 1 SESSCACHE_URL="$base?key_file=$dir/k1&prefix=$pre&password_env=SC_REDIS_PW" SC_REDIS_PW="$PW"; then
    sserver_connect "$P1" -tls1_2 -sess_out "$dir/f.pem" >/dev/null
    wait_keys "$pre" 1
    r=$(sserver_connect "$P2" -tls1_2 -sess_in "$dir/f.pem")
    two_wait || fail "f: a host did not exit"
    check "$r" "Reused TLSv1.2" "f: with the right password (password_env) sessions resume across hosts"
else
    fail "f: the hosts did not start"; stop_two
fi
if sserver_start "$dir/cert" 2 SESSCACHE_URL="$base?key_file=$dir/k1&prefix=$pre&password_env=SC_REDIS_PW" \
    SC_REDIS_PW="wrong-$PW" SESSCACHE_STATS="$dir/f.stats"; then
    r1=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$dir/f2.pem")
    r2=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/f2.pem")
    sserver_wait "$SSERVER_PID" || fail "f: the wrong-password host did not exit"
    check "$r1 | $r2" "New TLSv1.2 | New TLSv1.2" "f: with a wrong password: handshakes complete, nothing resumes"
    if grep -qi 'sesscache.*redis.*\(auth\|password\|WRONGPASS\)' "$dir/cert/server.err"; then
        ok "f: the wrong password is said in the log: $(grep -i 'sesscache' "$dir/cert/server.err" | head -n 1)"
    else
        fail "f: nothing in the log says the password is wrong"; show "$dir/cert/server.err"
    fi
    if grep -q -- "$PW" "$dir/cert/server.err" "$dir/f.stats"; then
        fail "f: the log shows the password"
    else
        ok "f: the log never shows the password"
    fi
else
    fail "f: the wrong-password host did not start"
fi

# ---- g. nginx, two workers ---------------------------------------------------------------
if [ -x /usr/sbin/nginx ]; then NGX_BIN=/usr/sbin/nginx; else NGX_BIN=$(command -v nginx || true); fi
pre=g$$:
if [ -z "$NGX_BIN" ]; then
    fail "g: nginx is not installed (apt-get install nginx)"
else
    echo "# g. nginx, 2 workers, reuseport, redis://"
    ndir=$dir/ngx; mkdir "$ndir"
    sserver_cert "$ndir"
    f0=$failed
    if ngx_start "$ndir" LD_PRELOAD="$lib" \
        SESSCACHE_URL="$base?key_file=$dir/k1&prefix=$pre&password_env=SC_REDIS_PW" SC_REDIS_PW="$PW" \
        SESSCACHE_STATS="$ndir/stats"; then
        ngx_pairs_cross "$ndir"
        check "$workers" 2 "g: both workers served"
        if [ "$cross_reused" -ge 1 ] && [ "$cross_new" -eq 0 ] && [ "$same_new" -eq 0 ]; then
            ok "g: $cross_reused of $((cross_reused + same_reused)) resumptions on the other worker than the one that made the session, none refused"
        else
            fail "g: cross-worker resumed $cross_reused, refused $cross_new; same-worker resumed $same_reused, refused $same_new"
        fi
        check "$(grep -c -e '-replay New TLSv1.3 ' "$ndir/clients")" "$ROUNDS" "g: each replayed TLS 1.3 ticket refused"
        ngx_stop || fail "g: nginx did not exit on SIGQUIT"
        [ "$failed" -eq "$f0" ] || show "$ndir/clients" "$ndir/error.log" "$ndir/stats"
    else
        fail "g: nginx did not start"
    fi
fi

# ---- h. a Redis Cluster of three nodes ---------------------------------------------------
echo "# h. redis+cluster://, three nodes made by the test"
CPIDS=
cluster_stop() { for _p in $CPIDS; do kill -9 "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; done; CPIDS=; }
nodes=; seeds=
for n in 1 2 3; do
    cp_=$(free_cluster_port)
    mkdir -p "$dir/cluster-$n"
    "$REDIS_SERVER" --port "$cp_" --bind 127.0.0.1 --save '' --appendonly no \
        --cluster-enabled yes --cluster-config-file "$dir/cluster-$n/nodes.conf" \
        --dir "$dir/cluster-$n" >"$dir/cluster-$n/log" 2>&1 &
    CPIDS="$CPIDS $!"
    nodes="$nodes 127.0.0.1:$cp_"
    seeds="${seeds:+$seeds,}127.0.0.1:$cp_"
    first=${first:-$cp_}
done
for hp in $nodes; do
    wait_redis "${hp#*:}" 5 || { echo "# cluster node $hp did not start:"; tail -n 5 "$dir"/cluster-*/log; }
done
cluster_ok() { "$REDIS_CLI" -p "$1" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok'; }
# ckeys PREFIX: how many keys are under PREFIX on the nodes together; ckeys_ge PREFIX N.
ckeys() {
    for hp in $nodes; do "$REDIS_CLI" -p "${hp#*:}" --scan --pattern "$1*" 2>/dev/null; done |
        grep -vxc "${1}stats"
}
ckeys_ge() { [ "$(ckeys "$1")" -ge "$2" ]; }
if "$REDIS_CLI" --cluster create $nodes --cluster-replicas 0 --cluster-yes >"$dir/cluster.log" 2>&1; then
    wait_for 10 cluster_ok "$first"
    pre=h$$:
    url="redis+cluster://$seeds?key_file=$dir/k1&prefix=$pre&timeout_ms=200"
    if two_servers 3 2 SESSCACHE_URL="$url" SESSCACHE_STATS="$dir/h.stats"; then
        c1=$(sserver_connect "$P1" -tls1_2 -sess_out "$dir/h12.pem")
        wait_for 5 ckeys_ge "$pre" 1
        c2=$(sserver_connect "$P2" -tls1_2 -sess_in "$dir/h12.pem")
        n=$(ckeys "$pre")
        c3=$(SSERVER_LINGER=1 sserver_connect "$P1" -tls1_3 -sess_out "$dir/h13.pem")
        wait_for 5 ckeys_ge "$pre" $((n + 1))
        c4=$(sserver_connect "$P2" -tls1_3 -sess_in "$dir/h13.pem")
        c5=$(sserver_connect "$P1" -tls1_3 -sess_in "$dir/h13.pem")
        two_wait || fail "h: a host did not exit"
        check "$c1 | $c2" "New TLSv1.2 | Reused TLSv1.2" "h: cluster TLS 1.2: host 1's session resumes on host 2"
        check "$c3 | $c4 | $c5" "New TLSv1.3 | Reused TLSv1.3 | New TLSv1.3" \
            "h: cluster TLS 1.3: the ticket resumes on host 2, once"
        spread=0
        for hp in $nodes; do
            [ "$("$REDIS_CLI" -p "${hp#*:}" DBSIZE 2>/dev/null)" -gt 0 ] 2>/dev/null && spread=$((spread + 1))
        done
        echo "# h: keys on $spread of 3 nodes"
        quiet "$dir/h.stats" "h: no error, network error, timeout or dropped write on either host"
    else
        fail "h: the hosts did not start"; stop_two
    fi
else
    fail "h: redis-cli --cluster create failed"; show "$dir/cluster.log"
fi
cluster_stop

finish
