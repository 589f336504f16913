# Small shell functions shared by the server helpers of c-tests/servers.sh. Source it from
# the top of the tree; it sources c-tests/ports.sh (free_port, the one way to pick a port,
# and the waits); POSIX sh.
#
#   wait_tls PORT PID          waits (up to 10 s) until a TLS handshake on 127.0.0.1:PORT
#                              succeeds; false at once if PID exits
#   wait_gone PID TENTHS       waits up to TENTHS/10 s for PID (a child of this shell) to
#                              exit; then SIGKILL and false

. c-tests/ports.sh

wait_tls() {
    _w=0
    while [ $_w -lt 40 ]; do
        kill -0 "$2" 2>/dev/null || return 1
        if timeout 3 openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null |
               grep -q '^New, TLSv1'; then
            return 0
        fi
        sleep 0.25
        _w=$((_w + 1))
    done
    return 1
}

wait_gone() {
    _w=0
    while kill -0 "$1" 2>/dev/null && [ $_w -lt "$2" ]; do
        sleep 0.1
        _w=$((_w + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        return 1
    fi
    wait "$1" 2>/dev/null
    return 0
}
