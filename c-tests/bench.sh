#!/bin/sh
# `make bench`: every benchmark of the project, one after the other (never two at once: the
# machine is small and each figure is a ratio to a baseline measured in the same run), then
# docs/bench.md and docs/bench.png (c-tests/bench_report.py).
#
#   sh c-tests/bench.sh BENCH_PROGRAM [--quick]
#
#   1. bench_resume (c-tests/bench_resume.c) in six modes: 1, 2 and 4 threads; 2 and 4
#      processes on one shm: segment; 1 thread with client certificates; with a
#      redis-server this script starts on loopback for the redis:// configurations;
#   1b. bench_resume --tickets: stateless tickets under shared keys (tickets=shared) against
#      OpenSSL's own ticket keys: 1 thread (memory:, shm:, redis://), 2 and 4 processes
#      (shm:, redis://: each process its own cache and connections, i.e. "hosts"), each
#      offering only the tickets the others issued;
#   1c. the example event-loop server (examples/async_server.c, one thread) under 1, 16 and
#      64 resuming clients: asynchronous redis:// lookups against blocking ones, as ratios to
#      shm: in the same round (c-tests/bench_async.sh);
#   2. instructions per lookup and per store, counted by callgrind (memory:, shm:), which do
#      not vary with machine noise; instructions per ticket encryption and decryption, ours
#      (shm:) against OpenSSL's own, and the new tickets a resumed handshake sends with
#      each (c-tests/callgrind_tickets.py);
#   3. real servers (c-tests/bench_servers.sh: nginx and Apache httpd, the library preloaded
#      against their own caches), when that script is present;
#   4. the cache core alone (criterion: `make bench-core`), when that target exists;
#   5. the report.
# --quick (make bench QUICK=1, and `make check`): every part as a smoke run (the core's
# criterion benchmarks are skipped: compiling them is most of their cost), the report written
# under the output directory instead of docs/.
# Environment: BENCH_DIR (default build/bench): logs and results.txt, the figures of every
# part, one line each.
# Needs redis-server, redis-cli, valgrind, gnuplot and python3 (Debian: redis-server,
# redis-tools, valgrind, gnuplot-nox, python3); without them, says so and exits 1.
set -u
prog=$1; shift
quick=0
[ "${1:-}" = --quick ] && quick=1
out=${BENCH_DIR:-build/bench}
for tool in redis-server redis-cli valgrind callgrind_annotate gnuplot python3; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "bench: $tool is needed (apt-get install redis-server redis-tools valgrind gnuplot-nox python3)" >&2
        exit 1
    fi
done
mkdir -p "$out" || exit 1
: >"$out/results.txt"
dir=$(mktemp -d "${TMPDIR:-/tmp}/sesscache-bench.XXXXXX") || exit 1
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
. c-tests/ports.sh
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
pid=$!
if ! wait_redis "$port" 5; then echo "bench: redis-server did not start:" >&2; cat "$dir/redis.log" >&2; exit 1; fi
(umask 077; openssl rand -hex 32 >"$dir/keys")
redis_version=$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')
echo "# redis-server $redis_version on 127.0.0.1:$port (loopback), values sealed"
export BENCH_REDIS_URL="redis://127.0.0.1:$port?key_file=$dir/keys&prefix=bench:"
# bench_resume reads the server's CPU time (/proc/PID/schedstat) around each measurement.
export BENCH_REDIS_PID=$pid
start=$(date +%s)
failed=0
step() { echo; echo "== [$(($(date +%s) - start)) s] $*"; }

# 1. bench_resume, six modes.
n=0
for mode in "--threads 1" "--threads 2" "--threads 4" "--processes 2" "--processes 4" "--client-cert"; do
    n=$((n + 1))
    step "bench_resume $mode ($n/6)"
    log=$out/resume-$n.log
    if [ $quick = 1 ]; then set -- --quick; else set --; fi
    # shellcheck disable=SC2086
    if "$prog" $mode "$@" >"$log" 2>&1; then
        grep -v '^result \|^counts ' "$log"
        grep '^result \|^counts \|^cpu ' "$log" >>"$out/results.txt"
    else
        cat "$log"; echo "bench: bench_resume $mode failed" >&2; failed=1
    fi
