#!/bin/sh
# `make soak`: the soak test (c-tests/soak.c), three runs one after the other:
#   1. shm:     4 processes x 2 threads, TLS 1.2 and 1.3 mixed, a 4 MiB segment, ttl=2;
#   2. redis:// 2 processes x 2 threads against a redis-server started here on loopback
#               (maxmemory: 2 MiB above an empty one's used_memory, allkeys-lru; values sealed with a key file made by
#               `openssl rand -hex 32`, mode 0600), ttl=2;
#   3. memory:  1 process x 4 threads with client certificates, max_bytes=2M, ttl=2.
# Each run alternates storms of full handshakes (the cache overflows: evictions) with calm
# phases longer than ttl (entries expire), checks every resumption against the session
# issued (no wrong session, ever), fails on any failed handshake, and bounds memory: each
# process's RSS growth after a warm-up (8 MiB, against the MiB of sessions it stored, which
# must be at least twice that), the cache's bytes within its segment or max_bytes, and, for
# Redis, used_memory_peak within maxmemory + 1 MiB with evicted_keys and expired_keys grown
# (sesscache's redis counters are per process; Redis does the expiring and evicting).
#
#   sh c-tests/soak.sh [SOAK_PROGRAM]      (default build/soak; `make soak` builds it)
# Environment: SOAK_SECONDS (default 60): the length of each run; SOAK_ONLY=shm|redis|memory:
# that run only; SOAK_DIR (default build/soak-logs): the logs.
# Needs redis-server and redis-cli (Debian: redis-server, redis-tools): without them the
# redis run FAILS (it is not skipped). Last line: "soak: N passed, M failed".
set -u
SUITE=soak
. c-tests/checks.sh
. c-tests/ports.sh
prog=${1:-build/soak}
secs=${SOAK_SECONDS:-60}
only=${SOAK_ONLY:-}
logs=${SOAK_DIR:-build/soak-logs}
mkdir -p "$logs" || exit 1
work=$(mktemp -d "${TMPDIR:-/tmp}/sesscache-soak.XXXXXX") || exit 1
shm_name=soak-$$
redis_pid=
soak_cleanup() {
    if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null; fi
    rm -f "/dev/shm/sesscache-$shm_name"
    rm -rf "$work"
}
trap soak_cleanup EXIT
trap 'exit 1' INT TERM HUP

if [ ! -x "$prog" ]; then
    fail "soak program $prog is missing: run make soak"
    finish
fi
echo "# soak: $secs s per run; logs in $logs"
wanted() { [ -z "$only" ] || [ "$only" = "$1" ]; }

# Runs the soak program (after the name of the run, the log's name) and reports: ok when it
# passed, its summary lines as comments either way.
soak_run() {
    run_name=$1; shift
    run_log=$logs/$run_name.log
    run_t0=$(date +%s)
    if "$prog" "$@" >"$run_log" 2>&1; then run_rc=0; else run_rc=$?; fi
    run_took=$(($(date +%s) - run_t0))
    grep '^soak: \(process\|cache\|total\|VIOLATION\)' "$run_log" | note
    grep -v '^soak: ' "$run_log" | sort | uniq -c | sort -rn | head -n 5 | note
    if [ "$run_rc" -eq 0 ] && grep -q '^soak: PASS$' "$run_log"; then
        ok "$run_name: $(grep '^soak: total' "$run_log" | sed 's/^soak: total //') in $run_took s"
    else
        fail "$run_name: exit $run_rc after $run_took s (see $run_log)"
    fi
}

# 1. shm: a prefork server's workers sharing a small segment. --pad 15000 makes each stored
# session ~8 KB so that a minute stores several times the RSS bound in every process.
if wanted shm; then
    echo "== shm: 4 processes x 2 threads, TLS 1.2 + 1.3, size=4M, ttl=2"
    rm -f "/dev/shm/sesscache-$shm_name"
    soak_run shm --url "shm:$shm_name?size=4M&ttl=2" --processes 4 --threads 2 \
        --seconds "$secs" --tls mix --pad 15000 --rss-bound 8
    rm -f "/dev/shm/sesscache-$shm_name"
    if [ -e "/dev/shm/sesscache-$shm_name" ]; then fail "shm: the segment could not be removed"; fi
