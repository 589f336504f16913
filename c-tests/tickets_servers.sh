#!/bin/sh
# Shared ticket keys (`tickets=shared`) in real servers, libsesscache preloaded with
# SESSCACHE_URL='shm:NAME?tickets=shared…'. What proves which key encrypted a ticket: its
# first 16 bytes are the key's name (`openssl sess_id -text`, "TLS session ticket:"), and
# `sesscache tickets URL` lists the names of the shared generations.
# a. nginx, 2 workers (reuseport), `ssl_session_cache off` (tickets only: the cache serves no
#    session, a resumption is a ticket's), tickets on, no `ssl_session_ticket_key`:
#    - every ticket's name is a shared generation's (the positive control for b, c, d);
#    - a ticket made by either worker resumes on the other (TLS 1.2 and 1.3; nginx's own
#      keys would too, the workers inherit them: this shows the workers' keys agree);
#    - after `nginx -s reload` (old workers gone, new ones serving, the library mapped in
#      master and workers) tickets made before it resume on both new workers; after a full
#      restart on the same segment too (the keys come from the segment, not a process);
#    - control, the same configuration without the library: tickets resume until the
#      reload, and are refused after it (nginx's own keys are made anew).
# b. Apache httpd prefork, `SSLSessionCache none`, with `SSLSessionTicketKeyFile` (48
#    bytes): without force=1 the program's key encrypts (the ticket's name is the key
#    file's first 16 bytes, no shared generation's) and says so in the log; with force=1
#    a shared generation encrypts; both resume. Control: no key file, a shared generation.
# c. HAProxy 2.6, `tune.ssl.cachesize 0`, `tls-ticket-keys FILE` (4 base64 keys of 48
#    bytes) on the bind line: as b (the name is one of the file's keys).
# d. nginx with `ssl_session_ticket_key` (80 bytes): as b.
# e. rotation, nginx with ticket_rotate=2 for 7 s: the tickets' names change generation by
#    generation in the order they were made (both workers switch together), each a listed
#    generation; every ticket still resumes afterwards, on both workers; a first-generation
#    TLS 1.2 ticket is renewed under a newer generation.
# About 20 s.
# Prints ok/FAIL lines and "tickets-servers: N passed, M failed"; exits non-zero on failure.
# A missing server binary is a failure (scripts/deps.sh install), never a skip.
# Run from the top of the tree after `make lib cli` (as root: the servers switch users).
set -u
cd "$(dirname "$0")/.." || exit 1
# Each server gets its settings below; the caller's would change what the tests observe.
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
. c-tests/sserver.sh
. c-tests/ports.sh
. c-tests/nginx.sh
. c-tests/servers/common.sh
. c-tests/servers/apache.sh
. c-tests/servers/haproxy.sh
SUITE=tickets-servers
. c-tests/checks.sh

lib=$SSERVER_LIB
cli=${SESSCACHE_CLI:-target/cli/release/sesscache}
dir=$(mktemp -d "${TMPDIR:-/tmp}/tickets-servers.XXXXXX") || { fail "mktemp"; finish; }
chmod 0755 "$dir"
seg=tkt-$$
# Every segment this suite makes is /dev/shm/sesscache-$seg-…
cleanup() {
    trap - EXIT INT TERM HUP
    ngx_stop; apache_stop; haproxy_stop
    rm -rf "$dir"
    rm -f /dev/shm/sesscache-"$seg"-*
}
trap cleanup EXIT
trap 'fail "interrupted"; finish' INT TERM HUP
rm -f /dev/shm/sesscache-"$seg"-*

for f in "$lib" "$cli"; do
    [ -x "$f" ] || { fail "$f is missing: run 'make lib cli' first"; finish; }
done
sserver_cert "$dir" || { fail "openssl could not make a certificate"; finish; }

