#!/bin/sh
# Prometheus metrics of the sesscache tool (cli/src/metrics.rs), with a real scrape:
#   (a) `stats --format prometheus` of a shm: segment made by an unmodified `openssl
#       s_server` preloaded with the library (one full handshake, two resumptions) passes
#       `promtool check metrics` (Debian's prometheus package), and a strict reader of the
#       format (c-tests/metrics_check.py) finds every field of struct sesscache_stats with
#       its TYPE, a HELP text of its own and the value `stats --json` gives, and
#       sesscache_up 1;
#   (b) what stats refuses: --json with --format, --watch with prometheus (exit 2),
#       memory: (7); a redis server that does not answer: sesscache_up 0, exit 5;
#   (c) `exporter --listen 127.0.0.1:0` for that segment and a redis cache (a redis-server
#       of this run holding entries and the fleet's counters' hash): GET /metrics is 200
#       with the text format's Content-Type, passes promtool, and holds for each cache what
#       `stats --json` says; HEAD; 404 for other paths, 405 for other methods, 400 for
#       garbage; a silent client and one sending megabytes do not delay a scrape (408 and
#       431 for them), past 16 connections 503; after the redis-server is killed a scrape
#       gives that cache sesscache_up 0 and nothing else of it, the segment's still up 1;
#   (d) SIGTERM and SIGINT stop it with status 0; what it refuses at start: no --listen
#       (2), a missing segment (5, naming it), memory: (7), a URL given twice (2), an
#       address in use (1).
#
# Run from the top of the tree after `make lib cli`:   sh c-tests/metrics.sh [CLI]
# Needs openssl, promtool (prometheus), python3, redis-server and redis-cli: each missing
# one is a failure (scripts/deps.sh installs them). The last line is
# "metrics: N passed, M failed"; the exit status is non-zero when M > 0.
set -u
unset SESSCACHE_URL SESSCACHE_STATS SESSCACHE_LOG

B=build
CLI=${1:-target/cli/release/sesscache}
LIB=target/release/libsesscache.so
SUITE=metrics
. c-tests/checks.sh
. c-tests/ports.sh

mkdir -p $B
if [ ! -x "$CLI" ] || [ ! -f "$LIB" ]; then
    fail "$CLI and $LIB are built (make lib cli)"
    finish
fi
for tool in openssl promtool python3 redis-server redis-cli; do
    if command -v $tool >/dev/null 2>&1; then
        pass "$tool is installed"
    else
        fail "$tool is installed (scripts/deps.sh install)"
    fi
done
[ "$failed" -eq 0 ] || finish

