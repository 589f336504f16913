#!/bin/sh
# TLS to Redis (rediss://, tls=1), against redis-servers this script starts itself with
# certificates it makes (a CA, another CA, a server certificate for redis.test and
# 127.0.0.1, an expired one, a client certificate):
# a. `sesscache check` connects and verifies: by IP address, by name (tls_name); refused,
#    each with its own message, for a wrong CA, a wrong name, an expired certificate and
#    the system's CA store (which does not hold the test's CA); a file that cannot be used
#    is an error at open naming it; never a fallback to plain TCP (rediss:// to a plain
#    port fails, redis:// to a TLS port fails);
# b. mutual TLS (tls-auth-clients yes) with requirepass: refused without a client
#    certificate, answered with one; the password travels inside TLS;
# c. two preloaded `openssl s_server` hosts resume each other's sessions through rediss://;
#    the library's own TLS connections are left alone by its interposed functions (one
#    context attached per host: the server's), and the Redis server saw TLS clients only;
# d. a TLS port that accepts and never answers: a host's handshakes still complete, each
#    within the lookup budget plus a margin (the handshake to Redis is bounded);
# e. a Redis Cluster of three nodes over TLS (tls-cluster yes): redis+cluster://…&tls=1,
#    cross-host resumption;
# f. a Sentinel over TLS (tls-replication yes) watching the TLS primary:
#    redis+sentinel://…&tls=1 verifies the Sentinel's certificate and the primary's,
#    refuses another CA, and two hosts resume each other's sessions through it.
# REDIS_TLS_ONLY=hosts: c and d only (c-tests/compat.sh runs them with each OpenSSL's own
# s_server, SSERVER_OPENSSL, and library, SSERVER_LIB).
# Prints ok/FAIL lines and "redis-tls: N passed, M failed". Run from the top of the tree
# after `make lib cli`. Needs redis-server and redis-cli built with TLS (Debian's are).
set -u
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/sserver.sh
. c-tests/ports.sh
SUITE=redis-tls
. c-tests/checks.sh
CLI=${CLI:-target/cli/release/sesscache}
lib=$SSERVER_LIB
REDIS_SERVER=$(command -v redis-server || true)
REDIS_CLI=$(command -v redis-cli || true)
if [ -z "$REDIS_SERVER" ] || [ -z "$REDIS_CLI" ]; then
    fail "redis-server and redis-cli are required (apt-get install redis-server redis-tools)"
    finish
