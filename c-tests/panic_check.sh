#!/bin/sh
# Panic safety: the library built with the `fault-injection` feature (target/fault: never
# what `make` installs) panics on demand at the sites named in SESSCACHE_FAULT
# (src/fault.rs). For each site:
#   a. the explicit API (c-tests/panic_probe.c): sesscache_open, sesscache_attach and
#      sesscache_get_stats fail with their failure value and "sesscache internal error: …"
#      from sesscache_last_error(); a panic in the remove callback (SSL_CTX_remove_session
#      on an attached context) returns to OpenSSL; the program carries on to its end;
#   b. an unmodified `openssl s_server`, preloaded, SESSCACHE_URL=memory:, a panic at
#      new / get / ctx_new / accept / free: every handshake (TLS 1.2 full and
#      resumed, TLS 1.3) completes, the server exits normally (no abort: no panic crossed
#      into C), stderr has the library's "internal error (a panic, caught)" line; a panic in
#      the get path is a miss, one in the new path stores nothing (a miss later); with no
#      fault (the control) the session resumes;
#   c. a panic in a lookup on a library thread (`openssl s_server -async`, preloaded, on a
#      redis:// this script starts: the get callback pauses the async job and a worker looks
#      up): the resumption is a miss, every handshake completes, the server exits normally,
#      the panic is logged.
# Run from the top of the tree after `make fault-lib` (CC, SSL_CFLAGS, SSL_LIBS as
# c-tests/run.sh sets them). Prints ok/FAIL lines and "panic: N passed, M failed".
set -u
unset SESSCACHE_URL SESSCACHE_STATS SESSCACHE_LOG SESSCACHE_FAULT
SUITE=panic
. c-tests/checks.sh
CC=${CC:-cc}
FAULT_DIR=$(pwd)/target/fault/release
SSERVER_LIB=$FAULT_DIR/libsesscache.so
. c-tests/sserver.sh
if [ ! -f "$SSERVER_LIB" ]; then fail "$SSERVER_LIB is missing: run 'make fault-lib' first"; finish; fi
if ! nm -D "$SSERVER_LIB" | grep -q ' T SSL_CTX_new$'; then fail "$SSERVER_LIB does not interpose SSL_CTX_new"; finish; fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/panic.XXXXXX") || { fail "mktemp"; finish; }
trap 'sserver_cleanup; rm -rf "$dir"' EXIT
trap 'exit 1' INT TERM HUP

# shellcheck disable=SC2086
if ! $CC -std=c11 -Wall -Wextra -Werror ${SSL_CFLAGS:-} -Iinclude c-tests/panic_probe.c \
        -o "$dir/probe" -L"$FAULT_DIR" -lsesscache -Wl,-rpath,"$FAULT_DIR" ${SSL_LIBS:--lssl -lcrypto} \
        2>"$dir/cc.err"; then
    fail "the probe does not compile"; show "$dir/cc.err"; finish
fi

echo "# a. the explicit API"
for site in open attach stats remove; do
    SESSCACHE_FAULT=$site "$dir/probe" >"$dir/$site.out" 2>"$dir/$site.err"
    rc=$?
    case $site in
        open) want="open: NULL: sesscache internal error: injected fault at 'open'" ;;
        attach) want="attach: 0: sesscache internal error: injected fault at 'attach'" ;;
        stats) want="stats: 0: sesscache internal error: injected fault at 'stats'" ;;
        remove) want="remove: returned" ;;
    esac
    if [ $rc -eq 0 ] && grep -qxF "$want" "$dir/$site.out" && grep -qx 'probe: done' "$dir/$site.out" &&
       grep -q "internal error (a panic, caught): injected fault at '$site'" "$dir/$site.err"; then
        ok "a: $site: a panic is the call's failure value (and message), logged; the program carries on"
    else
        fail "a: $site: a panic is the call's failure value and message (exit $rc)"; show "$dir/$site.out" "$dir/$site.err"
    fi
done
# The control: no fault, every call succeeds.
"$dir/probe" >"$dir/none.out" 2>&1
if grep -qx 'open: ok: ' "$dir/none.out" && grep -qx 'attach: 1: ' "$dir/none.out" && grep -q '^stats: [1-9][0-9]*: $' "$dir/none.out"; then
    ok "a: no fault: open, attach and get_stats succeed (the control)"
else
    fail "a: no fault: open, attach and get_stats succeed"; show "$dir/none.out"
fi

