#!/bin/sh
# `make bench`: runs the benchmark (c-tests/bench_resume.c) with a redis-server it starts on
# loopback for the redis:// configurations, then stops it.
#   sh c-tests/bench.sh BENCH_PROGRAM [bench options…]
# Needs redis-server (Debian: redis-server); without it, says so and exits 1.
set -u
prog=$1; shift
server=$(command -v redis-server || true)
cli=$(command -v redis-cli || true)
if [ -z "$server" ] || [ -z "$cli" ]; then
    echo "bench: redis-server and redis-cli are needed for the redis:// figures (apt-get install redis-server redis-tools)" >&2
    exit 1
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/sesscache-bench.XXXXXX") || exit 1
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
pid=$!
i=0
until [ "$("$cli" -p "$port" PING 2>/dev/null)" = PONG ]; do
    i=$((i + 1))
    if [ $i -gt 50 ]; then echo "bench: redis-server did not start:" >&2; cat "$dir/redis.log" >&2; exit 1; fi
    sleep 0.1
done
(umask 077; openssl rand -hex 32 >"$dir/keys")
echo "# redis-server $("$server" --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$port (loopback), values sealed"
BENCH_REDIS_URL="redis://127.0.0.1:$port?key_file=$dir/keys&prefix=bench:" "$prog" "$@"
