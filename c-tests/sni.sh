#!/bin/sh
# A resumed session belongs to its server name (sni_check, on by default): with
# libsesscache preloaded into unmodified servers, a session made for one name (SNI) is not
# resumed on a connection asking for another name, or for none; the same name resumes as
# before.
# a. `openssl s_server -servername a.test -cert2/-key2` (a servername callback that
#    accepts a.test, so that OpenSSL records the name in the session; b.test is answered
#    without a name), SESSCACHE_URL=shm:…, TLS 1.2 and TLS 1.3 with -no_ticket (session IDs
#    and stateful tickets, both through the get callback): a.test then a.test resumes,
#    `A.TEST.` too; a.test then b.test, and a.test then no name, are refused and counted
#    (sni_refused); with sni_check=0 the same cross-name resumption happens (the control:
#    these checks can fail); no name then and now resumes; no name then and a name now
#    resumes (a session without a name is never refused: see SECURITY.md); TLS 1.3: a
#    ticket issued on a resumed connection resumes again for a.test, not for b.test.
# b. nginx with two server_names sharing one certificate, `ssl_session_tickets off`
#    (session IDs), SESSCACHE_URL=shm:…: a.test then b.test is not resumed, a.test then
#    a.test is; without the library nginx's own cache (builtin) resumes across names (the
#    weakness this closes, measured).
# c. ECH (only with SNI_PARTS=ech and OpenSSL 4.0's openssl as SSERVER_OPENSSL, the library
#    built against it as SSERVER_LIB: c-tests/compat.sh runs it so): the inner name is the
#    one compared, whatever the outer name says.
# SNI_PARTS: the parts to run (default "sserver nginx"; compat.sh: "sserver" with each
# OpenSSL version's own s_server and s_client, "sserver ech" with 4.0's).
# Prints ok/FAIL lines and "sni: N passed, M failed"; exits non-zero on failure. Run from
# the top of the tree after `make lib cli`. Needs openssl and nginx (scripts/deps.sh).
set -u
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/sserver.sh
. c-tests/ports.sh
SUITE=sni
. c-tests/checks.sh
CLI=${CLI:-target/cli/release/sesscache}
lib=$SSERVER_LIB

