#!/bin/sh
# Failover, for real: Redis servers and Sentinels this script starts itself, two hosts
# (unmodified `openssl s_server`s with libsesscache preloaded) and a loop of handshakes in
# which a session made on host A is offered to host B (TLS 1.2 session IDs with -no_ticket
# and TLS 1.3 stateful tickets, in turn).
# a. redis+sentinel://: a primary, a replica and three Sentinels (quorum 2,
#    down-after-milliseconds 1000, their own requirepass, given to the hosts by
#    sentinel_password_env); `sesscache check` and `stats` through the Sentinels; a wrong
#    Sentinel password is said clearly.
# b. the primary is killed (kill -9) mid-loop: every handshake completes, none waits past
#    its budget, and resumption across hosts comes back within 10 s of the promotion (as
#    the Sentinels report it).
# c. the old primary comes back (a replica now) and a failover is forced onto it (SENTINEL
#    FAILOVER): the node the hosts were using stays up, takes writes until Sentinel demotes
#    it (about 10 s later; it disconnects the node's clients as it does), then is a
#    replica; resumption across hosts comes back within 10 s of the demotion; the hosts
#    leave the old primary within about a second of the Sentinels' switch (every session
#    made from 3 s after it resumes); the sessions written to it in between (lost) are
#    counted.
# d. redis+cluster://, 3 primaries and 3 replicas (cluster-node-timeout 1000): a primary
#    holding the loop's keys is killed mid-loop; the same assertions as b.
# Each prints what it measured: time to the promotion, to the first resumption across hosts
# after it, and the sessions lost (made on A, not resumed on B).
# Prints ok/FAIL lines and "redis-failover: N passed, M failed"; exits non-zero on failure.
# Run from the top of the tree after `make lib cli`. Needs redis-server (which runs the
# Sentinels too, as `redis-server FILE --sentinel`) and redis-cli (Debian: redis-server,
# redis-tools): without them every check fails, loudly.
set -u
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/sserver.sh
. c-tests/ports.sh
SUITE=redis-failover
. c-tests/checks.sh
CLI=${CLI:-target/cli/release/sesscache}
now_ms() { date +%s%3N; }

lib=$SSERVER_LIB
REDIS_SERVER=$(command -v redis-server || true)
REDIS_CLI=$(command -v redis-cli || true)
if [ -z "$REDIS_SERVER" ] || [ -z "$REDIS_CLI" ]; then
    fail "redis-server and redis-cli are required (apt-get install redis-server redis-tools): the failover tests cannot run"
    finish