# The key name of the ticket in session file $1 (or in the output of `s_client`, which
# prints its session): 32 hex digits, nothing if it has none.
ticket_name() {
    case $1 in
        *.pem) openssl sess_id -in "$1" -text -noout 2>/dev/null ;;
        *) cat "$1" ;;
    esac | sed -n '/TLS session ticket:/{n;p;q}' | sed 's/^ *0000 - //' | cut -c1-47 | tr -d ' -'
}
# The first 16 bytes of a file (a key file's key name), in hex.
hex16() { od -An -tx1 -N16 "$1" | tr -d ' \n'; }
# The names of the shared generations of cache URL $1, one a line.
shared_names() {
    "$cli" tickets --json "$1" 2>"$dir/cli.err" |
        python3 -c 'import json, sys
for g in json.load(sys.stdin):
    if g.get("name"): print(g["name"])' 2>>"$dir/cli.err"
}
# Whether word $1 is in the list $2 (words separated by blanks or new lines).
in_list() {
    [ -n "$1" ] || return 1
    case " $(echo $2) " in *" $1 "*) return 0 ;; esac
    return 1
}
# Where name $1 is: "shared" (a generation of $2), "program" (in the list $3), "neither".
whose() {
    if in_list "$1" "$2"; then echo shared; elif in_list "$1" "${3:-}"; then echo program
    else echo "neither ($1)"; fi
}
mapped() { grep -q libsesscache "/proc/$1/maps" 2>/dev/null; }

# ---- a. nginx, 2 workers, ssl_session_cache off, tickets on, no ticket key --------------
NGX_SSL_SESSION_CACHE=off
NGX_SSL_SESSION_TICKETS=on

# nginx -s reload, then waits (at most 10 s) until the old workers have exited and two new
# ones started; sets NGX_WORKERS to the new ones (all of them if it timed out, for ngx_stop).
ngx_reload() { # DIR
    _old=$NGX_WORKERS
    _n0=$(grep -c 'start worker process [0-9]' "$1/error.log")
    if ! "$NGX_BIN" -e "$1/error.log" -c "$1/nginx.conf" -p "$1" -s reload >"$1/reload.out" 2>&1; then
        cat "$1/reload.out"; return 1
    fi
    _w=0
    while [ $_w -lt 100 ]; do
        _new=$(sed -n 's/.*start worker process \([0-9][0-9]*\)$/\1/p' "$1/error.log" |
            tail -n +$((_n0 + 1)) | tr '\n' ' ' | sed 's/ $//')
        _alive=
        for _p in $_old; do kill -0 "$_p" 2>/dev/null && _alive="$_alive $_p"; done
        if [ -z "$_alive" ] && [ "$(echo $_new | wc -w)" -eq 2 ]; then
            NGX_WORKERS=$_new
            return 0
        fi
        sleep 0.1
        _w=$((_w + 1))
    done
    NGX_WORKERS="$_alive $_new"
    return 1
}

# Rounds of a ticket made (-sess_out) then offered (-sess_in), TLS 1.2 and 1.3, until for
# each version a ticket of each worker was offered to the other (at most 40 rounds). Each
# line of DIR/cross: "VERSION MADEPID NAME RESULT OFFERPID", RESULT New or Reused.
ngx_cross() { # DIR
    _r=0
    : >"$1/cross"
    while [ $_r -lt 40 ]; do
        for _v in 2 3; do
            set -- "$1" $(ngx_get "$NGX_PORT" "/x$_r" -tls1_$_v -sess_out "$1/x.pem")
            _made=${4:-none}; _name=$(ticket_name "$1/x.pem")
            set -- "$1" $(ngx_get "$NGX_PORT" "/y$_r" -tls1_$_v -sess_in "$1/x.pem")
            echo "1.$_v $_made ${_name:-none} ${2:-none} ${4:-none}" >>"$1/cross"
        done
        _r=$((_r + 1))
        # Both directions seen for both versions: 4 distinct "version made>offered" pairs.
        [ "$(awk '$2 != $5 && $4 == "Reused" { print $1, $2 ">" $5 }' "$1/cross" | sort -u | wc -l)" -ge 4 ] && break
    done
}

