#!/bin/sh
# `make demo`: an unmodified `openssl s_server`, preloaded with libsesscache, serves six
# `openssl s_client` connections on loopback; then the explicit C API demo (examples/demo.c).
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
echo "== The explicit API: two server contexts sharing one cache (examples/demo.c)"
echo
exec build/demo