fi
if [ ! -f "$lib" ]; then fail "$lib is missing: run 'make lib' first"; finish; fi
if [ ! -x "$CLI" ]; then fail "$CLI is missing: run 'make cli' first"; finish; fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/redis-failover.XXXXXX") || { fail "mktemp"; finish; }
chmod 0755 "$dir"
S1=; S2=; PIDS=; POLLER=
cleanup() {
    sserver_cleanup
    [ -n "$POLLER" ] && kill "$POLLER" 2>/dev/null
    for _p in $PIDS; do kill -9 "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# redis_node NAME PORT [options…]: a fresh Redis in $dir/NAME; its PID in PID_NAME.
redis_node() {
    _n=$1; _port=$2; shift 2
    mkdir -p "$dir/$_n"
    "$REDIS_SERVER" --port "$_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir/$_n" "$@" >>"$dir/$_n/log" 2>&1 &
    eval "PID_$_n=$!"; PIDS="$PIDS $!"
    wait_redis "$_port" 5 || { echo "# redis-server $_n did not answer on port $_port:"; tail -n 5 "$dir/$_n/log"; return 1; }
}

mkdir "$dir/cert"
sserver_cert "$dir/cert" || fail "openssl could not make a certificate"
(umask 077; openssl rand -hex 32 >"$dir/k")

# ---- the loop ----------------------------------------------------------------------------
# timed PORT ARGS…: "RESULT MS" for one connection.
timed() { _t0=$(now_ms); _r=$(sserver_connect "$@"); echo "${_r:-none none} $(( $(now_ms) - _t0 ))"; }
# one_round LOG: a session made on host A (P1), offered to host B (P2); appends
# "START_MS A_RESULT A_PROTOCOL A_MS B_RESULT B_PROTOCOL B_MS" to LOG. Rounds alternate:
# TLS 1.2 session IDs (-no_ticket; the session is kept in $dir/sess for reoffer), then a
# TLS 1.3 stateful ticket (single use: B's lookup takes it).
ROUND=0
one_round() {
    _log=$1; _s=$(now_ms); ROUND=$((ROUND + 1))
    if [ $((ROUND % 2)) -eq 1 ]; then _p="-tls1_2 -no_ticket"; else _p=-tls1_3; fi
    set -- $(timed "$P1" $_p -sess_out "$dir/loop.pem")
    _a="$1 $2 $3"
    # Stores are sent in the background (batch_ms after the previous batch): a short pause
    # so that host B asks after host A's write, as a client returning later would.
    sleep 0.05
    set -- $(timed "$P2" $_p -sess_in "$dir/loop.pem")
    echo "$_s $_a $1 $2 $3" >>"$_log"
    if [ $((ROUND % 2)) -eq 1 ]; then
        mkdir -p "$dir/sess"; cp "$dir/loop.pem" "$dir/sess/$_s.pem" 2>/dev/null
    fi
}
# reoffer FROM_MS TO_MS: offers host B again the TLS 1.2 sessions made from FROM_MS to
# TO_MS (a TLS 1.3 ticket was taken by its first resumption); prints "RESUMED OFFERED".
reoffer() {
    _r=0; _o=0
    for _f in "$dir"/sess/*.pem; do
        _t=$(basename "$_f" .pem)
        [ "$_t" -ge "$1" ] && [ "$_t" -lt "$2" ] || continue
        _o=$((_o + 1))
        [ "$(sserver_connect "$P2" -tls1_2 -no_ticket -sess_in "$_f")" = "Reused TLSv1.2" ] && _r=$((_r + 1))
    done
    echo "$_r $_o"
}
# rounds LOG SECONDS: rounds for SECONDS.
rounds() {
    _end=$(( $(now_ms) + $2 * 1000 ))
    while [ "$(now_ms)" -lt "$_end" ]; do one_round "$1"; done
}
# poll_primary OUT COMMAND…: writes "MS ADDRESS" to OUT each time COMMAND's answer (the
# primary's address) changes, every 50 ms, in the background; sets POLLER.
poll_primary() {
    _out=$1; shift
    (prev=; while :; do
        a=$("$@" 2>/dev/null | tr '\n' ' ')
        [ -n "$a" ] && [ "$a" != "$prev" ] && { echo "$(now_ms) $a" >>"$_out"; prev=$a; }
        sleep 0.05
    done) &
    POLLER=$!
}
stop_two() { for _p in $S1 $S2; do sserver_stop "$_p"; done; exec 8>&-; S1=; S2=; }
stop_poller() { [ -n "$POLLER" ] && kill "$POLLER" 2>/dev/null && wait "$POLLER" 2>/dev/null; POLLER=; }
# judge LABEL LOG FAULT_MS PROMOTED_MS BOUND_MS: the assertions on a loop's log.
judge() {
    _l=$1; _log=$2; _fault=$3; _prom=$4; _bound=$5
    _n=$(wc -l <"$_log")
    _incomplete=$(awk '$2 != "New" || ($5 != "New" && $5 != "Reused")' "$_log" | wc -l)
    if [ "$_n" -ge 10 ] && [ "$_incomplete" -eq 0 ]; then
        ok "$_l: all $((2 * _n)) handshakes of $_n rounds completed ($(awk '$3 == "TLSv1.3"' "$_log" | wc -l) rounds TLS 1.3, $(awk '$3 == "TLSv1.2"' "$_log" | wc -l) TLS 1.2)"
    else
        fail "$_l: $_incomplete of $_n rounds had a handshake that did not complete"
        awk '$2 != "New" || ($5 != "New" && $5 != "Reused")' "$_log" | head -n 5 | note
    fi
    _worst=$(awk '{ if ($4 > w) w = $4; if ($7 > w) w = $7 } END { print w + 0 }' "$_log")
    if [ "$_worst" -le "$_bound" ]; then
        ok "$_l: the slowest handshake took $_worst ms (bound $_bound ms)"
    else
        fail "$_l: a handshake took $_worst ms, more than $_bound ms"
        awk -v b="$_bound" '$4 > b || $7 > b' "$_log" | head -n 5 | note
    fi
    _before=$(awk -v f="$_fault" '$1 < f - 500 && $5 != "Reused"' "$_log" | wc -l)
    _nbefore=$(awk -v f="$_fault" '$1 < f - 500' "$_log" | wc -l)
    if [ "$_nbefore" -ge 3 ] && [ "$_before" -eq 0 ]; then
        ok "$_l: before the fault all $_nbefore sessions resumed across hosts"
    else
        fail "$_l: before the fault $_before of $_nbefore sessions did not resume across hosts"
    fi
    if [ -z "$_prom" ]; then
        fail "$_l: no promotion seen"
        return
    fi
    _first=$(awk -v p="$_prom" '$1 >= p && $5 == "Reused" { print $1; exit }' "$_log")
    _lost=$(awk -v f="$_fault" '$1 >= f - 500 && $5 != "Reused"' "$_log" | wc -l)
    _after=$(awk -v f="$_fault" '$1 >= f - 500' "$_log" | wc -l)
    # Once back, it stays back: every session of the loop's last 3 rounds resumed.
    _tail_bad=$(tail -n 3 "$_log" | awk '$5 != "Reused"' | wc -l)
    if [ -n "$_first" ] && [ $((_first - _prom)) -le 10000 ]; then
        ok "$_l: resumption across hosts came back $((_first - _prom)) ms after the promotion (at most 10 s)"
    else
        fail "$_l: no resumption across hosts within 10 s of the promotion (first: ${_first:-none})"
    fi
    check "$_tail_bad" 0 "$_l: the last 3 rounds all resumed across hosts"
    echo "# $_l: promotion $((_prom - _fault)) ms after the fault; first resumption across hosts $(( ${_first:-$_prom} - _prom )) ms after it; sessions lost $_lost of the $_after made from the fault on"
}

T=100
# A handshake here takes a fork and exec of s_client and a full or resumed handshake (tens of
# ms, measured alone below); the cache may add at most its timeout_ms to host B's (a lookup
# waits for a connection within its budget, never longer), and host A's never waits (stores
# are queued). 600 ms more covers process start-up and scheduling on a shared, loaded
# 2-core machine (other suites run alongside).
MARGIN=600
BOUND=$((200 + T + MARGIN))

# ---- a. Sentinels ------------------------------------------------------------------------
M=mymaster
PW=spw-$(openssl rand -hex 8)
PP=$(free_cluster_port); RP=$(free_cluster_port)
echo "# a. a primary (127.0.0.1:$PP), a replica (127.0.0.1:$RP), three Sentinels"
redis_node primary "$PP" || fail "a: the primary did not start"
redis_node replica "$RP" --replicaof 127.0.0.1 "$PP" || fail "a: the replica did not start"
SPORTS=
for n in 1 2 3; do
    sp=$(free_cluster_port)
    mkdir -p "$dir/sentinel$n"
    cat >"$dir/sentinel$n/sentinel.conf" <<EOF
port $sp
bind 127.0.0.1
daemonize no
dir $dir/sentinel$n
requirepass $PW
sentinel sentinel-pass $PW
sentinel monitor $M 127.0.0.1 $PP 2
sentinel down-after-milliseconds $M 1000
sentinel failover-timeout $M 5000
sentinel parallel-syncs $M 1
EOF
    "$REDIS_SERVER" "$dir/sentinel$n/sentinel.conf" --sentinel >"$dir/sentinel$n/log" 2>&1 &
    PIDS="$PIDS $!"
    SPORTS="$SPORTS $sp"
done
scli() { _p=$1; shift; "$REDIS_CLI" -p "$_p" --no-auth-warning -a "$PW" "$@"; }
S_FIRST=${SPORTS# }; S_FIRST=${S_FIRST%% *}
# The Sentinels know the replica and each other (hello messages every 2 s, INFO every 10 s).
ready() {
    for _sp in $SPORTS; do
        _info=$(scli "$_sp" SENTINEL master "$M" 2>/dev/null | tr '\n' ' ')
        case $_info in *'num-slaves 1 '*'num-other-sentinels 2 '*) ;; *) return 1 ;; esac
    done
}
linked() { "$REDIS_CLI" -p "$RP" INFO replication 2>/dev/null | grep -q 'master_link_status:up'; }
if wait_for 10 linked && wait_for 20 ready; then
    ok "a: the replica is in sync and the three Sentinels see it and each other"
else
    fail "a: the Sentinels are not ready"; show "$dir"/sentinel*/log
fi
sentinels=$(echo $SPORTS | sed 's/\([0-9]*\)/127.0.0.1:\1/g; s/ /,/g')
url="redis+sentinel://$sentinels/$M?key_file=$dir/k&prefix=f$$:&timeout_ms=$T&sentinel_password_env=SC_SENTINEL_PW"
echo "# SESSCACHE_URL=$url"
out=$(SC_SENTINEL_PW=$PW "$CLI" check "$url" 2>&1); rc=$?
check "$rc" 0 "a: sesscache check through the Sentinels: $out"
out=$(SC_SENTINEL_PW=wrong-$PW SESSCACHE_LOG=warn "$CLI" check "$url" 2>&1); rc=$?
case "$rc $out" in
    0*) fail "a: sesscache check with a wrong Sentinel password succeeded" ;;
    *sentinel_password*) ok "a: a wrong Sentinel password is said: $(echo "$out" | grep -m1 sentinel_password)" ;;
    *) fail "a: a wrong Sentinel password is not said clearly"; echo "$out" | note ;;