# Offers session file $2 (TLS version $3: 2 or 3) until both workers resumed it (at most
# 16 times); prints "RESUMED OFFERED WORKERS-THAT-RESUMED".
offer_both() { # DIR FILE VERSION
    _i=0; _ok=0; _seen=
    while [ $_i -lt 16 ]; do
        set -- "$1" "$2" "$3" $(ngx_get "$NGX_PORT" "/offer$_i" -tls1_$3 -sess_in "$2")
        _i=$((_i + 1))
        if [ "${4:-}" = Reused ]; then
            _ok=$((_ok + 1))
            in_list "${6:-}" "$_seen" || _seen="$_seen ${6:-}"
        fi
        [ "$(echo $_seen | wc -w)" -ge 2 ] && break
    done
    echo "$_ok $_i$_seen"
}

if [ -x "$NGX_BIN" ]; then
    NGX_VERSION=$("$NGX_BIN" -v 2>&1 | sed 's/^nginx version: //')
    url="shm:$seg-ngx?tickets=shared"
    echo "# a. nginx ($NGX_VERSION), 2 workers, ssl_session_cache off, tickets on, SESSCACHE_URL='$url'"
    nd=$dir/ngx; mkdir "$nd"; cp "$dir/cert.pem" "$dir/key.pem" "$nd/"
    f0=$failed
    if ngx_start "$nd" LD_PRELOAD="$lib" SESSCACHE_URL="$url" SESSCACHE_LOG=info; then
        w0=$NGX_WORKERS
        ngx_cross "$nd"
        names=$(shared_names "$url")
        check "$(echo $names | wc -w)" 2 "nginx: 'sesscache tickets' lists two generations (encrypting, next)"
        for v in 1.2 1.3; do
            made=$(awk -v v="$v" '$1 == v' "$nd/cross" | wc -l)
            resumed=$(awk -v v="$v" '$1 == v && $4 == "Reused"' "$nd/cross" | wc -l)
            dirs=$(awk -v v="$v" '$1 == v && $2 != $5 && $4 == "Reused" { print $2 ">" $5 }' "$nd/cross" | sort -u | tr '\n' ' ')
            check "$resumed/$made $(echo $dirs | wc -w)" "$made/$made 2" \
                "nginx TLS $v: every ticket resumed, and one of each worker on the other ($dirs)"
            bad=$(awk -v v="$v" '$1 == v { print $3 }' "$nd/cross" | sort -u | while read -r n; do
                in_list "$n" "$names" || echo "$n"; done | tr '\n' ' ')
            check "$bad" "" "nginx TLS $v: every ticket's name is a shared generation's (both workers)"
        done
        check "$(awk '{ print $2; print $5 }' "$nd/cross" | sort -u | tr '\n' ' ')" \
            "$(echo $w0 | tr ' ' '\n' | sort | tr '\n' ' ')" "nginx: both workers served"
        # Tickets made before the reload, not offered yet.
        ngx_get "$NGX_PORT" /pre12 -tls1_2 -sess_out "$nd/pre12.pem" >/dev/null
        ngx_get "$NGX_PORT" /pre13 -tls1_3 -sess_out "$nd/pre13.pem" >/dev/null
        check "$(whose "$(ticket_name "$nd/pre12.pem")" "$names") $(whose "$(ticket_name "$nd/pre13.pem")" "$names")" \
            "shared shared" "nginx: the tickets kept for the reload have shared names"
        if ngx_reload "$nd"; then
            ok "nginx -s reload: the old workers ($w0) exited, new ones started ($NGX_WORKERS)"
            m=; for p in $NGX_PID $NGX_WORKERS; do mapped "$p" || m="$m $p"; done
            check "$m" "" "nginx after the reload: libsesscache is mapped in the master and both new workers"
            for v in 12 13; do
                set -- $(offer_both "$nd" "$nd/pre$v.pem" "${v#1}")
                got=$1; offered=$2; shift 2
                new_ok=1; for p; do in_list "$p" "$NGX_WORKERS" || new_ok=0; done
                check "$got/$offered $# $new_ok" "$offered/$offered 2 1" \
                    "nginx after the reload: a TLS 1.${v#1} ticket made before it resumes on both new workers ($*)"
            done
            set -- $(ngx_get "$NGX_PORT" /post13 -tls1_3 -sess_out "$nd/post13.pem")
            check "$(whose "$(ticket_name "$nd/post13.pem")" "$names") $(in_list "${3:-}" "$NGX_WORKERS" && echo new)" \
                "shared new" "nginx after the reload: a new worker's ticket has a shared name"
        else
            fail "nginx -s reload: old workers ($w0) still there or no two new ones after 10 s"
            show "$nd/error.log" "$nd/reload.out"
        fi
        ngx_stop || fail "nginx: did not exit on SIGQUIT in 10 s"
        # A full restart on the same segment: no process keeps the keys in memory.
        if ngx_start "$nd" LD_PRELOAD="$lib" SESSCACHE_URL="$url"; then
            r12=$(ngx_get "$NGX_PORT" /restart12 -tls1_2 -sess_in "$nd/pre12.pem")
            r13=$(ngx_get "$NGX_PORT" /restart13 -tls1_3 -sess_in "$nd/pre13.pem")
            check "${r12% *} | ${r13% *}" "Reused TLSv1.2 | Reused TLSv1.3" \
                "nginx stopped and started again on the segment: the tickets made before resume"
            ngx_stop || fail "nginx: did not exit on SIGQUIT in 10 s"
        else
            fail "nginx: did not start again"
        fi
        [ "$failed" -eq "$f0" ] || show "$nd/cross" "$nd/error.log" "$dir/cli.err"
    else
        fail "nginx with the library: nginx did not start"
    fi

    echo "# a. control: the same nginx without the library"
    nd=$dir/ngx-plain; mkdir "$nd"; cp "$dir/cert.pem" "$dir/key.pem" "$nd/"
    if ngx_start "$nd"; then
        ngx_get "$NGX_PORT" /pre12 -tls1_2 -sess_out "$nd/pre12.pem" >/dev/null
        ngx_get "$NGX_PORT" /pre13 -tls1_3 -sess_out "$nd/pre13.pem" >/dev/null
        b12=$(ngx_get "$NGX_PORT" /before12 -tls1_2 -sess_in "$nd/pre12.pem")
        b13=$(ngx_get "$NGX_PORT" /before13 -tls1_3 -sess_in "$nd/pre13.pem")
        check "${b12% *} | ${b13% *}" "Reused TLSv1.2 | Reused TLSv1.3" \
            "nginx without the library: before the reload, its tickets resume (tickets alone, no cache)"
        if ngx_reload "$nd"; then
            a12=$(ngx_get "$NGX_PORT" /after12 -tls1_2 -sess_in "$nd/pre12.pem")
            a13=$(ngx_get "$NGX_PORT" /after13 -tls1_3 -sess_in "$nd/pre13.pem")
            check "${a12% *} | ${a13% *}" "New TLSv1.2 | New TLSv1.3" \
                "nginx without the library: after the reload, the same tickets are refused (new keys)"
        else
            fail "nginx without the library: -s reload did not complete"; show "$nd/error.log"
        fi
        ngx_stop || fail "nginx without the library: did not exit on SIGQUIT in 10 s"
    else
        fail "nginx without the library: nginx did not start"
    fi
