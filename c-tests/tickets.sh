#!/bin/sh
# Shared ticket keys (tickets=shared) between real server processes, with libsesscache
# preloaded into unmodified `openssl s_server`s (stateless tickets, TLS 1.2 and 1.3):
# a. shm: a ticket issued by one server resumes on another, and on a server restarted in
#    between; the ticket's first 16 bytes are the name of a generation that
#    `sesscache tickets` lists; without the library the same tickets do not resume across
#    servers (the baseline: the checks can fail);
# b. shm: a key record altered in the segment is refused (the tool says REFUSED, a server
#    counts an error) and its tickets no longer resume; `sesscache tickets revoke` drops
#    every older key;
# c. redis://, two hosts (each its own connection, one Redis the test starts): each resumes
#    the other's tickets; the records in Redis are sealed (no key name in clear);
# d. rotation with a short period: a ticket of generation N resumes during N+1 (and is
#    renewed under the newer key), and is refused once its decryption window ends;
# e. Redis killed: full handshakes complete, tickets keep resuming on the keys held; Redis
#    down when a host starts: its own key serves (said once), the shared keys once Redis is
#    back (said once);
# f. a key record altered in Redis is refused and counted.
# (That a host whose refresh is late issues only tickets the others open is checked by the
# unit test cache::tickets::tests::a_process_whose_refresh_is_late_issues_only_tickets_the_others_open.)
# Prints ok/FAIL lines and "tickets: N passed, M failed"; exits non-zero on failure. Run
# from the top of the tree after `make lib cli`. Needs redis-server and redis-cli.
# TICKETS_ONLY=shm: part a only (c-tests/compat.sh runs it with each OpenSSL version's own
# s_server: SSERVER_OPENSSL, SSERVER_LIB).
set -u
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/sserver.sh
. c-tests/ports.sh
SUITE=tickets
. c-tests/checks.sh
CLI=${CLI:-target/cli/release/sesscache}
lib=$SSERVER_LIB
REDIS_SERVER=$(command -v redis-server || true)
REDIS_CLI=$(command -v redis-cli || true)