esac
if echo "$out" | grep -q -- "$PW"; then fail "a: the message shows the password"; else ok "a: the message never shows the password"; fi

if sserver_two "$dir" "$dir/cert" 100000 100000 SESSCACHE_URL="$url" SC_SENTINEL_PW="$PW" \
    SESSCACHE_LOG=info; then
    # Alone (Redis up, warm): the handshake's own cost, for the bound.
    rounds "$dir/warm" 1
    base=$(awk '{ if ($4 > w) w = $4; if ($7 > w) w = $7 } END { print w + 0 }' "$dir/warm")
    BOUND=$((base + T + MARGIN))
    out=$(SC_SENTINEL_PW=$PW "$CLI" stats --json "$url" 2>&1)
    case $out in
        *'"scope":"fleet"'*'"entries":'[1-9]*) ok "a: sesscache stats through the Sentinels counts the entries" ;;
        *) fail "a: sesscache stats through the Sentinels"; echo "$out" | note ;;
    esac

    # ---- b. the primary killed -----------------------------------------------------------
    echo "# b. kill -9 the primary mid-loop (handshake bound $BOUND ms: alone $base ms + timeout_ms $T + $MARGIN)"
    poll_primary "$dir/b.primary" scli "$S_FIRST" SENTINEL get-master-addr-by-name "$M"
    rounds "$dir/b.log" 4
    fault=$(now_ms)
    kill -9 "$PID_primary"; wait "$PID_primary" 2>/dev/null
    rounds "$dir/b.log" 6
    # Until the promotion (at most 15 s), then 3 s more.
    while ! grep -q " $RP " "$dir/b.primary" && [ $(( $(now_ms) - fault )) -lt 15000 ]; do one_round "$dir/b.log"; done
    prom=$(awk -v p="$RP" '$3 == p { print $1; exit }' "$dir/b.primary")
    [ -n "$prom" ] && while [ $(( $(now_ms) - prom )) -lt 4000 ]; do one_round "$dir/b.log"; done
    stop_poller
    judge b "$dir/b.log" "$fault" "$prom" "$BOUND"
    # What the failover itself lost: the sessions of the last 3 s before the kill (all
    # resumed then, from the old primary) offered again, now that the replica is the
    # primary. Replication is asynchronous: what the old primary had not yet sent to the
    # replica is gone; on loopback that is at most the last round or two.
    set -- $(reoffer $((fault - 3000)) "$fault")
    echo "# b: of the $2 sessions made in the 3 s before the kill, $1 resume after the failover"
    if [ "$2" -ge 3 ] && [ $(($2 - $1)) -le 2 ]; then
        ok "b: the failover lost $(($2 - $1)) of the $2 sessions stored in the 3 s before the kill (at most 2)"
    else
        fail "b: the failover lost $(($2 - $1)) of the $2 sessions stored in the 3 s before the kill"
    fi

    # ---- c. the old primary back as a replica, a failover forced onto it ------------------
    echo "# c. the old primary restarted; SENTINEL FAILOVER moves the primary back to it"
    redis_node primary "$PP" || fail "c: the old primary did not restart"
    # Sentinel turns it into a replica of the new primary (+convert-to-slave).
    olinked() { "$REDIS_CLI" -p "$PP" INFO replication 2>/dev/null | tr -d '\r' | grep -q 'master_link_status:up'; }
    wait_for 20 olinked || fail "c: the old primary did not become a replica"
    sready() { scli "$S_FIRST" SENTINEL replicas "$M" 2>/dev/null | tr '\n' ' ' | grep -q "127.0.0.1:$PP .*flags slave "; }
    wait_for 15 sready || true
    poll_primary "$dir/c.sentinel" scli "$S_FIRST" SENTINEL get-master-addr-by-name "$M"
    P_SENTINEL=$POLLER
    poll_primary "$dir/c.primary" "$REDIS_CLI" -p "$RP" ROLE
    rounds "$dir/c.log" 2
    fault=$(now_ms)
    r=$(scli "$S_FIRST" SENTINEL FAILOVER "$M" 2>&1)
    check "$r" OK "c: SENTINEL FAILOVER accepted"
    # The hosts' connections go to 127.0.0.1:$RP; from its demotion on it answers writes
    # with -READONLY: the loop goes on until then (at most 20 s), then 4 s more.
    demoted() { grep -q '^[0-9]* slave ' "$dir/c.primary"; }
    while ! demoted && [ $(( $(now_ms) - fault )) -lt 20000 ]; do one_round "$dir/c.log"; done
    prom=$(awk '$2 == "slave" { print $1; exit }' "$dir/c.primary")
    [ -n "$prom" ] && while [ $(( $(now_ms) - prom )) -lt 4000 ]; do one_round "$dir/c.log"; done
    stop_poller; kill "$P_SENTINEL" 2>/dev/null; wait "$P_SENTINEL" 2>/dev/null
    role=$("$REDIS_CLI" -p "$RP" ROLE 2>/dev/null | head -n 1)
    check "$role" slave "c: the demoted primary (127.0.0.1:$RP) is alive, a replica"
    echo "# c: (below, the promotion is the demotion of 127.0.0.1:$RP, as its ROLE says)"
    judge c "$dir/c.log" "$fault" "$prom" "$BOUND"
    # Until Sentinel demotes it (and disconnects its clients), the old primary takes the
    # hosts' writes, which its resynchronisation from the new primary then drops.
    switched=$(awk -v p="$PP" '$3 == p { print $1; exit }' "$dir/c.sentinel")
    if [ -n "$switched" ] && [ -n "$prom" ]; then
        set -- $(reoffer "$fault" "$prom")
        echo "# c: the Sentinels named the new primary $((switched - fault)) ms after SENTINEL FAILOVER, the old one was demoted $((prom - switched)) ms later; of the $2 sessions made from SENTINEL FAILOVER to the demotion, $1 resume now"
        # Each host's writer asks a Sentinel about once a second and closes its connections
        # to the old primary when the answer changes: the sessions made from 3 s after the
        # Sentinels switched on went to the new primary, and resume.
        set -- $(reoffer $((switched + 3000)) "$prom")
        if [ "$2" -ge 3 ] && [ "$1" -eq "$2" ]; then
            ok "c: all $2 sessions made from 3 s after the switch to the demotion of the old primary resume (the writers left it)"
        else
            fail "c: of the $2 sessions made from 3 s after the switch to the demotion of the old primary, $1 resume"
        fi
    else
        fail "c: the switch to the new primary was not seen"
    fi
    stop_two