name=metrics-$$-$(date +%s)
seg=/dev/shm/sesscache-$name
dir=$(mktemp -d "${TMPDIR:-/tmp}/metrics.XXXXXX")
SSERVER_PID=
EXP_PID=
REDIS_PID=
cleanup() {
    [ -n "$SSERVER_PID" ] && kill "$SSERVER_PID" 2>/dev/null
    [ -n "$EXP_PID" ] && kill "$EXP_PID" 2>/dev/null
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null
    rm -f "$seg"
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# The fields of struct sesscache_stats, in the header's order.
sed -n '/^typedef struct sesscache_stats {$/,/^}/s/^  uint64_t \([a-z_]*\);$/\1/p' \
    include/sesscache.h >"$dir/fields"
# run LABEL ARGS...: runs the tool; output in $dir/LABEL.out and .err, exit status in $rc.
run() {
    _l=$1; shift
    "$CLI" "$@" >"$dir/$_l.out" 2>"$dir/$_l.err"
    rc=$?
}
expect() {
    if [ "$rc" -eq "$2" ]; then
        pass "$3: exit $2: $(head -n 1 "$dir/$1.err")"
    else
        fail "$3: exit $2 (got $rc)"
        cat "$dir/$1.out" "$dir/$1.err" | note
    fi
}
# promtool_ok FILE WHAT: `promtool check metrics` accepts FILE, with no lint problem.
promtool_ok() {
    if promtool check metrics <"$1" >"$1.promtool" 2>&1 && [ ! -s "$1.promtool" ]; then
        pass "$2: promtool check metrics: no problem"
    else
        fail "$2: promtool check metrics"
        note <"$1.promtool"
    fi
}
# py ARGS...: c-tests/metrics_check.py, its ok/FAIL lines counted here.
py() {
    python3 c-tests/metrics_check.py "$@" >"$dir/py.out" 2>&1; _st=$?
    cat "$dir/py.out"
    passed=$((passed + $(grep -c '^ok - ' "$dir/py.out")))
    failed=$((failed + $(grep -c '^FAIL - ' "$dir/py.out")))
    if ! grep -Eq '^(ok|FAIL) - ' "$dir/py.out"; then
        fail "metrics_check.py $1 ran (exit status $_st)"; note <"$dir/py.out"
    fi
}

echo "== (a) stats --format prometheus of shm:$name, made by openssl s_server"
. c-tests/sserver.sh
have_seg=0
sserver_cert "$dir" || fail "(a) openssl could not make a certificate"
if sserver_start "$dir" 3 SESSCACHE_URL="shm:$name?size=1M"; then
    c1=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$dir/s12.pem")
    c2=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/s12.pem")
    c3=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/s12.pem")
    if sserver_wait "$SSERVER_PID"; then SSERVER_PID=; fi
    check "$c1 / $c2 / $c3" "New TLSv1.2 / Reused TLSv1.2 / Reused TLSv1.2" \
        "(a) s_server: one full handshake, two resumed through shm:$name"
    [ -f "$seg" ] && have_seg=1
else
    fail "(a) openssl s_server starts with the library preloaded"
fi
if [ "$have_seg" != 1 ]; then
    fail "(a) the segment $seg exists"
    finish
fi
run prom stats --format prometheus "shm:$name"
run json stats --format json "shm:$name"
run json_flag stats --json "shm:$name"
if [ "$rc" -eq 0 ] && cmp -s "$dir/json.out" "$dir/json_flag.out"; then
    pass "(a) --json is --format json"
else
    fail "(a) --json is --format json (exit $rc)"
    cat "$dir/json.out" "$dir/json_flag.out" | note
fi
check "$(grep -c '"hits":2,' "$dir/json.out")" 1 "(a) stats --json: the 2 resumptions are 2 hits"
promtool_ok "$dir/prom.out" "(a) stats --format prometheus"
py compare "$dir/prom.out" "$dir/json.out" "shm:$name" "$dir/fields"

echo "== (b) what stats refuses"
run both stats --json --format text "shm:$name"
expect both 2 "(b) --json with --format"
run watch stats --format prometheus --watch 1 "shm:$name"
expect watch 2 "(b) --watch with --format prometheus"
run mem stats --format prometheus 'memory:'
expect mem 7 "(b) stats --format prometheus memory:"
gone='redis://127.0.0.1:1?insecure_plaintext=1&timeout_ms=500'
run gone stats --format prometheus "$gone"
expect gone 5 "(b) stats --format prometheus of a redis server that is not there"
if [ "$rc" -eq 5 ]; then
    promtool_ok "$dir/gone.out" "(b) its output"
    py down "$dir/gone.out" "$gone"
fi

echo "== (c) sesscache exporter: shm:$name and a redis cache"
sock=$dir/redis.sock
redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no --daemonize no \
    >"$dir/redis.log" 2>&1 &
REDIS_PID=$!
wait_for 5 test -S "$sock"
for k in sesscache:aa sesscache:bb sesscache:cc other:keep; do
    redis-cli -s "$sock" SET "$k" xyz >/dev/null
done
# The fleet's counters, as the processes using the cache add them (src/store/redis/tally.rs).
redis-cli -s "$sock" HSET sesscache:stats lookups 8 hits 6 misses 2 stores 5 reported_at 1 >/dev/null
redis="redis+unix://$sock?insecure_plaintext=1"
run rjson stats --json "$redis"
check "$(grep -c '"lookups":8,"hits":6,"misses":2,"stores":5,.*"entries":3,"bytes":9,' "$dir/rjson.out")" 1 \
    "(c) stats --json of the redis cache: the fleet's counters, 3 entries, 9 bytes"

# start_exporter LABEL ARGS...: starts it in the background (EXP_PID), waits for its
# "serving" line, sets PORT.
start_exporter() {
    _l=$1; shift
    EXP_LOG=$dir/$_l.err
    rm -f "$EXP_LOG"
    "$CLI" exporter "$@" >"$dir/$_l.out" 2>"$dir/$_l.err" &
    EXP_PID=$!
    PORT=
    w=0
    while [ $w -lt 100 ]; do
        PORT=$(sed -n 's|^sesscache exporter: serving http://127\.0\.0\.1:\([0-9]*\)/metrics .*|\1|p' "$EXP_LOG" 2>/dev/null)
        [ -n "$PORT" ] && return 0
        kill -0 "$EXP_PID" 2>/dev/null || break
        sleep 0.1; w=$((w + 1))
    done
    fail "the exporter starts ($*)"
    cat "$dir/$_l.err" | note
    return 1
}
# stop_exporter SIGNAL WHAT: sends it, expects exit status 0 within 5 s.
stop_exporter() {
    kill -"$1" "$EXP_PID"
    w=0; while kill -0 "$EXP_PID" 2>/dev/null && [ $w -lt 50 ]; do sleep 0.1; w=$((w + 1)); done
    if kill -0 "$EXP_PID" 2>/dev/null; then
        fail "$2: SIG$1 stops it within 5 s"
        kill -KILL "$EXP_PID"
        wait "$EXP_PID" 2>/dev/null
    else
        wait "$EXP_PID"
        check "$?" 0 "$2: SIG$1 stops it, exit status 0 ($(tail -n 1 "$EXP_LOG"))"
    fi
    EXP_PID=
}

if start_exporter exp --listen 127.0.0.1:0 "shm:$name" "$redis"; then
    pass "(c) exporter --listen 127.0.0.1:0: $(head -n 1 "$dir/exp.err")"
    py http "$PORT" "$dir/scrape.prom"
    promtool_ok "$dir/scrape.prom" "(c) GET /metrics"
    run json stats --json "shm:$name"
    py compare "$dir/scrape.prom" "$dir/json.out" "shm:$name" "$dir/fields"
    run rjson stats --json "$redis"
    py compare "$dir/scrape.prom" "$dir/rjson.out" "$redis" "$dir/fields"
    # (The hash's reported_at is 1, the epoch's second second: an age of about 56 years.)
    if grep -Fqx "sesscache_entries_complete{cache=\"$redis\"} 1" "$dir/scrape.prom" &&
       grep -F "sesscache_report_age_seconds{cache=\"$redis\"} " "$dir/scrape.prom" |
           grep -Eq ' 1[0-9]{9}$' &&
       ! grep -q "^sesscache_entries_complete{cache=\"shm:" "$dir/scrape.prom"; then
        pass "(c) the redis cache has sesscache_entries_complete 1 and sesscache_report_age_seconds; the shm one neither"
    else
        fail "(c) sesscache_entries_complete and sesscache_report_age_seconds for the redis cache only"
        grep -E 'entries_complete|report_age' "$dir/scrape.prom" | note
    fi
    kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null; REDIS_PID=
    py get "$PORT" "$dir/down.prom"
    promtool_ok "$dir/down.prom" "(c) that scrape"
    py down "$dir/down.prom" "$redis"
    check "$(grep -c "^sesscache_up{cache=\"shm:$name\"} 1\$" "$dir/down.prom")" 1 \
        "(c) that scrape: the segment is still up"
    check "$(grep -c "^sesscache_lookups_total{cache=\"shm:$name\"} 2\$" "$dir/down.prom")" 1 \
        "(c) that scrape: the segment's 2 lookups"
    if [ "$(grep -Fc "$redis: cannot survey" "$EXP_LOG")" = 1 ]; then
        pass "(c) the exporter says once, on stderr, that the redis cache could not be read"
    else
        fail "(c) the exporter says that the redis cache could not be read"
        note <"$EXP_LOG"
    fi
    stop_exporter TERM "(d)"
fi
if start_exporter exp2 --listen 127.0.0.1:0 "shm:$name"; then
    py get "$PORT" "$dir/exp2.prom"
    check "$(grep -c "^sesscache_up{cache=\"shm:$name\"} 1\$" "$dir/exp2.prom")" 1 "(d) another exporter: a scrape"
    stop_exporter INT "(d)"
fi

echo "== (d) what the exporter refuses at start"
run nolisten exporter "shm:$name"
expect nolisten 2 "(d) no --listen"
run badlisten exporter --listen localhost "shm:$name"
expect badlisten 2 "(d) --listen localhost (not an address and port)"
run nourl exporter --listen 127.0.0.1:0
expect nourl 2 "(d) no URL"
run missing exporter --listen 127.0.0.1:0 "shm:$name" "shm:$name-missing"
if [ "$rc" -eq 5 ] && grep -q "shm:$name-missing" "$dir/missing.err" && [ ! -e "$seg-missing" ]; then
    pass "(d) a missing segment: exit 5, named: $(cat "$dir/missing.err")"
else
    fail "(d) a missing segment: exit 5, named, nothing created (exit $rc)"
    note <"$dir/missing.err"
fi
run memory exporter --listen 127.0.0.1:0 'memory:'
expect memory 7 "(d) memory:"
run twice exporter --listen 127.0.0.1:0 "shm:$name" "shm:$name"
expect twice 2 "(d) a URL given twice"
run help exporter --help
if [ "$rc" -eq 0 ] && grep -q '^Usage: sesscache exporter --listen <ADDR> <URL>...' "$dir/help.out" &&
   grep -q '^Exit status:' "$dir/help.out"; then
    pass "(d) exporter --help: usage and the exit statuses"
else
    fail "(d) exporter --help: usage and the exit statuses (exit $rc)"
    note <"$dir/help.out"
fi
if start_exporter exp3 --listen 127.0.0.1:0 "shm:$name"; then
    run inuse exporter --listen "127.0.0.1:$PORT" "shm:$name"
    expect inuse 1 "(d) an address in use"
    stop_exporter TERM "(d) (again)"
fi

finish