dir=$(mktemp -d "${TMPDIR:-/tmp}/tickets.XXXXXX") || { fail "mktemp"; finish; }
seg=tk-$$; seg2=tkb-$$
PIDS=; RPID=; RPORT=
cleanup() {
    for _p in $PIDS; do kill "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; done
    [ -n "$RPID" ] && kill -9 "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
    rm -rf "$dir"
    rm -f "/dev/shm/sesscache-$seg" "/dev/shm/sesscache-$seg2"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
rm -f "/dev/shm/sesscache-$seg" "/dev/shm/sesscache-$seg2"

for f in "$lib" "$CLI"; do
    [ -f "$f" ] || { fail "$f is missing: run 'make lib cli' first"; finish; }
done


# start NAME [VAR=VAL…]: an `openssl s_server -www` (which never reads its stdin) with the
# library preloaded (LD_PRELOAD= in the arguments: without it), on a free port; sets
# PORT_NAME (as $PORT) and remembers the process for stop/cleanup. SESSCACHE_STATS goes to
# DIR/NAME.stats.
start() {
    _n=$1; shift
    sserver_www "$dir" "$_n" "$@" -- || return 1
    PORT=$SSERVER_PORT; PIDS="$PIDS $SSERVER_PID"; eval "PID_$_n=$SSERVER_PID"
}
# stop NAME: stops it (its SESSCACHE_STATS line is written at exit).
stop() {
    eval "_pid=\${PID_$1:-}"
    [ -n "$_pid" ] || return 0
    kill "$_pid" 2>/dev/null; wait "$_pid" 2>/dev/null
    eval "PID_$1="
}
conn() { sserver_connect "$@"; }
# name FILE: the first 16 bytes of the session's ticket, in hex (the key name).
name() {
    "$SSERVER_OPENSSL" sess_id -in "$1" -text -noout 2>/dev/null |
        sed -n '/TLS session ticket:/{n;p;q}' | sed 's/^ *0000 - //; s/  .*//; s/[- ]//g'
}
# gens URL: the generations' names the tool lists, one a line.
gens() { "$CLI" tickets --json "$1" 2>>"$dir/cli.err" | tr '{' '\n' | sed -n 's/.*"name":"\([0-9a-f]*\)".*/\1/p'; }
listed() { gens "$1" | grep -qx "$2"; }
# renewed PORT FILE: resumes the TLS 1.2 session in FILE and prints the key name of the
# ticket the server sends in that handshake (s_client -msg: handshake header 4 bytes,
# lifetime 4, length 2, then the ticket), or nothing when it sends none.
renewed() {
    # (The client stays 0.5 s, for the ticket the server sends after the handshake.)
    (sleep 0.5; echo) | timeout 10 "$SSERVER_OPENSSL" s_client -connect "127.0.0.1:$1" -sess_in "$2" \
        -tls1_2 -msg 2>/dev/null | sed -n '/NewSessionTicket/,/^[<>]/p' | sed 1d | grep -v '^[<>]' |
        tr -d ' \n' | cut -c21-52
}
# counter URL NAME: a counter of the cache as `sesscache stats` sees it (shm: the segment's;
# redis: what the hosts reported, about once a second while they run).
counter() { "$CLI" stats "$1" 2>>"$dir/cli.err" | sed -n "s/^$2 \([0-9]*\)$/\1/p"; }

sserver_cert "$dir" || fail "openssl could not make a certificate"

# ---- a. shm: two servers, a restart, the baseline -------------------------------------
url="shm:$seg?size=1M&tickets=shared"
echo "# a. shm: two openssl s_server processes, SESSCACHE_URL=$url"
for v in 1.2 1.3; do
    o=$(echo $v | tr . _)
    start a1 SESSCACHE_URL="$url" && P1=$PORT && start a2 SESSCACHE_URL="$url" && P2=$PORT ||
        { fail "a: servers did not start"; break; }
    c1=$(conn "$P1" -tls$o -sess_out "$dir/a$v.pem")
    c2=$(conn "$P2" -tls$o -sess_in "$dir/a$v.pem")
    case "$c1 $c2" in
        "New TLSv$v Reused TLSv$v") ok "a: TLS $v: a ticket from server 1 resumes on server 2" ;;
        *) fail "a: TLS $v: a ticket from server 1 resumes on server 2 (got '$c1', '$c2')"; show "$dir/a1.err" ;;
    esac
    n=$(name "$dir/a$v.pem")
    if [ -n "$n" ] && listed "$url" "$n"; then ok "a: TLS $v: the ticket's key name ($n) is a generation 'sesscache tickets' lists"
    else fail "a: TLS $v: the ticket's key name '$n' is not among the generations: $(gens "$url" | tr '\n' ' ')"; fi
    # Restart server 1: the segment, and its keys, live on.
    stop a1
    start a1 SESSCACHE_URL="$url" && P1=$PORT || fail "a: server 1 did not restart"
    c3=$(conn "$P1" -tls$o -sess_in "$dir/a$v.pem")
    check "$c3" "Reused TLSv$v" "a: TLS $v: server 1, restarted, resumes the ticket issued before"
    stop a1; stop a2
done
# The baseline: the same two servers without the library.
start b1 LD_PRELOAD= && P1=$PORT && start b2 LD_PRELOAD= && P2=$PORT || fail "a: baseline servers did not start"
b1=$(conn "$P1" -tls1_2 -sess_out "$dir/b.pem")
b2=$(conn "$P2" -tls1_2 -sess_in "$dir/b.pem")
check "$b1 $b2" "New TLSv1.2 New TLSv1.2" "a: without the library, a ticket from server 1 does not resume on server 2 (baseline)"
stop b1; stop b2
if grep -v '^ACCEPT\|^Using default temp DH\|^sesscache stats' "$dir"/a1.err "$dir"/a2.err 2>/dev/null | grep -q .; then
    fail "a: the library wrote to the servers' stderr"; show "$dir/a1.err"