else
    fail "nginx is not installed ($NGX_BIN; scripts/deps.sh install): the nginx tests cannot run"
fi

# ---- b, c, d: the program's own keys ----------------------------------------------------
# One server, one URL: a TLS 1.2 and a TLS 1.3 ticket made and offered again. Sets T12 T13
# (the tickets' names) and R12 R13 (what the offers gave). $1 label, $2 DIR, $3 port.
tickets_of() {
    sserver_connect "$3" -tls1_2 -sess_out "$2/t12.pem" >/dev/null
    sserver_connect "$3" -tls1_3 -sess_out "$2/t13.pem" >/dev/null
    R12=$(sserver_connect "$3" -tls1_2 -sess_in "$2/t12.pem")
    R13=$(sserver_connect "$3" -tls1_3 -sess_in "$2/t13.pem")
    T12=$(ticket_name "$2/t12.pem"); T13=$(ticket_name "$2/t13.pem")
}
# The checks of one run: $1 label, $2 what should have encrypted (shared or program),
# $3 the shared names, $4 the program's key names, $5 DIR (its logs, for the log line).
keys_checks() {
    check "$(whose "$T12" "$3" "$4") $(whose "$T13" "$3" "$4")" "$2 $2" \
        "$1: the TLS 1.2 and 1.3 tickets' names are the $2 keys'"
    check "$R12 | $R13" "Reused TLSv1.2 | Reused TLSv1.3" "$1: both tickets resume"
}
said() { cat "$@" 2>/dev/null | grep -c 'the program set its own ticket keys or ticket callback: its tickets use them'; }
said_forced() { cat "$@" 2>/dev/null | grep -c 'force=1: the shared keys serve instead'; }