dir=$(mktemp -d "${TMPDIR:-/tmp}/sni.XXXXXX") || { fail "mktemp"; finish; }
seg=sni-$$
PIDS=; NGX_PID=
cleanup() {
    for _p in $PIDS; do kill "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; done
    [ -n "${NGX_PID:-}" ] && ngx_down
    rm -rf "$dir"
    rm -f /dev/shm/sesscache-$seg*
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

for f in "$lib" "$CLI"; do
    [ -f "$f" ] || { fail "$f is missing: run 'make lib cli' first"; finish; }
done
command -v "$SSERVER_OPENSSL" >/dev/null || { fail "openssl is not installed (apt-get install openssl)"; finish; }


# start NAME [VAR=VAL…] -- [s_server options…]: an `openssl s_server -www` with the library
# preloaded, accepting a.test through a servername callback, on a free port; sets PORT.
start() {
    _n=$1; shift
    _env=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do _env="$_env $1"; shift; done
    [ $# -gt 0 ] && shift
    set -f   # (VAR=VAL words: a ? in a URL is no pattern)
    # shellcheck disable=SC2086
    set -- SESSCACHE_LOG=debug $_env -- -servername a.test -cert2 "$dir/cert.pem" -key2 "$dir/key.pem" "$@"
    set +f
    sserver_www "$dir" "$_n" "$@" || return 1
    PORT=$SSERVER_PORT; PIDS="$PIDS $SSERVER_PID"; eval "PID_$_n=$SSERVER_PID"
}
stop() {
    eval "_pid=\${PID_$1:-}"
    [ -n "$_pid" ] || return 0
    kill "$_pid" 2>/dev/null; wait "$_pid" 2>/dev/null
    eval "PID_$1="
}
conn() { sserver_connect "$@"; }
counter() { "$CLI" stats "$1" 2>>"$dir/cli.err" | sed -n "s/^$2 \([0-9]*\)$/\1/p"; }
# pair WANT TEXT PORT V FIRST… -- SECOND…: a session made by one connection (FIRST
# options), offered by a second (SECOND options); checks the second says WANT.
pair() {
    _want=$1; _text=$2; _p=$3; _v=$4; shift 4
    _first=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do _first="$_first $1"; shift; done
    shift
    # shellcheck disable=SC2086
    _c1=$(conn "$_p" -tls$_v $_first -sess_out "$dir/s.pem")
    _c2=$(conn "$_p" -tls$_v "$@" -sess_in "$dir/s.pem")
    _V=$(echo "$_v" | tr _ .)
    check "$_c1 $_c2" "New TLSv$_V $_want TLSv$_V" "$_text"
}

# One certificate for every name (the ECH part has the client verify it: -CAfile).
"$SSERVER_OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=a.test \
    -addext "subjectAltName=DNS:a.test,DNS:b.test,DNS:public.test" -days 2 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
# part NAME: whether SNI_PARTS (default "sserver nginx") asks for that part.
part() { case " ${SNI_PARTS:-sserver nginx} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---- a. s_server ----------------------------------------------------------------------
part sserver &&
for v in 1_2 1_3; do
    V=$(echo $v | tr _ .)
    url="shm:$seg-$v?size=1M"
    echo "# a. TLS $V, s_server -no_ticket, SESSCACHE_URL=$url"
    start s$v SESSCACHE_URL="$url" -- -no_ticket || { fail "a: TLS $V: s_server did not start"; continue; }
    P=$PORT
    pair Reused "a: TLS $V: a.test then a.test resumes" $P $v -servername a.test -- -servername a.test
    pair Reused "a: TLS $V: a.test then A.TEST. resumes (case and one trailing dot)" $P $v \
        -servername a.test -- -servername A.TEST.
    r0=$(counter "$url" sni_refused)
    pair New "a: TLS $V: a.test then b.test is refused" $P $v -servername a.test -- -servername b.test
    pair New "a: TLS $V: a.test then no name is refused" $P $v -servername a.test -- -noservername
    r1=$(counter "$url" sni_refused)
    check "$((r1 - r0))" 2 "a: TLS $V: both refusals counted in sni_refused ($r0 -> $r1)"
    if grep -q 'sni refused: session id#[0-9a-f]* was made for name#[0-9a-f]*, the connection asks for name#' "$dir/s$v.err"; then
        ok "a: TLS $V: the refusal is logged at debug, names as fingerprints"
    else
        fail "a: TLS $V: no 'sni refused' debug line"; show "$dir/s$v.err"
    fi
    if grep -q 'a\.test\|b\.test' "$dir/s$v.err"; then
        fail "a: TLS $V: a server name in clear in the library's log"
    else
        ok "a: TLS $V: no server name in clear in the library's log"
    fi
    pair Reused "a: TLS $V: no name then no name resumes" $P $v -noservername -- -noservername
    pair Reused "a: TLS $V: no name then a.test resumes (a session without a name is not refused)" \
        $P $v -noservername -- -servername a.test
    pair Reused "a: TLS $V: b.test (not acknowledged: no name recorded) then a.test resumes" \
        $P $v -servername b.test -- -servername a.test
    if [ $v = 1_3 ]; then
        # A ticket issued on a resumed connection carries the original name.
        c1=$(conn "$P" -tls1_3 -servername a.test -sess_out "$dir/t1.pem")
        c2=$(conn "$P" -tls1_3 -servername a.test -sess_in "$dir/t1.pem" -sess_out "$dir/t2.pem")
        c3=$(conn "$P" -tls1_3 -servername a.test -sess_in "$dir/t2.pem" -sess_out "$dir/t3.pem")
        c4=$(conn "$P" -tls1_3 -servername b.test -sess_in "$dir/t3.pem")
        check "$c1 $c2 $c3 $c4" "New TLSv1.3 Reused TLSv1.3 Reused TLSv1.3 New TLSv1.3" \
            "a: TLS 1.3: tickets issued on resumed connections resume for a.test, not for b.test"
    fi
    stop s$v
    # The control: the same server with sni_check=0 resumes across names.
    url0="shm:$seg-$v-off?size=1M&sni_check=0"
    start s${v}off SESSCACHE_URL="$url0" -- -no_ticket || { fail "a: TLS $V: s_server (sni_check=0) did not start"; continue; }
    pair Reused "a: TLS $V: sni_check=0: a.test then b.test resumes (the control)" $PORT $v \
        -servername a.test -- -servername b.test
    check "$(counter "$url0" sni_refused)" 0 "a: TLS $V: sni_check=0: nothing counted"
    stop s${v}off
done

# ---- b. nginx -------------------------------------------------------------------------
NGX_BIN=${NGX_BIN:-/usr/sbin/nginx}
# ngx_up CACHE [VAR=VAL…]: nginx (one worker) with servers a.test and b.test on one port,
# one certificate for both, `ssl_session_cache CACHE`, no tickets; sets NGX_PORT.
ngx_up() {
    _cache=$1; shift
    n=$dir/ngx; rm -rf "$n"; mkdir -p "$n"; chmod 0755 "$dir" "$n"
    cp "$dir/cert.pem" "$dir/key.pem" "$n/"
    _tries=0
    while [ $_tries -lt 5 ]; do
        _tries=$((_tries + 1))
        NGX_PORT=$(free_port)
        cat >"$n/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $n/nginx.pid;
error_log $n/error.log info;
events { worker_connections 64; }
http {
    access_log $n/access.log;
    client_body_temp_path $n/client_body;
    proxy_temp_path $n/proxy;
    fastcgi_temp_path $n/fastcgi;
    uwsgi_temp_path $n/uwsgi;
    scgi_temp_path $n/scgi;
    ssl_certificate $n/cert.pem;
    ssl_certificate_key $n/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache $_cache;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:$NGX_PORT ssl;
        server_name a.test;
        location / { return 200 "server a.test\n"; }
    }
    server {
        listen 127.0.0.1:$NGX_PORT ssl;
        server_name b.test;
        location / { return 200 "server b.test\n"; }
    }
}
EOF
        env "$@" "$NGX_BIN" -e "$n/error.log" -c "$n/nginx.conf" -p "$n" </dev/null >"$n/nginx.out" 2>&1 &
        NGX_PID=$!
        _w=0
        while [ $_w -lt 100 ] && kill -0 "$NGX_PID" 2>/dev/null; do
            if timeout 5 "$SSERVER_OPENSSL" s_client -connect "127.0.0.1:$NGX_PORT" -tls1_2 </dev/null 2>/dev/null |
                grep -q '^New, TLSv1.2'; then
                return 0
            fi
            sleep 0.1; _w=$((_w + 1))
        done
        ngx_down
    done
    echo "# could not start nginx:"; show "$n/nginx.out" "$n/error.log"
    return 1
}
ngx_down() {
    [ -n "$NGX_PID" ] || return 0
    kill -QUIT "$NGX_PID" 2>/dev/null
    _w=0
    while kill -0 "$NGX_PID" 2>/dev/null && [ $_w -lt 100 ]; do sleep 0.1; _w=$((_w + 1)); done
    kill -KILL "$NGX_PID" 2>/dev/null
    wait "$NGX_PID" 2>/dev/null
    NGX_PID=
}
# get NAME ARGS…: one HTTPS GET of https://NAME/ (NAME as SNI and Host); prints
# "New|Reused TLSv1.x SERVER" (SERVER: the server_name that answered).
get() {
    _h=$1; shift
    printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$_h" |
        timeout 10 "$SSERVER_OPENSSL" s_client -connect "127.0.0.1:$NGX_PORT" -servername "$_h" -ign_eof "$@" 2>/dev/null |
        sed -n -e 's/^\(New\|Reused\), \(TLSv[0-9.]*\),.*/\1 \2/p' -e 's/^server \([a-z.]*\)\r*$/\1/p' |
        tr '\n' ' ' | sed 's/ $//'
}
# cross V: a session made for a.test offered for a.test, then one made for a.test offered
# for b.test; prints the four results, ';'-separated.
cross() {
    _a=$(get a.test -tls$1 -sess_out "$dir/n.pem")
    _b=$(get a.test -tls$1 -sess_in "$dir/n.pem")
    _c=$(get a.test -tls$1 -sess_out "$dir/n.pem")
    _d=$(get b.test -tls$1 -sess_in "$dir/n.pem")
    echo "$_a;$_b;$_c;$_d"
}
if ! part nginx; then
    :
elif [ -x "$NGX_BIN" ]; then
    for v in 1_2 1_3; do
        V=$(echo $v | tr _ .)
        same="New TLSv$V a.test;Reused TLSv$V a.test"
        # Without the library: nginx's own cache (one worker) resumes a.test's session for b.test.
        if ngx_up builtin; then
            check "$(cross $v)" "$same;New TLSv$V a.test;Reused TLSv$V b.test" \
                "b: TLS $V: nginx without the library (ssl_session_cache builtin) resumes a.test's session for b.test (the weakness)"
            ngx_down
        else fail "b: TLS $V: nginx (builtin) did not start"; fi
        url="shm:$seg-ngx-$v?size=1M"
        if ngx_up none LD_PRELOAD="$lib" SESSCACHE_URL="$url"; then
            check "$(cross $v)" "$same;New TLSv$V a.test;New TLSv$V b.test" \
                "b: TLS $V: nginx with the library: a.test resumes, a.test's session is not resumed for b.test"
            check "$(counter "$url" sni_refused)" 1 "b: TLS $V: nginx with the library: one sni_refused"
            ngx_down
        else fail "b: TLS $V: nginx (library) did not start"; fi
        url0="shm:$seg-ngx-$v-off?size=1M&sni_check=0"
        if ngx_up none LD_PRELOAD="$lib" SESSCACHE_URL="$url0"; then
            check "$(cross $v)" "$same;New TLSv$V a.test;Reused TLSv$V b.test" \
                "b: TLS $V: nginx with the library and sni_check=0 resumes across names (the control)"
            ngx_down
        else fail "b: TLS $V: nginx (sni_check=0) did not start"; fi
    done
else
    fail "nginx is not installed (apt-get install nginx; scripts/deps.sh)"
fi

# ---- c. ECH (OpenSSL 4.0's s_server and s_client; SNI_PARTS=ech) ----------------------
# The name compared is the inner ClientHello's: a session made for a.test (inner) resumes
# for a.test whatever the outer name says, and is refused for b.test even when the outer
# name is a.test.
if part ech; then
    if "$SSERVER_OPENSSL" ech -public_name public.test -out "$dir/ech.pem" >/dev/null 2>&1; then
        ecl=$(sed -n '/BEGIN ECHCONFIG/,/END ECHCONFIG/p' "$dir/ech.pem" | grep -v -- ----- | tr -d '\n')
        url="shm:$seg-ech?size=1M"
        if start ech SESSCACHE_URL="$url" -- -no_ticket -tls1_3 -ech_key "$dir/ech.pem"; then
            P=$PORT
            # ech ARGS…: one ECH connection; prints "New|Reused TLSv1.3 STATUS" (s_client's
            # "ECH: success: 1 inner: NAME outer: NAME" line: the client verified the server).
            ech() {
                (_w=0; while [ ! -s "$dir/e-out.pem" ] && [ $_w -lt 50 ]; do sleep 0.1; _w=$((_w + 1)); done) |
                    timeout 10 "$SSERVER_OPENSSL" s_client -connect "127.0.0.1:$P" -tls1_3 \
                        -CAfile "$dir/cert.pem" -ech_config_list "$ecl" "$@" -sess_out "$dir/e-out.pem" 2>/dev/null |
                    sed -n -e 's/^\(New\|Reused\), \(TLSv[0-9.]*\),.*/\1 \2/p' -e 's/^ECH: \(.*\)$/\1/p' |
                    tr '\n' ' ' | sed 's/ $//'
                mv "$dir/e-out.pem" "$dir/e.pem" 2>/dev/null
            }
            check "$(ech -servername a.test)" "New TLSv1.3 success: 1 inner: a.test outer: public.test" "c: ECH: a first connection to a.test (inner), public.test (outer)"
            check "$(ech -servername a.test -sess_in "$dir/e.pem")" "Reused TLSv1.3 success: 1 inner: a.test outer: public.test" \
                "c: ECH: a.test's session resumes for a.test (inner), public.test (outer)"
            check "$(ech -servername a.test -ech_outer_sni b.test -sess_in "$dir/e.pem")" "Reused TLSv1.3 success: 1 inner: a.test outer: b.test" \
                "c: ECH: and for a.test (inner), b.test (outer)"
            check "$(ech -servername b.test -ech_outer_sni a.test -sess_in "$dir/e.pem")" "New TLSv1.3 success: 1 inner: b.test outer: a.test" \
                "c: ECH: not for b.test (inner), a.test (outer)"
            check "$(counter "$url" sni_refused)" 1 "c: ECH: one sni_refused"
            stop ech
        else fail "c: ECH: s_server -ech_key did not start"; fi
    else
        fail "c: ECH: $SSERVER_OPENSSL has no ECH ('openssl ech' failed): run this part with OpenSSL 4.0's"
    fi
fi

finish
