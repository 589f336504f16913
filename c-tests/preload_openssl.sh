#!/bin/sh
# Unmodified `openssl s_server` (the system binary) with libsesscache preloaded:
# - TLS 1.2: `openssl s_client -reconnect` resumes its session five times, through the cache;
# - TLS 1.3: a ticket saved with -sess_out resumes once with -sess_in, and is refused the
#   second time (single use).
# Prints ok/FAIL lines and "preload-openssl: N passed, M failed"; exits non-zero on failure.
set -u
. c-tests/sserver.sh
passed=0; failed=0
check() { if [ "$1" = "$2" ]; then passed=$((passed+1)); echo "ok - $3"; else failed=$((failed+1)); echo "FAIL - $3 (got '$1', want '$2')"; fi; }

dir=$(pwd)/build/preload-openssl
trap sserver_cleanup EXIT
trap 'exit 1' INT TERM HUP
rm -rf "$dir"; mkdir -p "$dir"
sserver_cert "$dir" || { echo "FAIL - could not make a certificate"; echo "preload-openssl: 0 passed, 1 failed"; exit 1; }

# TLS 1.2: one s_client run makes 6 connections.
if sserver_start "$dir" 6 SESSCACHE_URL=memory: SESSCACHE_STATS="$dir/stats12"; then
    timeout 20 openssl s_client -connect "127.0.0.1:$SSERVER_PORT" -tls1_2 -reconnect \
        </dev/null >"$dir/client12.out" 2>&1
    sserver_wait "$SSERVER_PID"
    check "$(grep -c '^Reused, TLSv1.2' "$dir/client12.out")" 5 "TLS 1.2: s_client -reconnect resumed 5 times"
    check "$(sed -n 's/.* hits=\([0-9]*\) .*/\1/p' "$dir/stats12")" 5 "TLS 1.2: the cache answered the 5 resumptions"
else
    failed=$((failed+1)); echo "FAIL - TLS 1.2: s_server did not start"
fi

# TLS 1.3: the ticket from connection 1 resumes connection 2 and is refused at connection 3.
if sserver_start "$dir" 3 SESSCACHE_URL=memory: SESSCACHE_STATS="$dir/stats13"; then
    first=$(SSERVER_LINGER=1 sserver_connect "$SSERVER_PORT" -tls1_3 -sess_out "$dir/ticket.pem")
    second=$(sserver_connect "$SSERVER_PORT" -tls1_3 -sess_in "$dir/ticket.pem")
    third=$(sserver_connect "$SSERVER_PORT" -tls1_3 -sess_in "$dir/ticket.pem")
    sserver_wait "$SSERVER_PID"
    check "$first" "New TLSv1.3" "TLS 1.3: first connection is a full handshake"
    check "$second" "Reused TLSv1.3" "TLS 1.3: the saved ticket resumes"
    check "$third" "New TLSv1.3" "TLS 1.3: the same ticket is refused the second time"
    check "$(sed -n 's/.* hits=\([0-9]*\) .*/\1/p' "$dir/stats13")" 1 "TLS 1.3: one hit in the cache"
else
    failed=$((failed+1)); echo "FAIL - TLS 1.3: s_server did not start"
fi

# Without the library, the same TLS 1.3 replay would resume: OpenSSL's own cache does not
# enforce single use, which is why the test above can fail.
SSERVER_LIB= 
if sserver_start "$dir" 3; then
    SSERVER_LINGER=1 sserver_connect "$SSERVER_PORT" -tls1_3 -sess_out "$dir/ticket0.pem" >/dev/null
    second=$(sserver_connect "$SSERVER_PORT" -tls1_3 -sess_in "$dir/ticket0.pem")
    third=$(sserver_connect "$SSERVER_PORT" -tls1_3 -sess_in "$dir/ticket0.pem")
    sserver_wait "$SSERVER_PID"
    check "$second $third" "Reused TLSv1.3 Reused TLSv1.3" "without the library: stateless tickets replay"
else
    failed=$((failed+1)); echo "FAIL - s_server without the library did not start"
fi

echo "preload-openssl: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