else ok "a: nothing on the servers' stderr but their own lines"; fi

[ "${TICKETS_ONLY:-}" = shm ] && finish

# ---- b. shm: an altered record, revoke ----------------------------------------------------
url2="shm:$seg2?size=1M&tickets=shared"
echo "# b. shm: an altered key record, revoke; SESSCACHE_URL=$url2"
start c1 SESSCACHE_URL="$url2" && P1=$PORT || fail "b: server did not start"
c1=$(conn "$P1" -tls1_2 -sess_out "$dir/c.pem")
n=$(name "$dir/c.pem")
stop c1
# Without a key_file a record is the key followed by a checksum: the name is in the segment
# in clear, the AES key right after it. Flip one bit of the AES key.
if python3 - "/dev/shm/sesscache-$seg2" "$n" <<'PY'
import sys
path, name = sys.argv[1], bytes.fromhex(sys.argv[2])
with open(path, "r+b") as f:
    data = bytearray(f.read(8192))
    i = data.find(name)
    if i < 0:
        sys.exit(1)
    f.seek(i + 16)
    f.write(bytes([data[i + 16] ^ 1]))
PY
then
    out=$("$CLI" tickets "$url2" 2>&1)
    if echo "$out" | grep -q '^generation 1  REFUSED'; then ok "b: 'sesscache tickets' shows the altered record as REFUSED"
    else fail "b: the altered record is not shown as refused"; echo "$out" | note; fi
    start c2 SESSCACHE_URL="$url2" && P1=$PORT || fail "b: server did not start"
    c2=$(conn "$P1" -tls1_2 -sess_in "$dir/c.pem")
    check "$c2" "New TLSv1.2" "b: a ticket under the altered key does not resume"
    c3=$(conn "$P1" -tls1_2 -sess_out "$dir/c3.pem")
    n3=$(name "$dir/c3.pem")
    if [ -n "$n3" ] && [ "$n3" != "$n" ] && listed "$url2" "$n3"; then ok "b: new tickets use another, valid generation"
    else fail "b: new tickets use another, valid generation (got '$n3', altered '$n')"; fi
    stop c2
    errors=$(counter "$url2" errors)
    if [ "${errors:-0}" -ge 1 ]; then ok "b: the server counted the refused record (errors=$errors)"
    else fail "b: the refused record was not counted (errors='$errors')"; show "$dir/cli.err"; fi
else
    fail "b: the key name was not found in the segment"
fi
# revoke: a new generation at once, every older record dropped; a restarted server opens no
# older ticket, and issues tickets under the revoking generation.
start c3 SESSCACHE_URL="$url2" && P1=$PORT || fail "b: server did not start"
c4=$(conn "$P1" -tls1_2 -sess_out "$dir/c4.pem")
if "$CLI" tickets revoke "$url2" >"$dir/revoke.out" 2>&1; then ok "b: sesscache tickets revoke: $(cat "$dir/revoke.out")"
else fail "b: sesscache tickets revoke failed"; note <"$dir/revoke.out"; fi
# The server drops the older keys at its next refresh (ticket_rotate's tenth: 1 minute by
# default; this URL: a new server).
stop c3
start c4 SESSCACHE_URL="$url2" && P1=$PORT || fail "b: server did not start"
c5=$(conn "$P1" -tls1_2 -sess_in "$dir/c4.pem")
check "$c5" "New TLSv1.2" "b: after revoke, a ticket under an older key does not resume"
c6=$(conn "$P1" -tls1_2 -sess_out "$dir/c6.pem")
first=$("$CLI" tickets --json "$url2" | tr '{' '\n' | grep -c '"generation"')
if [ "$(gens "$url2" | head -n 1)" = "$(name "$dir/c6.pem")" ]; then ok "b: after revoke, tickets use the revoking generation ($first records left: it and its successor)"
else fail "b: after revoke, tickets use the revoking generation"; "$CLI" tickets "$url2" | note; fi
stop c4

