# Shell functions to run an unmodified `openssl s_server` with libsesscache preloaded on
# loopback, for the harness and `make demo`. Source it from the top of the tree; it sources
# c-tests/ports.sh (free_port); POSIX sh.
#
#   sserver_cert DIR                      ECDSA P-256 cert.pem + key.pem in DIR
#   sserver_start DIR NACCEPT [VAR=VAL…]  start one server (env VAR=VAL…), on a free port;
#                                         sets SSERVER_PORT and SSERVER_PID
#   sserver_www DIR NAME [VAR=VAL…] -- [OPTION…]
#                                         start an `openssl s_server -www OPTION…` (which never
#                                         reads its stdin; DIR's cert.pem and key.pem) with
#                                         the library preloaded (LD_PRELOAD= among VAR=VAL…:
#                                         without it; no VAR=VAL may hold a space) and
#                                         SESSCACHE_STATS=DIR/NAME.stats, its output in
#                                         DIR/NAME.out and DIR/NAME.err, on a free port;
#                                         sets SSERVER_PORT and SSERVER_PID
#   sserver_wait PID                      wait (up to 20 s) for it to exit after NACCEPT
#   sserver_stop PID                      stop it now
#   sserver_cleanup                       (for an EXIT trap) stop the servers still running
#                                         that SSERVER_PID, S1 and S2 name
#   sserver_two DIR CERTDIR N1 N2 [VAR=VAL…]
#                                         two servers (DIR/s1, DIR/s2, CERTDIR's cert) for N1
#                                         and N2 accepts; sets S1 P1 S2 P2
#   sserver_two_wait                      wait for both to exit (1 if one did not)
#   sserver_cross DIR                     with sserver_two's servers up (for 4 and 3
#                                         accepts), the seven connections of the
#                                         cross-process check, each result in C1…C7: a TLS
#                                         1.2 session made on server 1 (saved in DIR),
#                                         offered to 2, then 1; a TLS 1.3 ticket from 1,
#                                         offered to 2, 1, 2
#   sserver_connect PORT ARGS…            one `openssl s_client` connection; prints
#                                         "New"/"Reused" and the protocol, e.g. "Reused TLSv1.2"
#                                         (with -sess_out FILE the client stays until the
#                                         ticket is saved; SSERVER_LINGER=1: 0.2 s otherwise)
#
# s_server treats end of its standard input as "quit", so it reads from a FIFO that this
# shell keeps open until the server is stopped. SSERVER_OPENSSL: the openssl program to run
# (default: openssl from PATH; c-tests/compat.sh runs each OpenSSL version's own).

SSERVER_LIB=${SSERVER_LIB:-$(pwd)/target/release/libsesscache.so}
SSERVER_OPENSSL=${SSERVER_OPENSSL:-openssl}

. c-tests/ports.sh

sserver_cert() {
    "$SSERVER_OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj /CN=localhost -days 2 -keyout "$1/key.pem" -out "$1/cert.pem" >/dev/null 2>&1
}

sserver_start() {
    _dir=$1; _naccept=$2; shift 2
    [ -p "$_dir/stdin" ] || mkfifo "$_dir/stdin"
    exec 9<>"$_dir/stdin"
    # A free port; another one if the server finds it taken.
    _port=$(free_port)
    _tries=0
    while [ $_tries -lt 30 ]; do
        # The previous server's output says ACCEPT too: remove it before the new server
        # starts, or the wait below could see it and connect before the new one listens.
        rm -f "$_dir/server.out"
        # shellcheck disable=SC2086 # SSERVER_ARGS: more s_server options, split on spaces
        env LD_PRELOAD="$SSERVER_LIB" "$@" "$SSERVER_OPENSSL" s_server -accept "127.0.0.1:$_port" \
            -cert "$_dir/cert.pem" -key "$_dir/key.pem" -naccept "$_naccept" ${SSERVER_ARGS:-} \
            <"$_dir/stdin" >"$_dir/server.out" 2>"$_dir/server.err" &
        SSERVER_PID=$!
        if sserver_listens "$_dir/server.out" "$SSERVER_PID"; then
            SSERVER_PORT=$_port
            return 0
        fi
        kill "$SSERVER_PID" 2>/dev/null
        wait "$SSERVER_PID" 2>/dev/null
        _port=$(free_port)
        _tries=$((_tries + 1))
    done
    echo "could not start openssl s_server:" >&2
    cat "$_dir/server.err" >&2
    return 1
}

# sserver_listens OUT PID: waits (up to 5 s) until s_server says ACCEPT in OUT; false at
# once if PID exits (its port was taken, most likely).
sserver_said() { grep -q '^ACCEPT' "$1" 2>/dev/null || ! kill -0 "$2" 2>/dev/null; }
sserver_listens() { wait_for 5 sserver_said "$1" "$2" && grep -q '^ACCEPT' "$1" 2>/dev/null; }