done

# 1b. Stateless tickets: shared keys against OpenSSL's own.
n=0
for mode in "--threads 1" "--processes 2" "--processes 4"; do
    n=$((n + 1))
    step "bench_resume --tickets $mode ($n/3)"
    log=$out/tickets-$n.log
    if [ $quick = 1 ]; then set -- --quick; else set --; fi
    # shellcheck disable=SC2086
    if "$prog" --tickets $mode "$@" >"$log" 2>&1; then
        grep -v '^result \|^counts \|^cpu ' "$log"
        grep '^result ' "$log" >>"$out/results.txt"
    else
        cat "$log"; echo "bench: bench_resume --tickets $mode failed" >&2; failed=1
    fi
done

# 1c. The example event-loop server: asynchronous redis:// lookups against blocking ones.
step "the example event-loop server: redis:// async and blocking, shm: (c-tests/bench_async.sh)"
if [ $quick = 1 ]; then set -- --quick; else set --; fi
if sh c-tests/bench_async.sh "$@" >"$out/async.log" 2>&1; then
    grep -v '^# round ' "$out/async.log"
    grep '^evloop ' "$out/async.log" >>"$out/results.txt"
else
    cat "$out/async.log"; echo "bench: bench_async.sh failed" >&2; failed=1
fi

# 2. Instructions per call, counted by callgrind: one short run per configuration.
step "instructions per lookup and per store (valgrind --tool=callgrind)"
first_cg=1
for cfg in memory shm; do
    cg=$dir/callgrind.$cfg
    log=$out/callgrind-$cfg.log
    if [ $quick = 1 ]; then secs=0.05; else secs=1; fi
    if BENCH_ONLY=$cfg valgrind --tool=callgrind --callgrind-out-file="$cg" \
           "$prog" --rounds 1 --seconds $secs >"$log" 2>&1; then
        # bench_resume splits the profile (each timed loop in a file of its own): the sum
        # over the files.
        for f in "$cg" "$cg".[0-9]*; do
            callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null
        done >"$cg.txt"
        ir() {
            grep "sesscache::cache::Cache::$1 \[" "$cg.txt" |
                awk '{gsub(",", "", $1); s += $1} END {if (s > 0) print s}'
        }
        counts=$(grep "^counts t1 $cfg " "$log")
        lookups=$(echo "$counts" | cut -d' ' -f4); stores=$(echo "$counts" | cut -d' ' -f5)
        # The get callback calls lookup_unless (the lookup with the server-name check);
        # lookup itself is that with no check. Since asynchronous lookups (issue 23) it
        # calls resolve_with (the store's answer) and deliver (the check), one after the
        # other: their sum.
        l_ir=$(ir lookup_unless); [ -n "$l_ir" ] || l_ir=$(ir lookup)
        if [ -z "$l_ir" ] && r_ir=$(ir resolve_with) && [ -n "$r_ir" ]; then
            d_ir=$(ir deliver); l_ir=$((r_ir + ${d_ir:-0}))
        fi
        s_ir=$(ir store_session)
        if [ -n "$l_ir" ] && [ -n "$s_ir" ] && [ "${lookups:-0}" -gt 0 ] && [ "${stores:-0}" -gt 0 ]; then
            line="instr $cfg $((l_ir / lookups)) $((s_ir / stores)) $lookups $stores"
            echo "$line"; echo "$line" >>"$out/results.txt"
            # Whole handshakes, client and server: bench_resume dumps the instructions of
            # each timed loop (one thread) to a file of its own, named in its description.
            # hsinstr PROTO KIND CONFIG IR_PER_HANDSHAKE HANDSHAKES (the baseline from the
            # first run only).
            for f in "$cg".[0-9]*; do
                awk -v only="$cfg" -v first="$first_cg" '
                    /^desc: Trigger: Client Request: handshakes / { p = $6; c = $7; k = $8; n = $9 }
                    /^summary: / { ir = $2 }
                    END {
                        if (n > 0 && (c == only || (c == "baseline" && first)))
                            printf "hsinstr %s %s %s %d %d\n", (p == "TLS1.3" ? "tls13" : "tls12"), k, c, ir / n, n
                    }' "$f"
            done | sort | tee -a "$out/results.txt"
            first_cg=0
        else
            echo "bench: callgrind $cfg: no Cache::lookup_unless/store_session figures (lookups=$lookups stores=$stores)" >&2
            failed=1
        fi
    else
        cat "$log"; echo "bench: callgrind $cfg failed" >&2; failed=1
    fi
