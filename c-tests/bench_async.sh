#!/bin/sh
# The example event-loop server (examples/async_server.c: one thread, epoll) under N
# concurrent resuming clients (build/bench_client): asynchronous redis:// lookups
# (sesscache_attach_async) against blocking ones (sesscache_attach), with shm: (never waits)
# as the reference measured in the same round. Part of `make bench` (c-tests/bench.sh).
#
#   sh c-tests/bench_async.sh [--quick]
#
# Each round runs, for every client count and protocol, shm, redis-async and redis-blocking
# for S seconds each, one after the other. The figure is resumed handshakes per second (the
# connections that resumed over the time taken) and its ratio to shm's in the same round.
# Prints one line per cell (medians over the rounds; ratios: median, min, max):
#   evloop PROTO CLIENTS CONFIG RESUMED_PER_S RESUMED_FRACTION RATIO_MED RATIO_MIN RATIO_MAX ROUNDS CPU_US
# CPU_US: the server process's CPU time (user + system, its library threads included, from
# /proc/PID/stat) per connection completed. The bench_client lines are printed as comments. Environment: BENCH_REDIS_URL, the redis:// cache
# (bench.sh's: sealed values, the default timeout_ms); unset, this script starts a
# redis-server on loopback. BENCH_ASYNC_ROUNDS (3; --quick: 1), BENCH_ASYNC_SECONDS (3;
# --quick: 0.3), BENCH_ASYNC_CLIENTS ("1 16 64"). Exit status 1 when a server does not start
# or a run fails (more than 1% of its connections failed, or none completed).
set -u
. c-tests/ports.sh
SERVER=${BENCH_ASYNC_SERVER:-build/async_server}
CLIENT=${BENCH_CLIENT:-build/bench_client}
if [ "${1:-}" = --quick ]; then rounds=1; secs=0.3; else rounds=3; secs=3; fi
rounds=${BENCH_ASYNC_ROUNDS:-$rounds}
secs=${BENCH_ASYNC_SECONDS:-$secs}
clients=${BENCH_ASYNC_CLIENTS:-1 16 64}
for p in "$SERVER" "$CLIENT"; do
    [ -x "$p" ] || { echo "bench_async: $p is missing (make $p)" >&2; exit 1; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-async.XXXXXX") || exit 1
pids=; rpid=
cleanup() {
    for _p in $pids $rpid; do kill "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; done
    rm -f "/dev/shm/sesscache-bench-async-$$"
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

url=${BENCH_REDIS_URL:-}
if [ -z "$url" ]; then
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
    rpid=$!
    wait_redis "$rport" 5 || { echo "bench_async: redis-server did not start" >&2; exit 1; }
    url="redis://127.0.0.1:$rport?insecure_plaintext=1&prefix=bench-async:"
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -days 2 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || exit 1

# start CONFIG ARGS…: a server on a free port, its port in $dir/CONFIG.port.
listening() { grep -q '^listening on' "$1" || ! kill -0 "$2" 2>/dev/null; }
start() {
    _cfg=$1; shift
    for _try in 1 2 3; do
        _port=$(free_port)
        "$SERVER" -p "$_port" -c "$dir/cert.pem" -k "$dir/key.pem" "$@" >"$dir/$_cfg.out" 2>"$dir/$_cfg.err" &
        _pid=$!
        if wait_for 10 listening "$dir/$_cfg.out" $_pid && grep -q '^listening on' "$dir/$_cfg.out"; then
            pids="$pids $_pid"; echo "$_port" >"$dir/$_cfg.port"; echo "$_pid" >"$dir/$_cfg.pid"; return 0
        fi
        kill $_pid 2>/dev/null; wait $_pid 2>/dev/null
    done
    echo "bench_async: the $_cfg server did not start:" >&2; cat "$dir/$_cfg.err" >&2
    exit 1
}
start shm -u "shm:bench-async-$$" -m async
start redis-async -u "$url" -m async
start redis-blocking -u "$url" -m blocking
echo "# the example server (one thread) on shm:, and on $(echo "$url" | sed 's/key_file=[^&]*/key_file=…/') async and blocking"

failed=0
: >"$dir/raw"
hz=$(getconf CLK_TCK)
# cpu CONFIG: the server's CPU time so far, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$(cat "$dir/$1.pid")/stat"; }
r=0
while [ $r -lt "$rounds" ]; do
    r=$((r + 1))
    for n in $clients; do
        for proto in tls12 tls13; do
            for cfg in shm redis-async redis-blocking; do
                if [ $proto = tls12 ]; then flag=--tls1_2; else flag=--tls1_3; fi
                c0=$(cpu $cfg)
                out=$("$CLIENT" --port "$(cat "$dir/$cfg.port")" --clients "$n" --seconds "$secs" $flag \
                      2>"$dir/client.err") || { failed=1; cat "$dir/client.err" >&2; }
                ticks=$(($(cpu $cfg) - c0))
                echo "# round $r $cfg: $out server_cpu_ticks $ticks"
                # raw PROTO CLIENTS CONFIG ROUND RESUMED_PER_S RESUMED_FRACTION CPU_US
                echo "$out" | awk -v p=$proto -v n="$n" -v c=$cfg -v r=$r -v t="$ticks" -v hz="$hz" '
                    { for (i = 1; i < NF; i++) v[$i] = $(i + 1) }
                    END { if (v["seconds"] > 0 && v["ok"] > 0)
                              printf "%s %s %s %s %.1f %s %.1f\n", p, n, c, r, v["resumed"] / v["seconds"],
                                     v["resumed_fraction"], t * 1e6 / hz / v["ok"] }' >>"$dir/raw"
            done
        done
    done
done

# The ratios to shm of the same round, then the medians.
awk -v rounds="$rounds" '
    function median(a, k,   i, j, t) {
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    { rate[$1, $2, $3, $4] = $5; frac[$1, $2, $3, $4] = $6; cpu[$1, $2, $3, $4] = $7; if (!(($1, $2, $3) in seen)) { seen[$1, $2, $3] = 1; order[++m] = $1 " " $2 " " $3 } }
    END {
        for (i = 1; i <= m; i++) {
            split(order[i], k, " ")
            n = 0; lo = 1e9; hi = 0
            for (r = 1; r <= rounds; r++) {
                if (!((k[1], k[2], k[3], r) in rate) || rate[k[1], k[2], "shm", r] <= 0) continue
                n++
                rr[n] = rate[k[1], k[2], k[3], r]; ff[n] = frac[k[1], k[2], k[3], r]; cc[n] = cpu[k[1], k[2], k[3], r]
                x[n] = rate[k[1], k[2], k[3], r] / rate[k[1], k[2], "shm", r]
                if (x[n] < lo) lo = x[n]; if (x[n] > hi) hi = x[n]
            }
            if (n > 0)
                printf "evloop %s %s %s %.1f %.4f %.3f %.3f %.3f %d %.1f\n", k[1], k[2], k[3], median(rr, n), median(ff, n),
                       median(x, n), lo, hi, n, median(cc, n)
        }
    }' "$dir/raw"
# The servers' own counts (connections, resumed, suspended, failed) as they exit.
for _p in $pids; do kill -TERM "$_p"; wait "$_p"; done
pids=
for cfg in shm redis-async redis-blocking; do echo "# $cfg: $(tail -n 1 "$dir/$cfg.err")"; done
exit $failed