# ---- c.–f. redis ------------------------------------------------------------------------
if [ -z "$REDIS_SERVER" ] || [ -z "$REDIS_CLI" ]; then
    fail "redis-server and redis-cli are required (apt-get install redis-server redis-tools): the redis:// tests cannot run"
    finish
fi
rcli() { "$REDIS_CLI" -p "$RPORT" "$@"; }
redis_start() {
    RPORT=$1
    "$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        >>"$dir/redis.log" 2>&1 &
    RPID=$!
    wait_redis "$RPORT" 5
}
redis_start "$(free_port)" || { fail "redis-server did not start"; finish; }
(umask 077; openssl rand -hex 32 >"$dir/keys")
base="redis://127.0.0.1:$RPORT?key_file=$dir/keys&tickets=shared&timeout_ms=200"

echo "# c. redis: two hosts; SESSCACHE_URL=$base&prefix=c$$:"
u="$base&prefix=c$$:"
start h1 SESSCACHE_URL="$u" && P1=$PORT && start h2 SESSCACHE_URL="$u" && P2=$PORT || fail "c: hosts did not start"
for v in 1.2 1.3; do
    o=$(echo $v | tr . _)
    h1=$(conn "$P1" -tls$o -sess_out "$dir/h$v.pem")
    h2=$(conn "$P2" -tls$o -sess_in "$dir/h$v.pem")
    h3=$(conn "$P2" -tls$o -sess_out "$dir/g$v.pem")
    h4=$(conn "$P1" -tls$o -sess_in "$dir/g$v.pem")
    t="TLSv$v"
    check "$h1 $h2 $h3 $h4" "New $t Reused $t New $t Reused $t" "c: TLS $v: each host resumes the other's tickets"
done
n=$(name "$dir/h1.2.pem")
if listed "$u" "$n"; then ok "c: the tickets' key name is a generation of the cache"; else fail "c: key name $n is not listed"; fi
rcli --raw HGETALL "c$$:tickets" >"$dir/hash" 2>&1
if [ -s "$dir/hash" ] && python3 -c "import sys; sys.exit(1 if bytes.fromhex('$n') in open('$dir/hash','rb').read() else 0)"; then
    ok "c: the key records in Redis are sealed (the key name is not in clear)"
else fail "c: the key records in Redis are sealed"; fi
stop h1; stop h2

echo "# d. rotation: ticket_rotate=3, ttl=6"
u="$base&prefix=d$$:&ticket_rotate=3&ttl=6"
start r1 SESSCACHE_URL="$u" && P1=$PORT && start r2 SESSCACHE_URL="$u" && P2=$PORT || fail "d: hosts did not start"
d1=$(conn "$P1" -tls1_2 -sess_out "$dir/d.pem")
n1=$(name "$dir/d.pem")
# The time is what is tested: at 4 s the second generation (from 3 s) is the one in use.
sleep 4
d2=$(conn "$P2" -tls1_2 -sess_in "$dir/d.pem")
n2=$(renewed "$P2" "$dir/d.pem")
check "$d2" "Reused TLSv1.2" "d: a ticket of one generation resumes during the next, on the other host"
if [ -n "$n2" ] && [ "$n2" != "$n1" ]; then ok "d: and is renewed under the newer key"
else fail "d: the resumed ticket was renewed under the newer key (old $n1, new '$n2')"; fi
# The first key decrypts until 3 + 6 s after it started: by 11 s, refused.
sleep 6
d3=$(conn "$P1" -tls1_2 -sess_in "$dir/d.pem")
check "$d3" "New TLSv1.2" "d: once its decryption window has ended, the ticket is refused (a full handshake)"
stop r1; stop r2