sserver_www() {
    _dir=$1; _name=$2; shift 2
    _env=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do _env="$_env $1"; shift; done
    [ $# -gt 0 ] && shift
    _tries=0
    while [ $_tries -lt 5 ]; do
        _tries=$((_tries + 1))
        _port=$(free_port)
        rm -f "$_dir/$_name.out"
        # VAR=VAL words, split on spaces only (set -f: a ? in a URL is no pattern).
        set -f
        # shellcheck disable=SC2086
        env LD_PRELOAD="$SSERVER_LIB" SESSCACHE_STATS="$_dir/$_name.stats" $_env \
            "$SSERVER_OPENSSL" s_server -accept "127.0.0.1:$_port" \
            -cert "$_dir/cert.pem" -key "$_dir/key.pem" -www "$@" \
            </dev/null >"$_dir/$_name.out" 2>>"$_dir/$_name.err" &
        SSERVER_PID=$!
        set +f
        if sserver_listens "$_dir/$_name.out" "$SSERVER_PID"; then
            SSERVER_PORT=$_port
            return 0
        fi
        kill "$SSERVER_PID" 2>/dev/null; wait "$SSERVER_PID" 2>/dev/null
    done
    echo "# could not start s_server $_name:"; tail -n 25 "$_dir/$_name.err" 2>/dev/null | sed 's/^/#     /'
    SSERVER_PID=
    return 1
}

sserver_wait() {
    [ "$1" = "${SSERVER_PID:-}" ] && SSERVER_PID=
    _waited=0
    while kill -0 "$1" 2>/dev/null && [ $_waited -lt 200 ]; do
        sleep 0.1
        _waited=$((_waited + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        kill "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        exec 9>&-
        return 1
    fi
    wait "$1" 2>/dev/null
    exec 9>&-
    return 0
}

sserver_stop() {
    [ "$1" = "${SSERVER_PID:-}" ] && SSERVER_PID=
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    exec 9>&-
}

sserver_cleanup() {
    for _p in ${SSERVER_PID:-} ${S1:-} ${S2:-}; do kill "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; done
    SSERVER_PID=; S1=; S2=
    exec 8>&- 9>&-
}

# TLS 1.3 tickets arrive after the handshake: to save one, s_client must not quit at once.
sserver_connect() {
    _port=$1; shift
    if [ "${SSERVER_LINGER:-0}" = 1 ]; then _linger=0.2; else _linger=0; fi
    # With -sess_out FILE the client stays until it has saved a ticket there (at most 5 s):
    # a fixed linger is too short on a busy machine.
    _out=; _prev=
    for _a; do [ "$_prev" = -sess_out ] && _out=$_a; _prev=$_a; done
    [ -n "$_out" ] && rm -f "$_out"
    (if [ -n "$_out" ]; then
        _w=0; while [ ! -s "$_out" ] && [ $_w -lt 50 ]; do sleep 0.1; _w=$((_w + 1)); done
     else sleep $_linger; fi) |
        timeout 10 "$SSERVER_OPENSSL" s_client -connect "127.0.0.1:$_port" "$@" 2>/dev/null |
        sed -n 's/^\(New\|Reused\), \(TLSv[0-9.]*\),.*/\1 \2/p' | head -n 1
}

# Server 1 on one port, server 2 on the next free one, both with CERTDIR's certificate.
# sserver_start keeps each server's stdin FIFO open on fd 9: server 1's is moved to fd 8
# before server 2 is started (closing it would end server 1).
sserver_two() { # DIR CERTDIR N1 N2 VAR=VAL…
    _d=$1; _c=$2; _n1=$3; _n2=$4; shift 4
    rm -rf "$_d/s1" "$_d/s2"; mkdir "$_d/s1" "$_d/s2"
    cp "$_c/cert.pem" "$_c/key.pem" "$_d/s1/"; cp "$_c/cert.pem" "$_c/key.pem" "$_d/s2/"
    sserver_start "$_d/s1" "$_n1" "$@" || return 1
    S1=$SSERVER_PID; P1=$SSERVER_PORT
    exec 8<&9
    sserver_start "$_d/s2" "$_n2" "$@" || return 1
    S2=$SSERVER_PID; P2=$SSERVER_PORT
}

# Both servers exit after their accepts; sserver_wait closes fd 9 (server 2's FIFO) first.
sserver_two_wait() {
    _rc=0
    sserver_wait "$S2" || _rc=1
    sserver_wait "$S1" || _rc=1
    exec 8>&-
    S1=; S2=
    return $_rc
}

# The connections: server 1 gets 1, 3, 4, 6; server 2 gets 2, 5, 7.
sserver_cross() {
    C1=$(sserver_connect "$P1" -tls1_2 -sess_out "$1/s12.pem")
    C2=$(sserver_connect "$P2" -tls1_2 -sess_in "$1/s12.pem")
    C3=$(sserver_connect "$P1" -tls1_2 -sess_in "$1/s12.pem")
    C4=$(SSERVER_LINGER=1 sserver_connect "$P1" -tls1_3 -sess_out "$1/t13.pem")
    C5=$(sserver_connect "$P2" -tls1_3 -sess_in "$1/t13.pem")
    C6=$(sserver_connect "$P1" -tls1_3 -sess_in "$1/t13.pem")
    C7=$(sserver_connect "$P2" -tls1_3 -sess_in "$1/t13.pem")
}
