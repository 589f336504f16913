# Shell functions to run c-tests/servers/pyserver.py (Python 3's `ssl` module) on loopback,
# for c-tests/servers.sh. Source it after c-tests/servers/common.sh; POSIX sh.
#
#   py_start DIR MODE [VAR=VAL…]          start pyserver.py --mode MODE (threaded|prefork;
#                                         MODE+keepalive: with --keepalive, each connection
#                                         serving requests until the client closes)
#                                         with env VAR=VAL…, on a free port; DIR holds
#                                         cert.pem and key.pem; stdout in DIR/stdout, stderr
#                                         in DIR/stderr. Sets PY_PORT and PY_PID
#   py_stop                               SIGTERM (the prefork parent stops its children),
#                                         killed after 10 s

PYTHON_BIN=${PYTHON_BIN:-python3}
PY_SERVER=${PY_SERVER:-$(pwd)/c-tests/servers/pyserver.py}

py_start() {
    _dir=$1; _mode=${2%+keepalive}; _keepalive=
    [ "$_mode" = "$2" ] || _keepalive=--keepalive
    shift 2
    _port=$(free_port)
    _tries=0
    while [ $_tries -lt 3 ]; do
        _tries=$((_tries + 1))
        : >"$_dir/stdout"
        env "$@" "$PYTHON_BIN" "$PY_SERVER" --mode "$_mode" $_keepalive --port "$_port" \
            --cert "$_dir/cert.pem" --key "$_dir/key.pem" </dev/null >"$_dir/stdout" 2>>"$_dir/stderr" &
        PY_PID=$!
        _w=0
        while [ $_w -lt 100 ] && kill -0 "$PY_PID" 2>/dev/null; do
            if grep -q '^listening' "$_dir/stdout"; then
                PY_PORT=$_port
                return 0
            fi
            sleep 0.1
            _w=$((_w + 1))
        done
        if kill -0 "$PY_PID" 2>/dev/null; then
            echo "pyserver did not start listening in 10 s" >&2
            py_stop
            break
        fi
        wait "$PY_PID" 2>/dev/null
        PY_PID=
        grep -q 'cannot bind' "$_dir/stderr" 2>/dev/null || break
        _port=$(free_port)
    done
    echo "could not start pyserver:" >&2
    tail -n 20 "$_dir/stderr" >&2 2>/dev/null
    return 1
}

py_stop() {
    [ -n "${PY_PID:-}" ] || return 0
    kill -TERM "$PY_PID" 2>/dev/null
    _rc=0
    wait_gone "$PY_PID" 100 || _rc=1
    PY_PID=
    return $_rc
}
