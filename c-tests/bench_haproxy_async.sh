#!/bin/sh
# HAProxy 2.6 and redis:// lookups in OpenSSL async jobs (issue 23), measured: one HAProxy
# process (`nbthread 1`, `tune.ssl.cachesize 0`, `no-tls-tickets`) per configuration, all
# preloaded with libsesscache, on 127.0.0.1:
#   redis        SESSCACHE_URL=redis://…?insecure_plaintext=1&timeout_ms=3000&force=1, without
#                `ssl-mode-async` (each lookup a round trip inside HAProxy's event loop): the
#                baseline of the ratios;
#   redis+async  the same with global `ssl-mode-async` (the lookup waits in an async job);
#   shm          SESSCACHE_URL=shm:NAME?force=1, without `ssl-mode-async` (no network);
#   shm+async    the same with `ssl-mode-async`: the cost of async jobs alone.
# The load: build/bench_client, N resuming TLS 1.2 clients (BENCH_CLIENTS_LIST, default
# "1 16 64") for S seconds (BENCH_SECONDS, default 3), R rounds (BENCH_ROUNDS, default 3), the
# configurations' order rotating from round to round; every resumption is a lookup in the
# store (a redis:// one asks Redis: checked against Redis's command count).
# Per round and configuration a note (conns/s, resumed fraction, HAProxy's CPU per
# connection); then per client count and configuration one summary line,
#   haproxy_async tls12 <config> <clients> <median_conns_per_s> <resumed_fraction> <ratio_median> <ratio_min> <ratio_max> <median_cpu_us_per_conn>
# (ratios to `redis` in the same round; the resumed fraction is the lowest round's), on stdout
# and appended to $BENCH_OUT when set.
# QUICK=1: a smoke run (1 round of 1 s, clients "1 16"): fails when a server does not start,
# a client fails or too little resumes (BENCH_MIN_RESUMED, default 0.9).
# Run after `make lib build/bench_client`, from anywhere:
#     sh c-tests/bench_haproxy_async.sh [BENCH_CLIENT]
# Prints ok/FAIL lines; exits non-zero on any failure. Needs haproxy and redis-server.
set -u
ba_client=${1:-}
case $ba_client in ''|/*) ;; *) ba_client=$(pwd)/$ba_client ;; esac
ba_out_file=${BENCH_OUT:-}
case $ba_out_file in ''|/*) ;; *) ba_out_file=$(pwd)/$ba_out_file ;; esac
cd "$(dirname "$0")/.." || exit 1
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS SESSCACHE_STATS_INTERVAL
. c-tests/sserver.sh            # SSERVER_LIB, sserver_cert
. c-tests/servers/common.sh     # ports.sh, wait_tls
. c-tests/servers/haproxy.sh    # haproxy_start

[ -n "$ba_client" ] || ba_client=$(pwd)/build/bench_client
if [ "${QUICK:-0}" = 1 ]; then
    ba_rounds=1; ba_secs=1; ba_clients="1 16"
else
    ba_rounds=${BENCH_ROUNDS:-3}; ba_secs=${BENCH_SECONDS:-3}; ba_clients=${BENCH_CLIENTS_LIST:-1 16 64}
fi
ba_min_resumed=${BENCH_MIN_RESUMED:-0.9}
ba_cfgs="redis redis+async shm shm+async"
ba_seg=bench-haproxy$$
ba_failed=0
ok() { echo "ok - $1"; }
fail() { ba_failed=$((ba_failed + 1)); echo "FAIL - $1"; }
note() { echo "# $1"; }

ba_root=$(mktemp -d "${TMPDIR:-/tmp}/sesscache-bench-haproxy.XXXXXX") || { fail "mktemp"; exit 1; }
ba_pids=; ba_rpid=
cleanup() {
    trap - EXIT INT TERM HUP
    for p in $ba_pids $ba_rpid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -f /dev/shm/sesscache-"$ba_seg"*
    rm -rf "$ba_root"
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 1' INT TERM HUP

# (A config's variables are named after it: redis+async -> redis_async.)
var() { echo "$1" | tr '+' '_'; }
kv() { echo "$1" | awk -v k="$2" '{ for (i = 1; i < NF; i += 2) if ($i == k) print $(i + 1) }'; }
div() { awk -v n="$1" -v d="$2" -v f="$3" 'BEGIN { printf f "\n", (d > 0 ? n / d : 0) }'; }
# median, min and max of the numbers on standard input, with printf format FMT
stats3() {
    sort -g | awk -v f="$1" '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan nan nan"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf f " " f " " f "\n", m, v[1], v[NR] }'
}
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
redis_cmds() { redis-cli -p "$ba_rport" INFO stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p'; }
ba_hz=$(getconf CLK_TCK)

# ---- preconditions, Redis, the servers --------------------------------------------------------
[ -f "$SSERVER_LIB" ] || { fail "$SSERVER_LIB is missing: run 'make lib' first"; exit 1; }
[ -x "$ba_client" ] || { fail "$ba_client is missing: run 'make build/bench_client' first"; exit 1; }
[ -x "$HAPROXY_BIN" ] || { fail "haproxy is not installed ($HAPROXY_BIN)"; exit 1; }
command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 ||
    { fail "redis-server and redis-cli are needed"; exit 1; }
sserver_cert "$ba_root" || { fail "openssl could not make a certificate"; exit 1; }
ba_rport=$(free_port)
redis-server --port "$ba_rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$ba_root" \
    >"$ba_root/redis.log" 2>&1 &
ba_rpid=$!
wait_redis "$ba_rport" 5 || { fail "redis-server did not start"; exit 1; }

HAPROXY_NBTHREAD=1
HAPROXY_BIND=no-tls-tickets
for c in $ba_cfgs; do
    d=$ba_root/$(var "$c"); mkdir -p "$d"; cp "$ba_root/cert.pem" "$ba_root/key.pem" "$d/"
    case $c in
        redis*) url="redis://127.0.0.1:$ba_rport?insecure_plaintext=1&timeout_ms=3000&force=1" ;;
        shm*) url="shm:$ba_seg-$(var "$c")?force=1" ;;
    esac
    case $c in *+async) HAPROXY_GLOBAL="    ssl-mode-async" ;; *) HAPROXY_GLOBAL= ;; esac
    if ! haproxy_start "$d" 0 LD_PRELOAD="$SSERVER_LIB" SESSCACHE_URL="$url" 2>"$d/start.err"; then
        fail "$c: HAProxy did not start"; sed 's/^/#   /' "$d/start.err"; exit 1
    fi
    ba_pids="$ba_pids $HAPROXY_PID"
    eval "PID_$(var "$c")=\$HAPROXY_PID; PORT_$(var "$c")=\$HAPROXY_PORT"
    HAPROXY_PID=
done
ok "HAProxy 2.6 (nbthread 1) up: $ba_cfgs"
note "$(date -u '+%Y-%m-%d %H:%M UTC'): $ba_rounds rounds of $ba_secs s, clients $ba_clients, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $(openssl version); $("$HAPROXY_BIN" -v | sed -n '1s/ - .*//p'); redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"