fi

# 2. redis://: a Redis with little memory; Redis expires (ttl=2) and evicts (allkeys-lru).
if wanted redis; then
    echo "== redis://: 2 processes x 2 threads, TLS 1.2 + 1.3, maxmemory used_memory + 2 MiB, allkeys-lru, ttl=2"
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        echo "soak: redis-server and redis-cli are needed (apt-get install redis-server redis-tools)" >&2
        fail "redis: redis-server or redis-cli is not installed: the redis:// soak did not run"
    else
        redis_port=$(free_port)
        redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$work" --maxmemory-policy allkeys-lru \
            >"$work/redis.log" 2>&1 &
        redis_pid=$!
        if ! wait_redis "$redis_port" 6; then
            show "$work/redis.log"
            fail "redis: redis-server did not start"
        else
            (umask 077; openssl rand -hex 32 >"$work/keys")
            check "$(stat -c %a "$work/keys")" 600 "redis: the key file is private (mode 0600)"
            redis_info() { redis-cli -p "$redis_port" INFO "$1" | tr -d '\r' | sed -n "s/^$2:\([0-9]*\)$/\1/p"; }
            redis_base=$(redis_info memory used_memory)
            # Room for ~130 sessions of ~15 KB above what an empty Redis uses: a storm stores
            # more than that within ttl (evictions), a calm phase much less (expirations).
            redis_maxmem=$((redis_base + 2 * 1024 * 1024))
            redis-cli -p "$redis_port" CONFIG SET maxmemory "$redis_maxmem" >/dev/null
            soak_run redis \
                --url "redis://127.0.0.1:$redis_port?key_file=$work/keys&prefix=soak:&ttl=2&timeout_ms=50" \
                --processes 2 --threads 2 --seconds "$secs" --tls mix --pad 15000 --rss-bound 8
            redis_peak=$(redis_info memory used_memory_peak)
            redis_used=$(redis_info memory used_memory)
            redis_evicted=$(redis_info stats evicted_keys)
            redis_expired=$(redis_info stats expired_keys)
            redis_keys=$(redis-cli -p "$redis_port" DBSIZE | tr -d '\r')
            redis_stored=$(sed -n 's/^soak: process .* = \([0-9.]*\) MiB (avg.*/\1/p' "$logs/redis.log" |
                awk '{s += $1} END {printf "%.1f", s}')
            echo "# redis: used_memory $redis_base at start, $redis_used at the end, peak $redis_peak (maxmemory $redis_maxmem); $redis_keys keys now; evicted_keys $redis_evicted, expired_keys $redis_expired; sessions stored by the processes: $redis_stored MiB"
            # Redis evicts before running a command, so used_memory may pass maxmemory by what
            # one command and the clients' buffers hold: 1 MiB of slack.
            if [ "${redis_peak:-0}" -gt 0 ] && [ "$redis_peak" -le $((redis_maxmem + 1024 * 1024)) ]; then
                ok "redis: used_memory_peak $redis_peak <= maxmemory $redis_maxmem + 1 MiB, while $redis_stored MiB of sessions were stored"
            else
                fail "redis: used_memory_peak '$redis_peak' over maxmemory $redis_maxmem + 1 MiB"
            fi
            if [ "${redis_evicted:-0}" -gt 0 ]; then ok "redis: $redis_evicted keys evicted"; else fail "redis: nothing evicted (evicted_keys '$redis_evicted')"; fi
            if [ "${redis_expired:-0}" -gt 0 ]; then ok "redis: $redis_expired keys expired"; else fail "redis: nothing expired (expired_keys '$redis_expired')"; fi
        fi
        kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
        redis_pid=
    fi
fi

# 3. memory: with client certificates: the sessions carry the client's certificate (~8 KB
# with --cert-pad 8000), what memory: must charge for the decoded sessions it keeps.
if wanted memory; then
    echo "== memory: 1 process x 4 threads, client certificates, TLS 1.2 + 1.3, max_bytes=2M, ttl=2"
    soak_run memory --url "memory:?max_bytes=2M&ttl=2" --processes 1 --threads 4 \
        --seconds "$secs" --tls mix --client-cert --cert-pad 8000 --rss-bound 8
fi

finish
