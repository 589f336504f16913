# Shell functions to run nginx (the system binary, Debian package `nginx`) on loopback with
# two workers, for c-tests/shm_servers.sh. Source it from the top of the tree; it sources
# c-tests/ports.sh (free_port, port_busy); POSIX sh.
#
#   ngx_start DIR [VAR=VAL…]              write DIR/nginx.conf and start nginx (master +
#                                         2 workers, reuseport) with env VAR=VAL… (e.g.
#                                         LD_PRELOAD=… SESSCACHE_URL=…) on a free
#                                         port; sets NGX_PORT, NGX_PID (the master) and
#                                         NGX_WORKERS (their pids)
#   ngx_stop                              graceful stop (SIGQUIT), wait for every process
#   ngx_get PORT URI ARGS…                one HTTPS GET with `openssl s_client ARGS…`; prints
#                                         "New|Reused TLSv1.x WORKERPID"
#   ngx_pairs DIR ROUNDS FIRST            ROUNDS rounds (numbered from FIRST) of: TLS 1.2
#                                         session made / resumed, TLS 1.3 ticket made /
#                                         resumed / replayed; logs each client result to
#                                         DIR/clients
#   ngx_analyse ACCESSLOG                 prints "workers cross_reused cross_new same_reused
#                                         same_new": for every session made and then offered,
#                                         whether the offer landed on another worker than the
#                                         one that made it, and whether it resumed
#
# NGX_SSL_SESSION_CACHE, when set, is the `ssl_session_cache` that ngx_conf writes (default
# `none`, what the tests use; c-tests/bench_servers.sh sets `shared:SSL:10m` for its
# baseline). NGX_SSL_SESSION_TICKETS, when set, is its `ssl_session_tickets` (default `off`:
# the cache resumes; c-tests/tickets_servers.sh sets `on`), and NGX_SSL_SESSION_TICKET_KEY,
# when set, a file for `ssl_session_ticket_key` (none by default: nginx's own random keys).
#
# DIR must be readable by the workers' user (nginx started as root switches its workers to
# `nobody`): ngx_start makes it 0755 and the stats file 0666. The workers inherit the cache
# that the master opened when it read its configuration (the shm: segment is 0600, root's,
# already mapped): they never open it themselves.

NGX_BIN=${NGX_BIN:-/usr/sbin/nginx}

. c-tests/ports.sh

ngx_conf() { # DIR PORT
    cat >"$1/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $1/nginx.pid;
error_log $1/error.log info;
# nginx clears its workers' environment (all but TZ); sesscache reads SESSCACHE_STATS when
# the master opens the cache, so every worker still writes its stats line at exit.

events {
    worker_connections 64;
}

http {
    log_format sesscache '\$pid \$ssl_protocol \$ssl_session_reused \$request_uri';
    access_log $1/access.log sesscache;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;

    server {
        listen 127.0.0.1:$2 ssl reuseport;
        ssl_certificate $1/cert.pem;
        ssl_certificate_key $1/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache ${NGX_SSL_SESSION_CACHE:-none};
        ssl_session_tickets ${NGX_SSL_SESSION_TICKETS:-off};${NGX_SSL_SESSION_TICKET_KEY:+
        ssl_session_ticket_key $NGX_SSL_SESSION_TICKET_KEY;}
        location / {
            return 200 "worker \$pid\n";
        }
    }
}
EOF
}

