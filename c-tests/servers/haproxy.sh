# Shell functions to run HAProxy 2.6 (the system binary, Debian package `haproxy`) on
# loopback, for c-tests/servers.sh. Source it after c-tests/servers/common.sh; POSIX sh.
#
#   haproxy_start DIR CACHESIZE [VAR=VAL…]  write DIR/haproxy.cfg and start haproxy in the
#                                         foreground (-db), one process with `nbthread 2`,
#                                         with env VAR=VAL…; CACHESIZE `default` (its own
#                                         shared session cache) or a number for
#                                         `tune.ssl.cachesize` (0: cache off); one frontend
#                                         `bind 127.0.0.1:PORT ssl crt DIR/crt.pem` answering
#                                         every request with `http-request return status
#                                         200`; on a free port; DIR holds cert.pem and
#                                         key.pem. Sets HAPROXY_PORT and HAPROXY_PID
#   haproxy_stop                          SIGUSR1 (soft stop), killed after 10 s
#
# HAPROXY_TICKET_KEYS, when set, adds `tls-ticket-keys FILE` to the bind line (base64 keys,
# one a line); c-tests/tickets_servers.sh sets it. HAPROXY_NBTHREAD (default 2),
# HAPROXY_GLOBAL (more lines for the global section, e.g. `ssl-mode-async`), HAPROXY_BIND
# (more bind options, e.g. `no-tls-tickets`) and HAPROXY_TIMEOUT_CLIENT (default 10s; also
# HAProxy 2.6's handshake timeout): c-tests/haproxy_async.sh sets them.
#
# haproxy writes its warnings and alerts to its stderr (DIR/stderr): there is no `log` line.

HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}

haproxy_conf() { # DIR CACHESIZE PORT
    if [ "$2" = default ]; then _cs_conf=; else _cs_conf="tune.ssl.cachesize $2"; fi
    _keys_conf=${HAPROXY_TICKET_KEYS:+ tls-ticket-keys $HAPROXY_TICKET_KEYS}${HAPROXY_BIND:+ $HAPROXY_BIND}
    cat >"$1/haproxy.cfg" <<CONF
global
    nbthread ${HAPROXY_NBTHREAD:-2}
    pidfile $1/haproxy.pid
    $_cs_conf
${HAPROXY_GLOBAL:-}

defaults
    mode http
    timeout connect 5s
    timeout client ${HAPROXY_TIMEOUT_CLIENT:-10s}
    timeout server 10s

frontend tls
    bind 127.0.0.1:$3 ssl crt $1/crt.pem$_keys_conf
    http-request return status 200 content-type text/plain string "ok"
CONF
}

haproxy_start() {
    _dir=$1; _cs=$2; shift 2
    cat "$_dir/cert.pem" "$_dir/key.pem" >"$_dir/crt.pem"
    _port=$(free_port)
    _tries=0
    while [ $_tries -lt 3 ]; do
        _tries=$((_tries + 1))
        # Where this attempt's log starts: an attempt that found its port taken is cut off
        # again below, so that its alert is not read as the server's (the logs are compared
        # with and without the library).
        _at=$(wc -c 2>/dev/null <"$_dir/stderr" || echo 0); _at=$((_at + 0))
        haproxy_conf "$_dir" "$_cs" "$_port"
        env "$@" "$HAPROXY_BIN" -db -f "$_dir/haproxy.cfg" </dev/null >>"$_dir/stderr" 2>&1 &
        HAPROXY_PID=$!
        if wait_tls "$_port" "$HAPROXY_PID"; then
            HAPROXY_PORT=$_port
            return 0
        fi
        if kill -0 "$HAPROXY_PID" 2>/dev/null; then
            echo "haproxy did not answer in 10 s" >&2
            haproxy_stop
            break
        fi
        wait "$HAPROXY_PID" 2>/dev/null
        HAPROXY_PID=
        tail -c +$((_at + 1)) "$_dir/stderr" 2>/dev/null | grep -q 'cannot bind\|Address already in use' || break
        head -c "$_at" "$_dir/stderr" >"$_dir/stderr.kept" && mv "$_dir/stderr.kept" "$_dir/stderr"
        _port=$(free_port)
    done
    echo "could not start haproxy:" >&2
    tail -n 20 "$_dir/stderr" >&2 2>/dev/null
    return 1
}

haproxy_stop() {
    [ -n "${HAPROXY_PID:-}" ] || return 0
    kill -USR1 "$HAPROXY_PID" 2>/dev/null
    _rc=0
    wait_gone "$HAPROXY_PID" 100 || _rc=1
    HAPROXY_PID=
    return $_rc
}
