# Ports, and waiting for what a test needs, for the shell suites that start servers: the
# one way they pick a port and the one way they wait for a server or a condition. Source it
# from the top of the tree (c-tests/sserver.sh, c-tests/nginx.sh and c-tests/servers/common.sh
# source it themselves); POSIX sh.
#
#   free_port                   a random TCP port that no socket uses now, below the range
#                               of outgoing connections' ports (a server started on it may
#                               still find it taken: the starters retry on another)
#   free_cluster_port           such a port whose Redis Cluster bus port (the port + 10000)
#                               is free too
#   port_used PORT              true if a socket uses TCP PORT (any state)
#   port_busy PORT              true if something listens on TCP PORT
#   wait_for SECONDS CMD…       runs CMD every 0.1 s (the first times sooner) until it
#                               succeeds: true then; false after SECONDS (decimals
#                               allowed), saying on stderr what it waited for
#   wait_port PORT [SECONDS]    until something listens on 127.0.0.1:PORT (default 10 s)
#   wait_redis PORT [SECONDS] [redis-cli options…]
#                               until the Redis on 127.0.0.1:PORT answers PING (default
#                               10 s; e.g. --tls --cacert FILE for a TLS port)
#   redis_stalled PORT [redis-cli options…]
#                               true if that Redis does not answer PING within 0.3 s
#
# (Their variables start with _pw_: callers' loops keep theirs.)

# _pw_socket PORT [STATE]: a socket on local TCP PORT (in STATE, /proc/net/tcp's hex code).
_pw_socket() {
    awk -v h="$(printf ':%04X' "$1")" -v st="${2:-}" '
        (st == "" || $4 == st) && substr($2, length($2) - 4) == h { f = 1 }
        END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
port_used() { _pw_socket "$1"; }
port_busy() { _pw_socket "$1" 0A; }   # 0A: LISTEN

# _pw_pick BUS: a random port from 20000 up to the kernel's range for outgoing connections
# (ip_local_port_range: no client's connection takes it while a server starts) that no
# socket uses; with BUS 10000, the port + 10000 too. One awk reads the sockets' local ports
# and the seed (processes are slow to start: this is called for every server).
_pw_pick() {
    read -r _pw_low _pw_rest </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || _pw_low=
    [ "${_pw_low:-0}" -gt 30000 ] 2>/dev/null || _pw_low=32768
    _pw_files=/proc/net/tcp; [ -r /proc/net/tcp6 ] && _pw_files="$_pw_files /proc/net/tcp6"
    # shellcheck disable=SC2086 # a list of files
    od -An -N4 -tu4 /dev/urandom | awk -v bus="$1" -v low="$_pw_low" '
        function hex(s,   i, n) {
            for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789ABCDEF", substr(s, i, 1)) - 1
            return n
        }
        FILENAME == "-" { seed = $1 % 2147483647; next }   # (mawk: one seed for all above)
        FNR > 1 { used[hex(substr($2, length($2) - 3))] = 1 }
        END {
            srand(seed)
            for (i = 0; i < 1000; i++) {
                p = 20000 + int(rand() * (low - 20000))
                if (!(p in used) && !((p + bus) in used)) { print p; exit 0 }
            }
            print "free_port: no free port found" > "/dev/stderr"; exit 1
        }' - $_pw_files
}
free_port() { _pw_pick 0; }
free_cluster_port() { _pw_pick 10000; }

# _pw_ms SECONDS: in milliseconds (SECONDS may have decimals).
_pw_ms() {
    _pw_s=${1%%.*}; _pw_d=${1#"$_pw_s"}; _pw_d=${_pw_d#.}000; _pw_d=${_pw_d%"${_pw_d#???}"}
    echo $(( ${_pw_s:-0} * 1000 + 1$_pw_d - 1000 ))
}
wait_for() {
    _pw_end=$(( $(date +%s%3N) + $(_pw_ms "$1") )); _pw_n=0
    shift
    until "$@"; do
        if [ "$(date +%s%3N)" -ge "$_pw_end" ]; then
            echo "# gave up waiting for: $*" >&2
            return 1
        fi
        # Quick looks first (a server is often up within 50 ms), then every 0.1 s.
        _pw_n=$((_pw_n + 1))
        if [ $_pw_n -le 5 ]; then sleep 0.02; else sleep 0.1; fi
    done
}

wait_port() { wait_for "${2:-10}" port_busy "$1"; }

# (A function, so that wait_for names what it waited for.)
redis_pong() {
    _pw_p=$1; shift
    [ "$("${REDIS_CLI:-redis-cli}" -h 127.0.0.1 -p "$_pw_p" "$@" PING 2>/dev/null)" = PONG ]
}
wait_redis() {
    _pw_port=$1; _pw_s=${2:-10}
    if [ $# -ge 2 ]; then shift 2; else shift; fi
    wait_for "$_pw_s" redis_pong "$_pw_port" "$@"
}
redis_stalled() {
    _pw_p=$1; shift
    [ "$(timeout 0.3 "${REDIS_CLI:-redis-cli}" -h 127.0.0.1 -p "$_pw_p" "$@" PING 2>/dev/null)" != PONG ]
}
