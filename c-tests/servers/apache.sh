# Shell functions to run Apache httpd 2.4 (the system binary, Debian package `apache2`) on
# loopback with a generated configuration, for c-tests/servers.sh. Source it after
# c-tests/servers/common.sh (wait_tls, wait_gone; free_port from c-tests/ports.sh); POSIX sh.
#
#   apache_start DIR MPM CACHE [VAR=VAL…]  write DIR/httpd.conf and start httpd in the
#                                         foreground with env VAR=VAL…: MPM `prefork` (4
#                                         children) or `event` (2 children of 4 threads),
#                                         `SSLSessionCache CACHE` (`none`, or `shmcb` for
#                                         shmcb:DIR/scache); on a free port; DIR holds
#                                         cert.pem and key.pem. Sets APACHE_PORT and
#                                         APACHE_PID (the parent)
#   apache_stop                           SIGTERM to the parent, wait for it and its
#                                         children (killed after 10 s)
#
# APACHE_SESSION_TICKETS, when set (`on` or `off`), adds `SSLSessionTickets VALUE` to the
# configuration; unset, httpd's default (tickets on) stays, as the tests want it.
# c-tests/bench_servers.sh sets `off`, so that its session caches are what resumes.
# APACHE_TICKET_KEY_FILE, when set, adds `SSLSessionTicketKeyFile FILE` to the virtual host
# (48 bytes: key name, HMAC secret, AES key); c-tests/tickets_servers.sh sets it.
#
# Everything lives in DIR: ServerRoot, PidFile, ErrorLog (DIR/error.log, LogLevel warn),
# httpd's own stdout and stderr (DIR/stderr), the runtime dir, the document root with
# index.html. httpd started as root runs its children as www-data (or nobody), so DIR
# is made 0755. httpd runs in its own session (setsid): when it stops, it sends SIGTERM to
# its whole process group, which would otherwise be the caller's.

APACHE_BIN=${APACHE_BIN:-/usr/sbin/apache2}
APACHE_MODULES=${APACHE_MODULES:-/usr/lib/apache2/modules}

# (Its variables are global, as everything in POSIX sh: none may share a name with the
# caller's, which a retry reuses.)
apache_conf() { # DIR MPM CACHE PORT
    if [ "$3" = shmcb ]; then _cache_conf="shmcb:$1/scache(512000)"; else _cache_conf=$3; fi
    if getent passwd www-data >/dev/null 2>&1; then _user=www-data; _group=www-data; else _user=nobody; _group=nogroup; fi
    if [ "$2" = prefork ]; then
        _mpm_conf="StartServers 4
MinSpareServers 4
MaxSpareServers 8
ServerLimit 8
MaxRequestWorkers 8"
    else
        _mpm_conf="StartServers 2
ServerLimit 2
ThreadLimit 4
ThreadsPerChild 4
MinSpareThreads 4
MaxSpareThreads 8
MaxRequestWorkers 8"
    fi
    _tickets_conf=
    # (A line of its own when set; nothing at all otherwise.)
    [ -n "${APACHE_SESSION_TICKETS:-}" ] && _tickets_conf="
SSLSessionTickets $APACHE_SESSION_TICKETS"
    _keyfile_conf=
    [ -n "${APACHE_TICKET_KEY_FILE:-}" ] && _keyfile_conf="
    SSLSessionTicketKeyFile \"$APACHE_TICKET_KEY_FILE\""
    cat >"$1/httpd.conf" <<CONF
ServerRoot "$1"
DefaultRuntimeDir "$1/run"
PidFile "$1/httpd.pid"
ErrorLog "$1/error.log"
LogLevel warn
ServerName localhost
User $_user
Group $_group
LoadModule mpm_$2_module $APACHE_MODULES/mod_mpm_$2.so
LoadModule authz_core_module $APACHE_MODULES/mod_authz_core.so
LoadModule socache_shmcb_module $APACHE_MODULES/mod_socache_shmcb.so
LoadModule ssl_module $APACHE_MODULES/mod_ssl.so
$_mpm_conf
Listen 127.0.0.1:$4 https
DocumentRoot "$1/htdocs"
<Directory />
    Require all granted
</Directory>
Timeout 10
KeepAlive Off
SSLRandomSeed startup builtin
SSLRandomSeed connect builtin
SSLSessionCache $_cache_conf$_tickets_conf
<VirtualHost 127.0.0.1:$4>
    SSLEngine on
    SSLProtocol -all +TLSv1.2 +TLSv1.3
    SSLCertificateFile "$1/cert.pem"
    SSLCertificateKeyFile "$1/key.pem"$_keyfile_conf
</VirtualHost>
CONF
}

apache_start() {
    _dir=$1; _mpm=$2; _cache=$3; shift 3
    chmod 0755 "$_dir"
    mkdir -p "$_dir/run" "$_dir/htdocs"
    echo ok >"$_dir/htdocs/index.html"
    _port=$(free_port)
    _tries=0
    while [ $_tries -lt 3 ]; do
        _tries=$((_tries + 1))
        apache_conf "$_dir" "$_mpm" "$_cache" "$_port"
        rm -f "$_dir/httpd.pid"
        # Own session: at shutdown httpd signals its whole process group.
        setsid env "$@" "$APACHE_BIN" -d "$_dir" -f "$_dir/httpd.conf" -DFOREGROUND \
            </dev/null >>"$_dir/stderr" 2>&1 &
        APACHE_PID=$!
        if wait_tls "$_port" "$APACHE_PID"; then
            APACHE_PORT=$_port
            return 0
        fi
        if kill -0 "$APACHE_PID" 2>/dev/null; then
            echo "httpd did not answer in 10 s" >&2
            apache_stop
            break
        fi
        wait "$APACHE_PID" 2>/dev/null
        APACHE_PID=
        grep -q 'could not bind\|Address already in use' "$_dir/stderr" "$_dir/error.log" 2>/dev/null || break
        _port=$(free_port)
    done
    echo "could not start httpd:" >&2
    tail -n 20 "$_dir/stderr" "$_dir/error.log" >&2 2>/dev/null
    return 1
}

apache_stop() {
    [ -n "${APACHE_PID:-}" ] || return 0
    _children=$(ps -o pid= --ppid "$APACHE_PID" 2>/dev/null)
    kill -TERM "$APACHE_PID" 2>/dev/null
    _rc=0
    wait_gone "$APACHE_PID" 100 || _rc=1
    for _c in $_children; do
        if kill -0 "$_c" 2>/dev/null; then kill -KILL "$_c" 2>/dev/null; _rc=1; fi
    done
    APACHE_PID=
    return $_rc
}