# Runs server $1 (apache, haproxy, nginx) with each of $3: `control` (no program keys),
# `keys` (the program's keys), `force` (the program's keys, force=1); $2 the program's key
# names.
runs() {
    _srv=$1; _pnames=$2
    for _run in $3; do
        _d=$dir/$_srv-$_run; mkdir "$_d"; cp "$dir/cert.pem" "$dir/key.pem" "$_d/"
        _url="shm:$seg-$_srv-$_run?tickets=shared"
        [ $_run = force ] && _url="$_url&force=1"
        case $_run in control) _want=shared ;; keys) _want=program ;; force) _want=shared ;; esac
        _label="$_srv, $(case $_run in control) echo 'no program keys' ;; keys) echo 'program keys' ;;
            force) echo 'program keys, force=1' ;; esac)"
        f1=$failed
        if start_$_srv "$_d" "$_run" LD_PRELOAD="$lib" SESSCACHE_URL="$_url" SESSCACHE_LOG=info; then
            tickets_of "$_label" "$_d" "$PORT"
            _names=$(shared_names "$_url")
            stop_$_srv
            [ -n "$_names" ] || fail "$_label: 'sesscache tickets' lists no generation"
            keys_checks "$_label" "$_want" "$_names" "$_pnames" "$_d"
            _logs="$_d/stderr $_d/error.log $_d/nginx.out"
            case $_run in
                keys) if [ "$(said $_logs)" -ge 1 ]; then ok "$_label: the log says the program's keys win"
                      else fail "$_label: the log does not say the program's keys win"; fi ;;
                force) check "$(said $_logs) $([ "$(said_forced $_logs)" -ge 1 ] && echo forced)" "0 forced" \
                      "$_label: the log says force=1 makes the shared keys serve, not that the program's win" ;;
            esac
            [ "$failed" -eq "$f1" ] || { echo "#   tickets: $T12 $T13; shared: $(echo $_names); program: $(echo $_pnames)"; show $_logs; }
        else
            fail "$_label: the server did not start"
            show "$_d/stderr" "$_d/error.log" "$_d/nginx.out"
        fi
        rm -f "/dev/shm/sesscache-$seg-$_srv-$_run"
    done
}

