#!/bin/sh
# Asynchronous lookups (c-tests/test_async.c) against a redis-server this script starts:
# the harness as built, under valgrind memcheck (definite leaks and memory errors fail),
# and built with AddressSanitizer + UndefinedBehaviorSanitizer (leaks included). Each run
# counts as one check here, with its own checks' summary shown.
# Prints ok/FAIL lines and "async: N passed, M failed". Run from the top of the tree after
# `make c-tests`. Needs redis-server (Debian: redis-server): without it every check fails.
set -u
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/ports.sh
SUITE=async
. c-tests/checks.sh
B=${B:-build}
dir=$(mktemp -d)
redis_pid=
cleanup() {
    [ -z "$redis_pid" ] || kill "$redis_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v redis-server >/dev/null 2>&1; then
    fail "redis-server is required (apt-get install redis-server)"
    finish
fi
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" >"$dir/redis.log" 2>&1 &
redis_pid=$!
if ! wait_redis "$port"; then
    fail "redis-server did not start on port $port"
    show "$dir/redis.log"
    finish
fi
export SESSCACHE_TEST_REDIS_PORT=$port

# run LABEL COMMAND...: one check, passed when the harness ran every test and none failed.
run() {
    label=$1
    shift
    if "$@" >"$dir/$label.out" 2>&1; then rc=0; else rc=$?; fi
    line=$(grep -E '^test_async: [0-9]+ passed, [0-9]+ failed$' "$dir/$label.out" | tail -n 1)
    if [ "$rc" -eq 0 ] && [ -n "$line" ] && echo "$line" | grep -q ' 0 failed$'; then
        ok "$label: ${line#test_async: }"
    else
        fail "$label: ${line:-no summary}, exit $rc"
        grep -E 'FAIL|ERROR|==[0-9]+==' "$dir/$label.out" | head -n 60 | note
    fi
    grep -E '^    [0-9]+ full handshakes' "$dir/$label.out" | note
}

run test_async "$B/test_async"
if command -v valgrind >/dev/null 2>&1; then
    run test_async_valgrind valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
        --error-exitcode=99 "$B/test_async"
else
    fail "valgrind is not installed (apt-get install valgrind)"
fi
run test_async_asan env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 "$B/test_async_asan"
finish