fi
[ -f "$lib" ] || { fail "$lib is missing: run 'make lib' first"; finish; }
[ "${REDIS_TLS_ONLY:-}" = hosts ] || [ -x "$CLI" ] || { fail "$CLI is missing: run 'make cli' first"; finish; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/redis-tls.XXXXXX") || { fail "mktemp"; finish; }
chmod 0755 "$dir"
# shellcheck disable=SC2034 # S1 and S2: sserver_two's, stopped by sserver_cleanup
PIDS= S1= S2=
cleanup() {
    sserver_cleanup
    for _p in $PIDS; do kill -9 "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP


# ---- certificates -----------------------------------------------------------------------
c=$dir/pki
mkdir "$c"
mkcerts() {
    (
    cd "$c" || exit 1
    ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    openssl req -x509 $ec -keyout ca.key -out ca.crt -days 2 -subj /CN=sesscache-test-ca &&
    openssl req -x509 $ec -keyout other.key -out other.crt -days 2 -subj /CN=another-ca &&
    openssl req $ec -keyout srv.key -out srv.csr -subj /CN=redis.test &&
    printf 'subjectAltName=DNS:redis.test,IP:127.0.0.1\n' >srv.ext &&
    openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt \
        -days 2 -extfile srv.ext &&
    openssl req $ec -keyout cli.key -out cli.csr -subj /CN=sesscache-client &&
    printf 'extendedKeyUsage=clientAuth\n' >cli.ext &&
    openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out cli.crt \
        -days 2 -extfile cli.ext &&
    mkdir newcerts && : >index.txt && echo 1000 >serial &&
    cat >ca.cnf <<EOF &&
[ca]
default_ca = d
[d]
dir = .
database = index.txt
new_certs_dir = newcerts
serial = serial
default_md = sha256
policy = p
copy_extensions = copy
[p]
commonName = supplied
EOF
    openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in srv.csr -out old.crt \
        -startdate 20200101000000Z -enddate 20200102000000Z -extfile srv.ext &&
    chmod 0600 cli.key srv.key
    ) >"$dir/pki.log" 2>&1
}
if ! mkcerts; then fail "openssl could not make the test's certificates"; show "$dir/pki.log"; finish; fi

# redis_tls NAME [options…]: a Redis with a TLS port only (its certificate srv.crt unless
# the options say otherwise); sets PORT_<NAME>.
redis_tls() {
    _name=$1; shift
    _port=$(free_port)
    mkdir -p "$dir/$_name"
    "$REDIS_SERVER" --port 0 --tls-port "$_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir/$_name" --tls-ca-cert-file "$c/ca.crt" --tls-cert-file "$c/srv.crt" \
        --tls-key-file "$c/srv.key" --tls-auth-clients no "$@" >"$dir/$_name/log" 2>&1 &
    PIDS="$PIDS $!"
    eval "PORT_$_name=$_port"
    wait_for 5 grep -q 'Ready to accept' "$dir/$_name/log" 2>/dev/null && return 0
    echo "# redis-server $_name did not start:"; tail -n 5 "$dir/$_name/log"
    return 1
}
tcli() { _p=$1; shift; "$REDIS_CLI" --tls --cacert "$c/ca.crt" -h 127.0.0.1 -p "$_p" "$@"; }
# tkeys_ge PREFIX N PORT…: at least N keys under PREFIX on the TLS Redis servers on PORT…
tkeys_ge() {
    _pre=$1; _n=$2; shift 2
    [ "$(for _p in "$@"; do tcli "$_p" --scan --pattern "$_pre*" 2>/dev/null; done | grep -vc stats)" -ge "$_n" ]
}

redis_tls main || { fail "a redis-server with a TLS port did not start"; finish; }
redis_tls expired --tls-cert-file "$c/old.crt" || fail "redis-server (expired certificate)"
redis_tls mutual --tls-auth-clients yes --requirepass tls-test-pass || fail "redis-server (mutual TLS)"
PLAIN=$(free_port)
"$REDIS_SERVER" --port "$PLAIN" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    >"$dir/plain.log" 2>&1 &
PIDS="$PIDS $!"
echo "# $("$REDIS_SERVER" --version | cut -d' ' -f1-3): TLS ports $PORT_main (CA ca.crt), $PORT_expired (expired certificate), $PORT_mutual (mutual TLS); plain port $PLAIN"
wait_redis "$PLAIN" 5 || { echo "# the plain redis-server did not start:"; tail -n 5 "$dir/plain.log"; }

# check_url NAME URL: `sesscache check URL`; its status in RC, its output in $dir/NAME.out.
check_url() {
    timeout 20 "$CLI" check "$2" >"$dir/$1.out" 2>&1
    RC=$?
}
# refused NAME URL TEXT WHAT: `check` fails and says TEXT.
refused() {
    check_url "$1" "$2"
    if [ "$RC" -ne 0 ] && grep -qF "$3" "$dir/$1.out"; then ok "$4: refused, saying '$3'"
    else fail "$4: want a failure saying '$3' (status $RC)"; show "$dir/$1.out"; fi
}
# A generous lookup budget: `check` waits for the connection (TLS handshakes included) within it.
seal="insecure_plaintext=1&timeout_ms=2000"
# cross_hosts NAME URL WHAT PORT…: two preloaded s_server hosts on URL; a TLS 1.2 session
# made on host 1 resumes on host 2 (once its key is on one of the TLS Redis servers on
# PORT…) and again on host 1, and the hosts count no error.
cross_hosts() {
    _cn=$1; _cu=$2; _cw=$3; shift 3
    _cpre=$(echo "$_cu" | sed -n 's/.*[?&]prefix=\([^&]*\).*/\1/p')
    if sserver_two "$dir" "$dir/cert" 2 1 SESSCACHE_URL="$_cu" SESSCACHE_STATS="$dir/$_cn.stats"; then
        _r1=$(sserver_connect "$P1" -tls1_2 -sess_out "$dir/$_cn-12.pem")
        wait_for 5 tkeys_ge "$_cpre" 1 "$@"
        _r2=$(sserver_connect "$P2" -tls1_2 -sess_in "$dir/$_cn-12.pem")
        _r3=$(sserver_connect "$P1" -tls1_2 -sess_in "$dir/$_cn-12.pem")
        sserver_two_wait
        check "$_r1 / $_r2 / $_r3" "New TLSv1.2 / Reused TLSv1.2 / Reused TLSv1.2" \
            "cross-host resumption through $_cw"
        _errs=$(grep '^sesscache stats ' "$dir/$_cn.stats" | grep -vc ' errors=0 .* net_errors=0 timeouts=0 ')
        check "$_errs" 0 "the hosts counted no error through $_cw"
    else
        fail "the preloaded hosts did not start ($_cw)"
    fi
}
CA="tls_ca_file=$c/ca.crt"

if [ "${REDIS_TLS_ONLY:-}" != hosts ]; then
# ---- a. verification ---------------------------------------------------------------------
echo "# a. verification"
check_url a1 "rediss://127.0.0.1:$PORT_main?$CA&$seal"
if [ "$RC" -eq 0 ]; then ok "rediss:// by IP address, the test's CA: connected and verified"
else fail "rediss:// by IP address: status $RC"; show "$dir/a1.out"; fi
check_url a2 "rediss://localhost:$PORT_main?$CA&tls_name=redis.test&$seal"
if [ "$RC" -eq 0 ]; then ok "rediss:// to localhost with tls_name=redis.test: verified for that name"
else fail "tls_name=redis.test: status $RC"; show "$dir/a2.out"; fi
check_url a3 "redis://127.0.0.1:$PORT_main?tls=1&$CA&$seal"
if [ "$RC" -eq 0 ]; then ok "redis://…?tls=1 is rediss://"; else fail "tls=1: status $RC"; show "$dir/a3.out"; fi
# The server sends its CA with its certificate (OpenSSL builds the chain from its store):
# the chain ends at a self-signed certificate the client does not trust.
refused a4 "rediss://127.0.0.1:$PORT_main?tls_ca_file=$c/other.crt&$seal" \
    "self-signed certificate in certificate chain (check tls_ca_file)" "another CA"
refused a5 "rediss://localhost:$PORT_main?$CA&$seal" "hostname mismatch (check tls_name)" \
    "a name the certificate is not for (localhost)"
refused a6 "rediss://127.0.0.1:$PORT_main?$CA&tls_name=other.test&$seal" \
    "hostname mismatch" "tls_name=other.test"
refused a7 "rediss://127.0.0.1:$PORT_expired?$CA&$seal" "certificate has expired" \
    "an expired certificate"
refused a8 "rediss://127.0.0.1:$PORT_main?$seal" "the server's certificate was refused" \
    "the system's CA store (without the test's CA)"
refused a9 "rediss://127.0.0.1:$PORT_main?tls_ca_file=$dir/none.crt&$seal" \
    "tls_ca_file '$dir/none.crt': No such file" "a CA file that does not exist: an error at open"
printf 'not a certificate\n' >"$dir/junk.crt"
refused a10 "rediss://127.0.0.1:$PORT_main?tls_ca_file=$dir/junk.crt&$seal" \
    "tls_ca_file '$dir/junk.crt'" "a CA file without a certificate"
# A plain Redis reads the ClientHello as the start of a command and waits for its end:
# the handshake runs out of time.
refused a11 "rediss://127.0.0.1:$PLAIN?$CA&$seal" "did not answer in time" \
    "rediss:// to a plain port (no fallback)"
check_url a12 "redis://127.0.0.1:$PORT_main?$seal"
if [ "$RC" -ne 0 ]; then ok "redis:// (plain) to the TLS port fails: nothing is sent in clear where TLS is expected"
else fail "redis:// to a TLS port answered"; fi
refused a13 "redis://127.0.0.1:$PORT_main?tls_name=x.test&$seal" "tls_name is a TLS setting" \
    "a TLS parameter without TLS"

# ---- b. mutual TLS -----------------------------------------------------------------------
echo "# b. mutual TLS (tls-auth-clients yes) and requirepass"
export SC_TLS_PASS=tls-test-pass
mt="rediss://127.0.0.1:$PORT_mutual?$CA&password_env=SC_TLS_PASS&$seal"
check_url b1 "$mt"
if [ "$RC" -ne 0 ]; then ok "mutual TLS without a client certificate: refused"; else fail "no client certificate, yet answered"; fi
note <"$dir/b1.out"
check_url b2 "$mt&tls_cert_file=$c/cli.crt&tls_key_file=$c/cli.key"
if [ "$RC" -eq 0 ]; then ok "mutual TLS with the client certificate, and the password: answered"
else fail "mutual TLS with a client certificate: status $RC"; show "$dir/b2.out"; fi
refused b3 "$mt&tls_cert_file=$c/cli.crt&tls_key_file=$c/srv.key" "is not the key of tls_cert_file" \
    "a key that is not the certificate's"
chmod 0644 "$c/cli.key"
refused b4 "$mt&tls_cert_file=$c/cli.crt&tls_key_file=$c/cli.key" "tls_key_file '$c/cli.key'" \
    "a client key readable by others"
chmod 0600 "$c/cli.key"
SC_TLS_PASS=wrong check_url b5 "$mt&tls_cert_file=$c/cli.crt&tls_key_file=$c/cli.key"
if [ "$RC" -ne 0 ] && grep -q "authentication failed" "$dir/b5.out" && ! grep -q wrong "$dir/b5.out"; then
    ok "a wrong password over TLS: 'authentication failed', the password not shown"
else fail "wrong password over TLS"; show "$dir/b5.out"; fi

fi  # a and b
# ---- c. two preloaded hosts --------------------------------------------------------------
echo "# c. two s_server hosts through rediss://"
mkdir "$dir/cert"
sserver_cert "$dir/cert" || fail "openssl could not make the servers' certificate"
(umask 077; openssl rand -hex 32 >"$dir/k")
pre=c$$:
url="rediss://127.0.0.1:$PORT_main?$CA&tls_name=redis.test&key_file=$dir/k&prefix=$pre&timeout_ms=500"
if sserver_two "$dir" "$dir/cert" 2 1 SESSCACHE_URL="$url" SESSCACHE_LOG=debug SESSCACHE_STATS="$dir/c.stats"; then
    r1=$(sserver_connect "$P1" -tls1_2 -sess_out "$dir/s12.pem")
    wait_for 5 tkeys_ge "$pre" 1 "$PORT_main"
    r2=$(sserver_connect "$P2" -tls1_2 -sess_in "$dir/s12.pem")
    r3=$(sserver_connect "$P1" -tls1_2 -sess_in "$dir/s12.pem")
    sserver_two_wait
    check "$r1 / $r2 / $r3" "New TLSv1.2 / Reused TLSv1.2 / Reused TLSv1.2" \
        "a session made on host 1 resumes on host 2, through Redis over TLS"
    n=$(grep -c 'attach: SSL_CTX' "$dir/s1/server.err" "$dir/s2/server.err" | awk -F: '{s += $2} END {print s + 0}')
    check "$n" 2 "one context attached per host (the server's): the library's own TLS client contexts are left alone"
    if grep -q 'cannot connect\|TLS' "$dir/s1/server.err" "$dir/s2/server.err"; then
        fail "a host logged a connection problem"; show "$dir/s1/server.err"
    else ok "no connection problem in the hosts' logs"; fi
    errs=$(grep '^sesscache stats ' "$dir/c.stats" | grep -vc ' errors=0 .* net_errors=0 timeouts=0 ')
    check "$errs" 0 "the hosts counted no error, network error or timeout"
else
    fail "the preloaded s_server hosts did not start"; show "$dir/s1/server.err" "$dir/s2/server.err"
fi
clients=$(tcli "$PORT_main" CLIENT LIST 2>/dev/null | wc -l)
[ "$clients" -ge 1 ] && ok "the Redis server answers over TLS after the hosts left ($clients clients)" ||
    fail "the TLS Redis did not answer CLIENT LIST"

# ---- d. a TLS port that never answers ----------------------------------------------------
echo "# d. a stalled TLS server: handshakes bounded by the lookup budget"
STALL=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64); held = []
while True:
    c, _ = s.accept(); held.append(c)' "$STALL" &
PIDS="$PIDS $!"
wait_port "$STALL" 5 || fail "the stalled TLS server (python3) did not listen"
url="rediss://127.0.0.1:$STALL?$CA&key_file=$dir/k&prefix=d$$:&timeout_ms=200"
if sserver_start "$dir/cert" 3 SESSCACHE_URL="$url"; then
    S1=$SSERVER_PID
    worst=0; res=
    for i in 1 2 3; do
        t0=$(date +%s%3N)
        r=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$dir/d.pem")
        t=$(( $(date +%s%3N) - t0 )); [ $t -gt $worst ] && worst=$t
        res="$res${res:+ / }$r"
    done
    sserver_wait "$S1"; S1=
    check "$res" "New TLSv1.2 / New TLSv1.2 / New TLSv1.2" "every handshake completes while the TLS Redis stalls"
    # s_client's own start and the handshake take ~100 ms here; the library's share is the
    # lookup budget (200 ms) at most, and here no lookup happens (new sessions only): the
    # writer's stalled connect is in the background.
    if [ "$worst" -lt 1500 ]; then ok "the slowest handshake took ${worst} ms (< 1500 ms)"
    else fail "a handshake took ${worst} ms while the TLS Redis stalled"; fi
else
    fail "s_server with a stalled TLS Redis did not start"
fi

if [ "${REDIS_TLS_ONLY:-}" != hosts ]; then
# ---- e. a cluster over TLS ---------------------------------------------------------------
echo "# e. a Redis Cluster of three nodes over TLS"
ports=
for n in 1 2 3; do
    p=$(free_cluster_port)
    mkdir -p "$dir/n$n"
    "$REDIS_SERVER" --port 0 --tls-port "$p" --tls-cluster yes --tls-replication yes \
        --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/n$n" --cluster-enabled yes \
        --cluster-config-file "$dir/n$n/nodes.conf" --tls-ca-cert-file "$c/ca.crt" \
        --tls-cert-file "$c/srv.crt" --tls-key-file "$c/srv.key" --tls-auth-clients no \
        >"$dir/n$n/log" 2>&1 &
    PIDS="$PIDS $!"
    ports="$ports $p"
done
for p in $ports; do
    wait_redis "$p" 5 --tls --cacert "$c/ca.crt" || { echo "# cluster node $p did not start:"; tail -n 5 "$dir"/n*/log; }
done
nodes=; for p in $ports; do nodes="$nodes 127.0.0.1:$p"; done
if "$REDIS_CLI" --tls --cacert "$c/ca.crt" --cluster create $nodes --cluster-yes >"$dir/cluster.log" 2>&1; then
    # Every node says the cluster is up (each learns it on its own).
    tcluster_ok() { tcli "$1" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok'; }
    for p in $ports; do wait_for 10 tcluster_ok "$p"; done
    seeds=; for p in $ports; do seeds="$seeds${seeds:+,}127.0.0.1:$p"; done
    url="redis+cluster://$seeds?tls=1&$CA&key_file=$dir/k&prefix=e$$:&timeout_ms=500"
    check_url e1 "$url"
    if [ "$RC" -eq 0 ]; then ok "redis+cluster:// with tls=1: the cluster answered"
    else fail "redis+cluster:// over TLS: status $RC"; show "$dir/e1.out"; fi
    refused e2 "redis+cluster://$seeds?tls=1&tls_ca_file=$c/other.crt&$seal" \
        "the server's certificate was refused: self-signed certificate in certificate chain" \
        "a cluster node's certificate from another CA"
    # shellcheck disable=SC2086 # a list of ports
    cross_hosts e "$url" "a TLS cluster" $ports
else
    fail "redis-cli --cluster create over TLS failed"; show "$dir/cluster.log"
fi


# ---- f. a Sentinel over TLS --------------------------------------------------------------
echo "# f. a Sentinel over TLS, watching the TLS primary"
SP=$(free_port)
mkdir -p "$dir/sentinel"
cat >"$dir/sentinel/sentinel.conf" <<EOF
port 0
tls-port $SP
bind 127.0.0.1
daemonize no
dir $dir/sentinel
tls-cert-file $c/srv.crt
tls-key-file $c/srv.key
tls-ca-cert-file $c/ca.crt
tls-auth-clients no
tls-replication yes
sentinel monitor tlsm 127.0.0.1 $PORT_main 1
EOF
"$REDIS_SERVER" "$dir/sentinel/sentinel.conf" --sentinel >"$dir/sentinel/log" 2>&1 &
PIDS="$PIDS $!"
sentinel_knows() { tcli "$SP" SENTINEL get-master-addr-by-name tlsm 2>/dev/null | grep -q "$PORT_main"; }
wait_for 5 sentinel_knows
surl="redis+sentinel://127.0.0.1:$SP/tlsm?tls=1&$CA"
check_url f1 "$surl&$seal"
if [ "$RC" -eq 0 ]; then ok "redis+sentinel:// with tls=1: the Sentinel and the primary it names, both over TLS, verified"
else fail "redis+sentinel:// over TLS: status $RC"; show "$dir/f1.out" "$dir/sentinel/log"; fi
refused f2 "redis+sentinel://127.0.0.1:$SP/tlsm?tls=1&tls_ca_file=$c/other.crt&$seal" \
    "the server's certificate was refused" "a Sentinel's certificate from another CA"
check_url f3 "redis+sentinel://127.0.0.1:$SP/tlsm?$seal"
if [ "$RC" -ne 0 ]; then ok "redis+sentinel:// without tls=1 to a TLS Sentinel fails (no plain fallback)"
else fail "a plain connection to a TLS Sentinel answered"; fi
cross_hosts f "$surl&key_file=$dir/k&prefix=f$$:&timeout_ms=500" "a Sentinel and a primary over TLS" "$PORT_main"
fi  # e and f
finish