# b. Apache prefork, SSLSessionCache none; the key file on `keys` and `force` runs.
start_apache() { # DIR RUN VAR=VAL…
    _sd=$1; _k=; [ "$2" = control ] || _k=$dir/apache.key; shift 2
    APACHE_TICKET_KEY_FILE=$_k apache_start "$_sd" prefork none "$@" && PORT=$APACHE_PORT
}
stop_apache() { apache_stop || fail "apache: did not stop in 10 s"; }
if [ -x "$APACHE_BIN" ]; then
    echo "# b. $("$APACHE_BIN" -v | sed -n 's/^Server version: //p') prefork, SSLSessionCache none; SSLSessionTicketKeyFile (48 bytes)"
    openssl rand 48 >"$dir/apache.key"; chmod 0600 "$dir/apache.key"
    runs apache "$(hex16 "$dir/apache.key")" "control keys force"
else
    fail "apache2 is not installed ($APACHE_BIN; scripts/deps.sh install): the Apache tests cannot run"
fi

# c. HAProxy, tune.ssl.cachesize 0; tls-ticket-keys on `keys` and `force` runs.
start_haproxy() { # DIR RUN VAR=VAL…
    _sd=$1; _k=; [ "$2" = control ] || _k=$dir/haproxy.keys; shift 2
    HAPROXY_TICKET_KEYS=$_k haproxy_start "$_sd" 0 "$@" && PORT=$HAPROXY_PORT
}
stop_haproxy() { haproxy_stop || fail "haproxy: did not stop in 10 s"; }
if [ -x "$HAPROXY_BIN" ]; then
    echo "# c. $("$HAPROXY_BIN" -v | sed -n '1s/ - .*//p'), tune.ssl.cachesize 0; tls-ticket-keys (4 keys of 48 bytes)"
    for i in 1 2 3 4; do openssl rand -base64 48; done >"$dir/haproxy.keys"
    chmod 0600 "$dir/haproxy.keys"
    hnames=$(while read -r l; do echo "$l" | openssl base64 -d | od -An -tx1 -N16 | tr -d ' \n'; echo; done <"$dir/haproxy.keys")
    runs haproxy "$hnames" "control keys force"
    # Which of the file's keys HAProxy encrypts with (said, not checked).
    n=$(echo "$hnames" | grep -n "^$(ticket_name "$dir/haproxy-keys/t13.pem")\$" | cut -d: -f1)
    echo "# (HAProxy encrypted with key ${n:-?} of the 4 in its file)"
else
    fail "haproxy is not installed ($HAPROXY_BIN; scripts/deps.sh install): the HAProxy tests cannot run"
fi

# d. nginx with ssl_session_ticket_key (80 bytes).
start_nginx() { # DIR RUN VAR=VAL…
    _sd=$1; _k=; [ "$2" = control ] || _k=$dir/nginx.key; shift 2
    NGX_SSL_SESSION_TICKET_KEY=$_k ngx_start "$_sd" "$@" && PORT=$NGX_PORT
}
stop_nginx() { ngx_stop || fail "nginx: did not exit on SIGQUIT in 10 s"; }
if [ -x "$NGX_BIN" ]; then
    echo "# d. nginx ($NGX_VERSION), ssl_session_cache off; ssl_session_ticket_key (80 bytes)"
    openssl rand 80 >"$dir/nginx.key"; chmod 0600 "$dir/nginx.key"
    # (Its control, no program keys, is a.)
    runs nginx "$(hex16 "$dir/nginx.key")" "keys force"
fi

