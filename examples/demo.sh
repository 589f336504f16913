#!/bin/sh
# `make demo`: an unmodified `openssl s_server`, preloaded with libsesscache, serves six
# `openssl s_client` connections on loopback; then two s_server processes share one shm:
# cache (a session made on one resumes on the other); then two s_server "hosts" share
# sessions through a Redis the demo starts, sealed; then the explicit C API demo
# (examples/demo.c).
set -u
. c-tests/sserver.sh

dir=$(pwd)/build/demo-run
rm -rf "$dir"; mkdir -p "$dir"
sserver_cert "$dir" || { echo "demo: openssl could not make a certificate" >&2; exit 1; }

echo "== Preload mode: unmodified openssl s_server with an external session cache"
echo "   LD_PRELOAD=$SSERVER_LIB SESSCACHE_URL=memory: openssl s_server ..."
echo
sserver_start "$dir" 6 SESSCACHE_URL=memory: SESSCACHE_STATS="$dir/stats" || exit 1

printf '%-5s %-9s %-8s %10s  %s\n' conn protocol result "time(ms)" "client"
n=0
run() { # protocol-flag session-args description
    n=$((n + 1))
    linger=0
    case "$1 $2" in "-tls1_3 -sess_out"*) linger=1 ;; esac
    t0=$(date +%s%N)
    r=$(SSERVER_LINGER=$linger sserver_connect "$SSERVER_PORT" $1 $2)
    t1=$(date +%s%N)
    printf '%-5s %-9s %-8s %10s  %s\n' "$n" "${r#* }" "${r%% *}" \
        "$(( (t1 - t0) / 1000000 ))" "$3"
}
run -tls1_2 "-sess_out $dir/s12.pem" "new client, saves its session"
run -tls1_2 "-sess_in $dir/s12.pem" "offers the saved session ID"
run -tls1_2 "-sess_in $dir/s12.pem" "offers it again (TLS 1.2 IDs are reusable)"
run -tls1_3 "-sess_out $dir/t13.pem" "new client, saves its ticket"
run -tls1_3 "-sess_in $dir/t13.pem" "offers the saved ticket"
run -tls1_3 "-sess_in $dir/t13.pem" "replays it: refused, tickets are single-use"
sserver_wait "$SSERVER_PID"
echo "   time: the whole s_client run, process start-up included (connection 4 also"
echo "   waits 0.2 s for its tickets). For handshake times alone, see the second part."
echo
echo "cache stats written by the server at exit (SESSCACHE_STATS):"
sed -n 's/^sesscache stats pid=[0-9]* //p' "$dir/stats" | tr ' ' '\n' | sed 's/=/ /' |
    while read -r k v; do printf '  %-12s %s\n' "$k" "$v"; done
echo

# Two servers, one cache in shared memory. sserver_start keeps a server's stdin FIFO open on
# fd 9: server 1's moves to fd 8 before server 2 starts (closing it would end server 1).
seg=demo-$$
trap 'rm -f "/dev/shm/sesscache-$seg"' EXIT
echo "== The shm: backend: two openssl s_server processes sharing one cache"
echo "   LD_PRELOAD=$SSERVER_LIB SESSCACHE_URL='shm:$seg?size=4M' openssl s_server ..."
echo "   (twice, on two ports)"
echo
mkdir -p "$dir/shm1" "$dir/shm2"
cp "$dir/cert.pem" "$dir/key.pem" "$dir/shm1/"; cp "$dir/cert.pem" "$dir/key.pem" "$dir/shm2/"
sserver_start "$dir/shm1" 4 SESSCACHE_URL="shm:$seg?size=4M" SESSCACHE_STATS="$dir/shm1/stats" || exit 1
pid1=$SSERVER_PID; port1=$SSERVER_PORT
exec 8<&9
sserver_start "$dir/shm2" 2 SESSCACHE_URL="shm:$seg?size=4M" SESSCACHE_STATS="$dir/shm2/stats" ||
    { sserver_stop "$pid1"; exit 1; }