echo "# b. openssl s_server, preloaded, under injected panics"
mkdir "$dir/cert"
sserver_cert "$dir/cert" || { fail "openssl could not make a certificate"; finish; }
for site in none new get ctx_new accept free; do
    d=$dir/$site; mkdir "$d"; cp "$dir/cert/cert.pem" "$dir/cert/key.pem" "$d/"
    if ! sserver_start "$d" 3 SESSCACHE_URL=memory: SESSCACHE_FAULT=$site; then
        fail "b: $site: s_server did not start"; show "$d/server.err"; continue
    fi
    pid=$SSERVER_PID   # (SSERVER_PID stays for the EXIT trap until the server is gone)
    c1=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$d/s.pem")
    c2=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$d/s.pem")
    c3=$(sserver_connect "$SSERVER_PORT" -tls1_3)
    w=0; while kill -0 "$pid" 2>/dev/null && [ $w -lt 100 ]; do sleep 0.1; w=$((w + 1)); done
    if kill -0 "$pid" 2>/dev/null; then sserver_stop "$pid"; rc=timeout; else wait "$pid"; rc=$?; exec 9>&-; fi
    SSERVER_PID=
    if [ "$rc" = 0 ] && [ "$c1" = "New TLSv1.2" ] && [ -n "$c2" ] && [ "$c3" = "New TLSv1.3" ]; then
        ok "b: $site: every handshake completed ($c1, $c2, $c3); the server exited normally"
    else
        fail "b: $site: every handshake completes and the server exits normally (got '$c1', '$c2', '$c3'; exit $rc)"
        show "$d/server.err"
    fi
    case $site in
        none)
            check "$c2" "Reused TLSv1.2" "b: no fault: the session resumes (the control)" ;;
        new|get)
            check "$c2" "New TLSv1.2" "b: $site: the cache's part failed, so the session does not resume: a miss" ;;
    esac
    if [ $site != none ]; then
        if grep -q "internal error (a panic, caught): injected fault at '$site'" "$d/server.err"; then
            ok "b: $site: the panic is logged"
        else
            fail "b: $site: the panic is logged"; show "$d/server.err"
        fi
    fi
done

echo "# c. a lookup that panics on a library thread (s_server -async, redis://)"
if ! command -v redis-server >/dev/null 2>&1; then
    fail "c: redis-server is required (apt-get install redis-server)"; finish
fi
. c-tests/ports.sh
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    >"$dir/redis.log" 2>&1 &
rpid=$!
trap 'sserver_cleanup; kill "$rpid" 2>/dev/null; rm -rf "$dir"' EXIT
if ! wait_redis "$rport"; then fail "c: redis-server did not start"; show "$dir/redis.log"; finish; fi
d=$dir/lookup; mkdir "$d"; cp "$dir/cert/cert.pem" "$dir/cert/key.pem" "$d/"
if SSERVER_ARGS="-async -no_ticket" sserver_start "$d" 3 \
        SESSCACHE_URL="redis://127.0.0.1:$rport?insecure_plaintext=1&timeout_ms=3000" SESSCACHE_FAULT=lookup; then
    pid=$SSERVER_PID
    c1=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$d/s.pem")
    # The store reaches Redis within milliseconds; then only Redis has the session, and the
    # resumption's lookup goes to a library thread.
    sleep 0.3
    c2=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$d/s.pem")
    c3=$(sserver_connect "$SSERVER_PORT" -tls1_3)
    w=0; while kill -0 "$pid" 2>/dev/null && [ $w -lt 100 ]; do sleep 0.1; w=$((w + 1)); done
    if kill -0 "$pid" 2>/dev/null; then sserver_stop "$pid"; rc=timeout; else wait "$pid"; rc=$?; exec 9>&-; fi
    SSERVER_PID=
    if [ "$rc" = 0 ] && [ "$c1" = "New TLSv1.2" ] && [ "$c3" = "New TLSv1.3" ]; then
        ok "c: lookup: every handshake completed ($c1, $c2, $c3); the server exited normally"
    else
        fail "c: lookup: every handshake completes and the server exits normally (got '$c1', '$c2', '$c3'; exit $rc)"
        show "$d/server.err"
    fi
    check "$c2" "New TLSv1.2" "c: lookup: the lookup failed, so the session does not resume: a miss"
    if grep -q "internal error (a panic, caught): injected fault at 'lookup'" "$d/server.err"; then
        ok "c: lookup: the panic is logged"
    else
        fail "c: lookup: the panic is logged"; show "$d/server.err"
    fi
else
    fail "c: lookup: s_server -async did not start"; show "$d/server.err"
fi
finish