# ---- e. rotation: ticket_rotate=2 across nginx's two workers ---------------------------
if [ -x "$NGX_BIN" ]; then
    url="shm:$seg-rot?tickets=shared&ticket_rotate=2"
    echo "# e. nginx, 2 workers, SESSCACHE_URL='$url': tickets for 7 s, every 0.2 s"
    nd=$dir/ngx-rot; mkdir "$nd"; cp "$dir/cert.pem" "$dir/key.pem" "$nd/"
    f0=$failed
    if ngx_start "$nd" LD_PRELOAD="$lib" SESSCACHE_URL="$url"; then
        # Each line: "INDEX VERSION WORKER NAME", in the order the tickets were made.
        i=0; t_end=$(( $(date +%s) + 7 ))
        while [ "$(date +%s)" -lt $t_end ] && [ $i -lt 60 ]; do
            v=$((2 + i % 2))
            set -- $(ngx_get "$NGX_PORT" "/rot$i" -tls1_$v -sess_out "$nd/r$i.pem")
            echo "$i 1.$v ${3:-none} $(ticket_name "$nd/r$i.pem")"
            i=$((i + 1))
            sleep 0.2
        done >"$nd/made"
        names=$(shared_names "$url")
        seq=$(awk '$4 != last { printf "%s ", $4; last = $4 }' "$nd/made")
        distinct=$(awk '{ print $4 }' "$nd/made" | sort -u | wc -l)
        # Of the names in the order of the tickets: each new name is a new generation, never
        # one seen before (both workers switch keys together).
        check "$(echo $seq | wc -w) $([ "$distinct" -ge 3 ] && echo '>=3')" "$distinct >=3" \
            "rotation: $i tickets under $distinct generations, in order, both workers switching together"
        bad=$(awk '{ print $4 }' "$nd/made" | sort -u | while read -r n; do in_list "$n" "$names" || echo "$n"; done | tr '\n' ' ')
        check "$bad" "" "rotation: every ticket's name is a listed generation's"
        gens=$(echo "$names" | wc -l)
        # Every ticket made resumes now, on either worker: the older keys still decrypt.
        j=0; while [ $j -lt $i ]; do
            v=$(awk -v j=$j '$1 == j { print substr($2, 3) }' "$nd/made")
            echo "$j $(ngx_get "$NGX_PORT" "/again$j" -tls1_$v -sess_in "$nd/r$j.pem")"
            j=$((j + 1))
        done >"$nd/again"
        check "$(grep -c ' Reused ' "$nd/again")/$i $(awk '$2 == "Reused" { print $4 }' "$nd/again" | sort -u | wc -l)" \
            "$i/$i 2" "rotation: every ticket made resumes afterwards, on both workers ($gens generations listed)"
        # A TLS 1.2 ticket of the first generation is renewed: the new one is the current key's.
        # (s_client saves no session it resumed: the ticket is read from what it prints.)
        first=$(awk '$2 == "1.2" { print $1; exit }' "$nd/made")
        printf 'GET /renew HTTP/1.0\r\n\r\n' |
            timeout 10 openssl s_client -connect "127.0.0.1:$NGX_PORT" -ign_eof -tls1_2 \
                -sess_in "$nd/r$first.pem" >"$nd/renew.out" 2>/dev/null
        set -- $(sed -n 's/^\(New\|Reused\), \(TLSv[0-9.]*\),.*/\1 \2/p' "$nd/renew.out")
        rn=$(ticket_name "$nd/renew.out"); old=$(ticket_name "$nd/r$first.pem")
        if [ "${1:-}" = Reused ] && [ -n "$rn" ] && [ "$rn" != "$old" ] && in_list "$rn" "$(shared_names "$url")"; then
            ok "rotation: a first-generation TLS 1.2 ticket resumes and is renewed under a newer generation"
        else
            fail "rotation: renewal: offer gave '$*', old name $old, renewed ticket's name '${rn:-none}'"
        fi
        ngx_stop || fail "nginx: did not exit on SIGQUIT in 10 s"
        [ "$failed" -eq "$f0" ] || show "$nd/made" "$nd/again" "$nd/error.log" "$dir/cli.err"
    else
        fail "rotation: nginx did not start"
    fi
    rm -f "/dev/shm/sesscache-$seg-rot"
fi

cleanup
finish