# measure CONFIG CLIENTS SECONDS: sets M_RATE M_FRAC M_CPU (µs per connection); false after a
# FAIL line when the client failed, too little resumed, or a redis:// run asked Redis less
# often than it resumed.
measure() {
    v=$(var "$1"); eval "pid=\$PID_$v; port=\$PORT_$v"
    t0=$(ticks "$pid"); r0=$(redis_cmds)
    out=$("$ba_client" --port "$port" --clients "$2" --seconds "$3" --tls1_2 2>"$ba_root/client.err")
    rc=$?
    t1=$(ticks "$pid"); r1=$(redis_cmds)
    M_RATE=$(kv "$out" conns_per_s); M_FRAC=$(kv "$out" resumed_fraction)
    okn=$(kv "$out" ok); res=$(kv "$out" resumed)
    if [ $rc -ne 0 ] || [ -z "$M_RATE" ]; then
        fail "$1, $2 clients: the client failed (exit $rc): $out"; sed 's/^/#   /' "$ba_root/client.err"; return 1
    fi
    if ! awk -v f="$M_FRAC" -v m="$ba_min_resumed" 'BEGIN { exit !(f >= m) }'; then
        fail "$1, $2 clients: only $M_FRAC of the connections resumed: $out"; return 1
    fi
    case $1 in redis*) if [ $((r1 - r0)) -lt "$res" ]; then
        fail "$1, $2 clients: Redis ran $((r1 - r0)) commands for $res resumptions"; return 1
    fi ;; esac
    M_CPU=$(div $(((t1 - t0) * 1000000 / ba_hz)) "$okn" %.0f)
}