echo "# e. Redis killed"
u="$base&prefix=e$$:"
start k1 SESSCACHE_URL="$u" && P1=$PORT && start k2 SESSCACHE_URL="$u" && P2=$PORT || fail "e: hosts did not start"
e1=$(conn "$P1" -tls1_3 -sess_out "$dir/e.pem")
kill -9 "$RPID"; wait "$RPID" 2>/dev/null; RPID=
e2=$(conn "$P2" -tls1_3 -sess_in "$dir/e.pem")
e3=$(conn "$P2" -tls1_2)
check "$e1 $e2 $e3" "New TLSv1.3 Reused TLSv1.3 New TLSv1.2" "e: Redis down: tickets resume on the keys held, full handshakes complete"
stop k1; stop k2

echo "# e. Redis down when a host starts, then back"
u="$base&prefix=g$$:&ticket_rotate=10"
start g1 SESSCACHE_URL="$u" && P1=$PORT || fail "e: host did not start"
g1=$(conn "$P1" -tls1_2 -sess_out "$dir/g.pem")
g2=$(conn "$P1" -tls1_2 -sess_in "$dir/g.pem")
check "$g1 $g2" "New TLSv1.2 Reused TLSv1.2" "e: Redis down at start: tickets work, under the process's own key"
check "$(grep -c 'cannot read the shared ticket keys' "$dir/g1.err")" 1 "e: said once in the log"
redis_start "$RPORT" || { fail "redis-server did not restart"; finish; }
# ticket_rotate=10: the host refreshes every second; it says so when it has the shared keys.
wait_for 5 grep -q 'answers again' "$dir/g1.err"
g3=$(conn "$P1" -tls1_2 -sess_out "$dir/g3.pem")
if listed "$u" "$(name "$dir/g3.pem")"; then ok "e: Redis back: new tickets use the shared keys"
else fail "e: Redis back: new tickets use the shared keys"; show "$dir/g1.err"; fi
g4=$(conn "$P1" -tls1_2 -sess_in "$dir/g.pem")
check "$g4" "Reused TLSv1.2" "e: and the tickets issued under the process's own key still resume"
check "$(grep -c 'answers again' "$dir/g1.err")" 1 "e: the return is said once"
stop g1

echo "# f. a key record altered in Redis"
u="$base&prefix=f$$:"
start f1 SESSCACHE_URL="$u" && P1=$PORT || fail "f: host did not start"
stop f1
# Replace record 1 with another record's bytes (sealed for another number): it does not open.
rec2=$(rcli --raw HGET "f$$:tickets" 2 | od -An -tx1 | tr -d ' \n')
python3 - "$RPORT" "f$$:tickets" "$rec2" <<'PY'
import socket, sys
port, key, value = int(sys.argv[1]), sys.argv[2].encode(), bytes.fromhex(sys.argv[3])[:-1]
args = [b"HSET", key, b"1", value]
cmd = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
s = socket.create_connection(("127.0.0.1", port)); s.sendall(cmd); s.recv(100)
PY
out=$("$CLI" tickets "$u" 2>&1)
if echo "$out" | grep -q '^generation 1  REFUSED'; then ok "f: 'sesscache tickets' shows the record moved in Redis as REFUSED"
else fail "f: the altered record is not shown as refused"; echo "$out" | note; fi
start f2 SESSCACHE_URL="$u" && P1=$PORT || fail "f: host did not start"
f2=$(conn "$P1" -tls1_2 -sess_out "$dir/f.pem")
# The host reports its counters to Redis about once a second, from the thread that sends
# its stores: one session stored (a TLS 1.2 session ID: the client takes no ticket) starts it.
conn "$P1" -tls1_2 -no_ticket >/dev/null
errors=
counted() { errors=$(counter "$u" errors); [ "${errors:-0}" -ge 1 ]; }
wait_for 3 counted
stop f2
if [ "${errors:-0}" -ge 1 ] && [ "$f2" = "New TLSv1.2" ]; then ok "f: the host counted the refused record (errors=$errors) and still serves"
else fail "f: the refused record was counted (errors='$errors', '$f2')"; show "$dir/f2.err" "$dir/cli.err"; fi

finish