pid2=$SSERVER_PID; port2=$SSERVER_PORT
printf '%-5s %-12s %-9s %-8s %10s  %s\n' conn server protocol result "time(ms)" "client"
n=0
run2() { # server(1|2) protocol-flag session-args description
    n=$((n + 1))
    linger=0
    case "$2 $3" in "-tls1_3 -sess_out"*) linger=1 ;; esac
    if [ "$1" = 1 ]; then port=$port1; else port=$port2; fi
    t0=$(date +%s%N)
    r=$(SSERVER_LINGER=$linger sserver_connect "$port" $2 $3)
    t1=$(date +%s%N)
    printf '%-5s %-12s %-9s %-8s %10s  %s\n' "$n" "$1 (:$port)" "${r#* }" "${r%% *}" \
        "$(( (t1 - t0) / 1000000 ))" "$4"
}
run2 1 -tls1_2 "-sess_out $dir/shm12.pem" "new client, saves its session"
run2 2 -tls1_2 "-sess_in $dir/shm12.pem" "offers it to server 2"
run2 1 -tls1_2 "-sess_in $dir/shm12.pem" "and back to server 1"
run2 1 -tls1_3 "-sess_out $dir/shm13.pem" "new client, saves its ticket"
run2 2 -tls1_3 "-sess_in $dir/shm13.pem" "offers the ticket to server 2"
run2 1 -tls1_3 "-sess_in $dir/shm13.pem" "replays it to server 1: refused, single use across processes"
echo "   segment: $(stat -c '%n, %s bytes, mode 0%a' "/dev/shm/sesscache-$seg")"
sserver_wait "$pid2"
sserver_wait "$pid1"
exec 8>&-
echo
# The counters live in the segment: each server's line at exit counts both servers' events;
# the one with the most lookups is the later one.
echo "segment stats, written by the last server to exit (SESSCACHE_STATS):"
cat "$dir/shm1/stats" "$dir/shm2/stats" 2>/dev/null | sort -t= -k3,3n | tail -n 1 |
    sed -n 's/^sesscache stats pid=[0-9]* //p' | tr ' ' '\n' | sed 's/=/ /' |
    while read -r k v; do printf '  %-12s %s\n' "$k" "$v"; done
rm -f "/dev/shm/sesscache-$seg"; trap - EXIT
echo "   (segment removed: rm /dev/shm/sesscache-$seg)"
echo
echo "== redis://: two hosts sharing sessions through Redis, sealed at rest"
rport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    >"$dir/redis.log" 2>&1 &
rpid=$!
trap 'kill $rpid 2>/dev/null' EXIT
i=0
until [ "$(redis-cli -p "$rport" PING 2>/dev/null)" = PONG ]; do
    i=$((i + 1)); [ $i -gt 50 ] && { echo "demo: redis-server did not start" >&2; cat "$dir/redis.log" >&2; exit 1; }
    sleep 0.1
done
(umask 077; openssl rand -hex 32 >"$dir/keys")
url="redis://127.0.0.1:$rport?key_file=$dir/keys&prefix=demo:"
echo "   redis-server on 127.0.0.1:$rport; $dir/keys: one 32-byte key (hex), mode 0600"
echo "   LD_PRELOAD=$SSERVER_LIB SESSCACHE_URL='$url' openssl s_server ..."
echo "   (twice: two hosts)"
echo
sserver_start "$dir/shm1" 4 SESSCACHE_URL="$url" SESSCACHE_STATS="$dir/r1.stats" || exit 1
pid1=$SSERVER_PID; port1=$SSERVER_PORT
exec 8<&9
sserver_start "$dir/shm2" 2 SESSCACHE_URL="$url" SESSCACHE_STATS="$dir/r2.stats" ||
    { sserver_stop "$pid1"; exit 1; }
pid2=$SSERVER_PID; port2=$SSERVER_PORT
printf '%-5s %-12s %-9s %-8s %10s  %s\n' conn host protocol result "time(ms)" "client"
n=0
run2 1 -tls1_2 "-sess_out $dir/r12.pem" "new client, saves its session"
sleep 0.2   # stores go to Redis in the background
run2 2 -tls1_2 "-sess_in $dir/r12.pem" "offers it to host 2"
run2 1 -tls1_2 "-sess_in $dir/r12.pem" "and back to host 1"
run2 1 -tls1_3 "-sess_out $dir/r13.pem" "new client, saves its ticket"
sleep 0.2
run2 2 -tls1_3 "-sess_in $dir/r13.pem" "offers the ticket to host 2"
run2 1 -tls1_3 "-sess_in $dir/r13.pem" "replays it to host 1: refused, single use across the fleet"
sserver_wait "$pid2"
sserver_wait "$pid1"
exec 8>&-
echo
echo "   what Redis holds (redis-cli --scan; each value sealed with AES-256-GCM):"
for k in $(redis-cli -p "$rport" --scan --pattern 'demo:*' | grep -vx 'demo:stats'); do
    printf '   %s  %s bytes, expires in %s s\n' "$k" "$(redis-cli -p "$rport" STRLEN "$k")" \
        "$(redis-cli -p "$rport" TTL "$k")"
done
echo
echo "   the fleet's counters, as both hosts reported them to Redis (sesscache stats URL):"
target/cli/release/sesscache stats "$url" | grep -E '^(lookups|hits|misses|stores|errors|entries|bytes|hit_ratio) ' |
    sed 's/^/   /'
kill $rpid 2>/dev/null; wait $rpid 2>/dev/null; trap - EXIT
echo

echo "== The explicit API: two server contexts sharing one cache (examples/demo.c)"
echo
exec build/demo