for n in $ba_clients; do
    for c in $ba_cfgs; do eval "RATES_$(var "$c")=; RATIOS_$(var "$c")=; CPUS_$(var "$c")=; FRACS_$(var "$c")="; done
    bad=0; order=$ba_cfgs; r=1
    while [ $r -le "$ba_rounds" ] && [ $bad -eq 0 ]; do
        line=
        for c in $order; do
            measure "$c" "$n" "$ba_secs" || { bad=1; break; }
            v=$(var "$c")
            eval "rate_$v=\$M_RATE; RATES_$v=\"\$RATES_$v \$M_RATE\"; CPUS_$v=\"\$CPUS_$v \$M_CPU\"; FRACS_$v=\"\$FRACS_$v \$M_FRAC\""
            line="$line, $c $M_RATE conns/s (resumed $M_FRAC, $M_CPU µs CPU/conn)"
        done
        [ $bad -eq 0 ] || break
        for c in $ba_cfgs; do
            v=$(var "$c"); eval "ratio=\$(div \"\$rate_$v\" \"\$rate_redis\" %.3f); RATIOS_$v=\"\$RATIOS_$v \$ratio\""
        done
        note "$n clients, round $r/$ba_rounds (${order%% *} first)$line"
        # Each configuration goes first in turn.
        order=$(echo "$order" | awk '{ for (i = 2; i <= NF; i++) printf "%s ", $i; print $1 }')
        r=$((r + 1))
    done
    [ $bad -eq 0 ] || continue
    for c in $ba_cfgs; do
        v=$(var "$c")
        eval "set -- \$(echo \$RATES_$v | tr ' ' '\n' | stats3 %.1f)"; med=$1
        eval "set -- \$(echo \$RATIOS_$v | tr ' ' '\n' | stats3 %.3f)"; rmed=$1; rmin=$2; rmax=$3
        eval "set -- \$(echo \$CPUS_$v | tr ' ' '\n' | stats3 %.0f)"; cpu=$1
        eval "set -- \$(echo \$FRACS_$v | tr ' ' '\n' | stats3 %.4f)"; frac=$2
        out="haproxy_async tls12 $c $n $med $frac $rmed $rmin $rmax $cpu"
        echo "$out"
        [ -z "$ba_out_file" ] || echo "$out" >>"$ba_out_file" || fail "cannot append to BENCH_OUT=$ba_out_file"
    done
done

for c in $ba_cfgs; do
    v=$(var "$c"); eval "pid=\$PID_$v"
    if kill -0 "$pid" 2>/dev/null; then continue; fi
    fail "$c: HAProxy exited during the benchmark"; sed 's/^/#   /' "$ba_root/$v/stderr" | tail -n 10
done
[ $ba_failed -eq 0 ] && ok "haproxy async benchmark: every measurement completed"
exit $((ba_failed > 0))