ngx_start() {
    _dir=$1; shift
    chmod 0755 "$_dir"
    : >"$_dir/stats"; chmod 0666 "$_dir/stats"
    _port=$(free_port)
    _tries=0
    while [ $_tries -lt 20 ]; do
        _tries=$((_tries + 1))
        if port_busy "$_port"; then _port=$(free_port); continue; fi
        ngx_conf "$_dir" "$_port"
        rm -f "$_dir/error.log" "$_dir/access.log" "$_dir/nginx.pid"
        env "$@" "$NGX_BIN" -e "$_dir/error.log" \
            -c "$_dir/nginx.conf" -p "$_dir" </dev/null >"$_dir/nginx.out" 2>&1 &
        NGX_PID=$!
        _waited=0
        while [ $_waited -lt 100 ]; do
            if ! kill -0 "$NGX_PID" 2>/dev/null; then break; fi
            NGX_WORKERS=$(sed -n 's/.*start worker process \([0-9][0-9]*\)$/\1/p' "$_dir/error.log" 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
            if [ "$(echo $NGX_WORKERS | wc -w)" -eq 2 ] &&
               timeout 5 openssl s_client -connect "127.0.0.1:$_port" -tls1_2 </dev/null 2>/dev/null |
                   grep -q '^New, TLSv1.2'; then
                NGX_PORT=$_port
                return 0
            fi
            sleep 0.1
            _waited=$((_waited + 1))
        done
        if kill -0 "$NGX_PID" 2>/dev/null; then
            echo "nginx did not come up in 10 s:" >&2
            ngx_stop
            cat "$_dir/nginx.out" "$_dir/error.log" >&2 2>/dev/null
            return 1
        fi
        wait "$NGX_PID" 2>/dev/null
        NGX_PID=
        # nginx retries a busy port for 2.5 s, then exits: try another one.
        grep -q 'bind() to .* failed' "$_dir/error.log" 2>/dev/null || break
        _port=$(free_port)
    done
    echo "could not start nginx:" >&2
    cat "$_dir/nginx.out" "$_dir/error.log" >&2 2>/dev/null
    return 1
}

# SIGQUIT: the workers finish their connections and exit, then the master (each one runs
# its atexit handlers, so each writes its SESSCACHE_STATS line). Anything still there
# after 10 s is killed.
ngx_stop() {
    [ -n "${NGX_PID:-}" ] || return 0
    kill -QUIT "$NGX_PID" 2>/dev/null
    _waited=0
    while kill -0 "$NGX_PID" 2>/dev/null && [ $_waited -lt 100 ]; do
        sleep 0.1
        _waited=$((_waited + 1))
    done
    _rc=0
    if kill -0 "$NGX_PID" 2>/dev/null; then kill -KILL "$NGX_PID" 2>/dev/null; _rc=1; fi
    wait "$NGX_PID" 2>/dev/null
    for _w in ${NGX_WORKERS:-}; do
        if kill -0 "$_w" 2>/dev/null; then kill -KILL "$_w" 2>/dev/null; _rc=1; fi
    done
    NGX_PID=; NGX_WORKERS=
    return $_rc
}

# HTTP/1.0: nginx closes the connection after its answer; -ign_eof makes s_client read
# until then (so it also reads the TLS 1.3 tickets, which come before the answer).
ngx_get() {
    _port=$1; _uri=$2; shift 2
    printf 'GET %s HTTP/1.0\r\n\r\n' "$_uri" |
        timeout 10 openssl s_client -connect "127.0.0.1:$_port" -ign_eof "$@" 2>/dev/null |
        sed -n -e 's/^\(New\|Reused\), \(TLSv[0-9.]*\),.*/\1 \2/p' -e 's/^worker \([0-9][0-9]*\)\r*$/\1/p' |
        tr '\n' ' ' | sed 's/ $//'
}

ngx_pairs() {
    _dir=$1; _i=$3; _end=$(($3 + $2))
    while [ $_i -lt $_end ]; do
        echo "t12-$_i-new $(ngx_get "$NGX_PORT" "/t12-$_i-new" -tls1_2 -sess_out "$_dir/s12-$_i.pem")"
        echo "t12-$_i-resume $(ngx_get "$NGX_PORT" "/t12-$_i-resume" -tls1_2 -sess_in "$_dir/s12-$_i.pem")"
        echo "t13-$_i-new $(ngx_get "$NGX_PORT" "/t13-$_i-new" -tls1_3 -sess_out "$_dir/t13-$_i.pem")"
        echo "t13-$_i-resume $(ngx_get "$NGX_PORT" "/t13-$_i-resume" -tls1_3 -sess_in "$_dir/t13-$_i.pem")"
        echo "t13-$_i-replay $(ngx_get "$NGX_PORT" "/t13-$_i-replay" -tls1_3 -sess_in "$_dir/t13-$_i.pem")"
        _i=$((_i + 1))
    done >>"$_dir/clients"
}

ngx_analyse() {
    awk '
        $4 ~ /^\/t1[23]-[0-9]+-(new|resume)$/ {
            split(substr($4, 2), a, "-"); k = a[1] "-" a[2]
            pid[k, a[3]] = $1; reused[k, a[3]] = $3; keys[k] = 1
        }
        { workers[$1] = 1 }
        END {
            n = 0; for (w in workers) n++
            cr = cn = sr = sn = 0
            for (k in keys) {
                if (!((k, "new") in pid) || !((k, "resume") in pid)) continue
                cross = pid[k, "new"] != pid[k, "resume"]; r = reused[k, "resume"] == "r"
                if (cross && r) cr++; else if (cross) cn++; else if (r) sr++; else sn++
            }
            print n, cr, cn, sr, sn
        }' "$1"
}

# ngx_pairs in batches of 10 until a session made on one worker was offered to the other
# (at most 30 rounds); sets ROUNDS and the ngx_analyse fields (workers cross_reused
# cross_new same_reused same_new).
ngx_pairs_cross() { # DIR
    _pdir=$1
    ROUNDS=0
    while :; do
        ngx_pairs "$_pdir" 10 "$ROUNDS"; ROUNDS=$((ROUNDS + 10))
        set -- $(ngx_analyse "$_pdir/access.log")
        workers=$1; cross_reused=$2; cross_new=$3; same_reused=$4; same_new=$5
        [ $((cross_reused + cross_new)) -gt 0 ] && [ "$workers" -ge 2 ] && break
        [ $ROUNDS -ge 30 ] && break
        echo "# no session was offered to the other worker in $ROUNDS rounds: 10 more"
    done
}