done

# 2b. Instructions per ticket encryption and decryption (shm: with tickets=shared against
# OpenSSL's own keys): the timed loops of one run, 3 rounds (TLS 1.3 tickets come in two
# lengths, by the session's encoding: more rounds average them).
step "instructions per ticket encryption and decryption (valgrind --tool=callgrind)"
cg=$dir/callgrind.tickets
log=$out/callgrind-tickets.log
if [ $quick = 1 ]; then secs=0.05; rounds=1; else secs=0.5; rounds=3; fi
if BENCH_ONLY=shm valgrind --tool=callgrind --callgrind-out-file="$cg" \
       "$prog" --tickets --rounds $rounds --seconds $secs >"$log" 2>&1 &&
   python3 c-tests/callgrind_tickets.py "$cg" "$cg".[0-9]* >"$cg.txt"; then
    tee -a "$out/results.txt" <"$cg.txt"
else
    cat "$log"; echo "bench: callgrind --tickets failed" >&2; failed=1
fi

# 3. Real servers.
if [ -f c-tests/bench_servers.sh ]; then
    step "real servers (c-tests/bench_servers.sh)"
    if [ $quick = 1 ]; then q=1; else q=; fi
    if ! QUICK=$q BENCH_OUT="$out/results.txt" sh c-tests/bench_servers.sh; then
        echo "bench: bench_servers.sh failed" >&2; failed=1
    fi
fi

# 3b. HAProxy's ssl-mode-async: redis:// lookups in OpenSSL async jobs (issue 23).
step "HAProxy ssl-mode-async: redis:// and shm:, with and without (c-tests/bench_haproxy_async.sh)"
if [ $quick = 1 ]; then q=1; else q=; fi
if ! QUICK=$q BENCH_OUT="$out/results.txt" sh c-tests/bench_haproxy_async.sh; then
    echo "bench: bench_haproxy_async.sh failed" >&2; failed=1
fi

# 4. The cache core alone.
if [ $quick = 0 ] && grep -q '^bench-core:' Makefile; then
    step "the cache core alone (make bench-core, criterion)"
    if make --no-print-directory bench-core && [ -f build/bench-core.txt ]; then
        cat build/bench-core.txt >>"$out/results.txt"
    else
        echo "bench: make bench-core failed" >&2; failed=1
    fi
fi

# 5. The report.
step "report"
{
    echo "machine cpu $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
    echo "machine cores $(nproc)"
    echo "machine memory $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "machine kernel $(uname -r)"
    echo "machine openssl $(openssl version | cut -d' ' -f1-2)"
    echo "machine redis $redis_version"
    echo "machine sesscache $(sed -n '1s/^sesscache \([^,]*\),.*/\1/p' "$out/resume-1.log")"
    echo "machine date $(date -u +%Y-%m-%d)"
    echo "machine seconds $(($(date +%s) - start))"
} >>"$out/results.txt"
if [ $quick = 1 ]; then report_dir=$out; else report_dir=docs; fi
if python3 c-tests/bench_report.py "$out/results.txt" "$report_dir"; then
    echo "bench: wrote $report_dir/bench.md and $report_dir/bench.png (in $(($(date +%s) - start)) s)"
else
    echo "bench: the report failed" >&2; failed=1
fi
exit $failed