else
    fail "a: the hosts did not start"; show "$dir/s1/server.err" "$dir/s2/server.err"; stop_two
fi
for _p in $PIDS; do kill -9 "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; done
PIDS=

# ---- d. a Redis Cluster of 3 primaries and 3 replicas ------------------------------------
echo "# d. redis+cluster://, 3 primaries and 3 replicas made by the test; kill -9 a primary mid-loop"
nodes=; seeds=; CPORTS=
for n in 1 2 3 4 5 6; do
    cp_=$(free_cluster_port)
    redis_node "node$n" "$cp_" --cluster-enabled yes --cluster-config-file "$dir/node$n/nodes.conf" \
        --cluster-node-timeout 1000 || fail "d: cluster node $n did not start"
    eval "PORT_PID_$cp_=\$PID_node$n"
    nodes="$nodes 127.0.0.1:$cp_"
    seeds="${seeds:+$seeds,}127.0.0.1:$cp_"
    CPORTS="$CPORTS $cp_"
done
C_FIRST=${CPORTS# }; C_FIRST=${C_FIRST%% *}
cluster_ok() {
    for _cp in $CPORTS; do
        "$REDIS_CLI" -p "$_cp" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok' || return 1
    done
}
# Every replica in sync with its primary.
synced() {
    [ "$(for _cp in $CPORTS; do "$REDIS_CLI" -p "$_cp" INFO replication 2>/dev/null | tr -d '\r' | grep -c 'master_link_status:up'; done | awk '{s += $1} END {print s + 0}')" -eq 3 ]
}
if "$REDIS_CLI" --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$dir/cluster.log" 2>&1 &&
    wait_for 20 cluster_ok && wait_for 20 synced; then
    ok "d: the cluster is up, its 3 replicas in sync"
    # The primary to kill, and its replica.
    "$REDIS_CLI" -p "$C_FIRST" CLUSTER NODES >"$dir/nodes.txt"
    victim_id=$(awk '$3 ~ /master/ { print $1; exit }' "$dir/nodes.txt")
    victim=$(awk -v id="$victim_id" '$1 == id { split($2, a, "[:@]"); print a[2] }' "$dir/nodes.txt")
    heir=$(awk -v id="$victim_id" '$4 == id { split($2, a, "[:@]"); print a[2] }' "$dir/nodes.txt")
    victim_pid=$(eval "echo \${PORT_PID_${victim:-none}:-}")
    echo "# d: the primary 127.0.0.1:$victim (pid ${victim_pid:-?}) will be killed; its replica is 127.0.0.1:${heir:-?}"
    url="redis+cluster://$seeds?key_file=$dir/k&prefix=g$$:&timeout_ms=$T"
    if [ -n "$victim_pid" ] && [ -n "$heir" ] && sserver_two "$dir" "$dir/cert" 100000 100000 SESSCACHE_URL="$url" SESSCACHE_LOG=info; then
        poll_primary "$dir/d.primary" "$REDIS_CLI" -p "$heir" ROLE
        rounds "$dir/d.log" 4
        fault=$(now_ms)
        kill -9 "$victim_pid"; wait "$victim_pid" 2>/dev/null
        promoted() { grep -q '^[0-9]* master ' "$dir/d.primary"; }
        while ! promoted && [ $(( $(now_ms) - fault )) -lt 15000 ]; do one_round "$dir/d.log"; done
        prom=$(awk '$2 == "master" { print $1; exit }' "$dir/d.primary")
        [ -n "$prom" ] && while [ $(( $(now_ms) - prom )) -lt 4000 ]; do one_round "$dir/d.log"; done
        stop_poller
        judge d "$dir/d.log" "$fault" "$prom" "$BOUND"
        # The sessions whose keys are in the killed primary's slots (about a third): the
        # first of them to resume after the promotion; then rounds until 3 more of them,
        # which must all resume. (A key is the prefix and the lowercase hex of the ID.)
        ranges=$(awk -v id="$victim_id" '$1 == id { for (i = 9; i <= NF; i++) print $i }' "$dir/nodes.txt")
        # in_victim ST: whether round ST's session is in those slots.
        in_victim() {
            _sid=$(openssl sess_id -in "$dir/sess/$1.pem" -noout -text 2>/dev/null | sed -n 's/^ *Session-ID: *//p' | tr 'A-F' 'a-f')
            [ -n "$_sid" ] || return 1
            _slot=$("$REDIS_CLI" -p "$heir" CLUSTER KEYSLOT "g$$:$_sid" 2>/dev/null)
            for _r in $ranges; do
                [ "$_slot" -ge "${_r%-*}" ] && [ "$_slot" -le "${_r#*-}" ] && return 0
            done
            return 1
        }
        while read -r st _; do in_victim "$st" && grep "^$st " "$dir/d.log"; done <"$dir/d.log" >"$dir/d.vlog"
        : >"$dir/d.more"
        _end=$(( $(now_ms) + 15000 ))
        while [ "$(wc -l <"$dir/d.more")" -lt 3 ] && [ "$(now_ms)" -lt "$_end" ]; do
            one_round "$dir/d.log"
            st=$(tail -n 1 "$dir/d.log" | cut -d' ' -f1)
            in_victim "$st" && tail -n 1 "$dir/d.log" >>"$dir/d.more"
        done
        vfirst=$(cat "$dir/d.vlog" "$dir/d.more" | awk -v p="$prom" '$1 >= p && $5 == "Reused" { print $1; exit }')
        vn=$(cat "$dir/d.vlog" "$dir/d.more" | wc -l)
        vbefore=$(awk -v f="$fault" '$1 < f - 500' "$dir/d.vlog" | wc -l)
        if [ -n "$vfirst" ] && [ $((vfirst - prom)) -le 10000 ]; then
            ok "d: sessions in the killed primary's slots ($vn of the loop's, $vbefore before the kill) resume across hosts again $((vfirst - prom)) ms after the promotion"
        else
            fail "d: sessions in the killed primary's slots ($vn, $vbefore before the kill): none resumed within 10 s of the promotion (first: ${vfirst:-none})"
        fi
        vmore=$(wc -l <"$dir/d.more")
        vmore_ok=$(awk '$5 == "Reused"' "$dir/d.more" | wc -l)
        if [ "$vmore" -eq 3 ] && [ "$vmore_ok" -eq 3 ]; then
            ok "d: then 3 more sessions in the killed primary's slots all resumed across hosts"
        else
            fail "d: then $vmore_ok of $vmore more sessions in the killed primary's slots resumed across hosts (want 3 of 3)"
        fi
        set -- $(reoffer $((fault - 3000)) "$fault")
        echo "# d: of the $2 sessions made in the 3 s before the kill, $1 resume after the failover"
        if [ "$2" -ge 3 ] && [ $(($2 - $1)) -le 2 ]; then
            ok "d: the failover lost $(($2 - $1)) of the $2 sessions stored in the 3 s before the kill (at most 2)"
        else
            fail "d: the failover lost $(($2 - $1)) of the $2 sessions stored in the 3 s before the kill"
        fi
        stop_two
    else
        fail "d: the hosts did not start (or the primary to kill was not found)"; cat "$dir/nodes.txt" | note; stop_two
    fi
else
    fail "d: redis-cli --cluster create failed, or the cluster did not settle"; show "$dir/cluster.log"
fi

finish
