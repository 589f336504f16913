#!/bin/sh
# The compatibility matrix (make compat): for each OpenSSL version, built from source by
# scripts/openssl_build.sh (reused from its cache when there), run from the top of the tree:
#   build    OpenSSL (or its cached prefix), then the library against it in
#            target/compat/VERSION (OPENSSL_DIR; an rpath to the prefix: ldd must show the
#            prefix's libssl and libcrypto, never the system's);
#   harness  test_cache and test_shm (the explicit API), built against the version's headers
#            and libraries in build/compat/VERSION with -Wall -Wextra -Werror;
#   async    test_async (asynchronous lookups: the ClientHello callback's RETRY, and the
#            get callback pausing SSL_MODE_ASYNC jobs), built the same way, against a
#            redis-server this script starts (one for all versions; without redis-server
#            the column fails);
#   abi      abi_check.c against the version's ssl.h and include/sesscache.h;
#   transparency  observe.c plain, linked with the library, and plain under LD_PRELOAD:
#            identical output;
#   preload  the version's own `openssl s_server`, two processes preloaded with
#            SESSCACHE_URL=shm:NAME, its own `s_client`: a TLS 1.2 session made on one
#            resumes on the other, a TLS 1.3 ticket from one resumes once on the other and is
#            refused the second time (c-tests/shm_servers.sh's part a); and a preload without
#            SESSCACHE_URL behaves as no library at all;
#   tickets  shared ticket keys: the version's own s_server, two processes preloaded with
#            SESSCACHE_URL=shm:NAME?tickets=shared, open each other's TLS 1.2 and 1.3
#            tickets, and a restarted one those issued before (c-tests/tickets.sh's part a;
#            on 1.1.1 through the older ticket callback);
#   rediss   TLS to Redis: the version's own s_server, two processes preloaded with a
#            rediss:// URL (a redis-server with a TLS port and a CA made by the test),
#            resume each other's sessions; the library's own TLS connections, made with the
#            version's libssl, are left alone by its interposition; a stalled TLS Redis
#            costs handshakes nothing (c-tests/redis_tls.sh's parts c and d);
#   server names  a session made for one SNI is not resumed for another (c-tests/sni.sh's
#            s_server part, the version's own s_server and s_client; 4.0: with ECH too, the
#            inner name compared);
#   hang-up  the version's `s_server -rev` and a Python client that hangs up without
#            close_notify: as many resumptions with the library as without, and a forged
#            record still ends its session (see hangup() below);
#   QUIC     (3.5 on) c-tests/quic_probe.c without the library, preloaded and linked: QUIC is
#            left to OpenSSL (see quic() below).
# COMPAT_VERSIONS: the versions to run (openssl-src crate versions, or OpenSSL versions or
# their beginnings: "1.1.1 3.5"); default: all of them. A version that does not build fails.
# Prints ok/FAIL lines, a Markdown table of the results (lines starting with "# ") and
# "compat: N passed, M failed"; exits non-zero on a failure.
set -u
# The servers get their settings below; the caller's would change what the tests observe.
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS
# openssl-sys is told OPENSSL_DIR below: these would override it.
unset OPENSSL_LIB_DIR OPENSSL_INCLUDE_DIR OPENSSL_STATIC OPENSSL_LIBS OPENSSL_NO_VENDOR
ALL="111.28.2+1.1.1w 300.0.13+3.0.8 300.5.5+3.5.5 300.6.1+3.6.3 400.0.3+4.0.4"
ROOT=$(pwd)
CC=${CC:-cc}
WARN="-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror"
MAJOR=$(sed -n 's/^version = "\([0-9]*\)\..*"/\1/p' Cargo.toml | head -n 1)
. c-tests/sserver.sh
SUITE=compat
. c-tests/checks.sh
redis_pid=
redis_dir=$ROOT/build/compat/redis
trap 'sserver_cleanup; [ -z "$redis_pid" ] || kill "$redis_pid" 2>/dev/null' EXIT
trap 'exit 1' INT TERM HUP
t_start=$(date +%s)

# The crate versions COMPAT_VERSIONS names.
versions=
for want in ${COMPAT_VERSIONS:-$ALL}; do
    found=
    for v in $ALL; do
        case $want in
            *+*) [ "$v" = "$want" ] && found=$v ;;
            *) case ${v#*+} in "$want"*) found=$v ;; esac ;;
        esac
    done
    # A crate version not in the list is tried as it is.
    versions="$versions ${found:-$want}"
done

table="# | OpenSSL | build (s) | library | harness | async | ABI | transparency | preload shm: | unconfigured preload | shared tickets | rediss | server names | client hangs up | QUIC | time (s) |
# |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
f0=0
# Records one cell: "ok" (or TEXT) when no check failed since the last mark, else FAIL.
mark() { if [ "$failed" -eq "$f0" ]; then cell=${1:-ok}; else cell=FAIL; fi; f0=$failed; }

# The prefix's libssl and libcrypto, and no other, in what ldd shows for $1.
only_prefix_ssl() {
    ldd "$1" | grep -E 'lib(ssl|crypto)\.so' | grep -qv " => $lib/" && return 1
    ldd "$1" | grep -q " => $lib/libssl\.so" && ldd "$1" | grep -q " => $lib/libcrypto\.so"
}

# Runs a harness program ending with "NAME: N passed, M failed": one check.
harness() { # NAME
    "$out/$1" >"$out/$1.log" 2>&1; rc=$?
    line=$(grep -E "^$1: [0-9]+ passed, [0-9]+ failed\$" "$out/$1.log" | tail -n 1)
    case $rc:$line in
        0:*" 0 failed") ok "$ov $line"; hcells="$hcells ${line%% passed*}" ;;
        *) grep -E 'FAIL|ERROR' "$out/$1.log" | head -n 20 | note
           fail "$ov $1: ${line:-did not finish}, exit $rc" ;;
    esac
}

# suite_part NAME SCRIPT VAR=VALUE...: a shell suite's part (chosen by the variables), with
# this version's own openssl program and library; its checks counted as this version's,
# each line prefixed "VERSION NAME:"; one cell (in $cell). A part that ran no check fails.
suite_part() {
    _name=$1; _script=$2; shift 2
    env "$@" SSERVER_OPENSSL="$prefix/bin/openssl" SSERVER_LIB="$sc/libsesscache.so" \
        sh "$_script" >"$out/$_name.log" 2>&1
    grep -E '^(ok|FAIL) - ' "$out/$_name.log" | sed "s/^\(ok\|FAIL\) - /\1 - $ov $_name: /" >"$out/$_name.lines"
    n_ok=$(grep -c '^ok' "$out/$_name.lines"); n_fail=$(grep -c '^FAIL' "$out/$_name.lines")
    cat "$out/$_name.lines"
    passed=$((passed + n_ok)); failed=$((failed + n_fail))
    if [ "$n_ok" -eq 0 ]; then fail "$ov $_name: $_script ran no check"; show "$out/$_name.log"; fi
    mark
}

one_version() { # CRATE-VERSION
    v=$1; ov=${v#*+}
    t0=$(date +%s)
    out=$ROOT/build/compat/$ov
    rm -rf "$out"; mkdir -p "$out"
    echo "== OpenSSL $ov (openssl-src $v)"
    c_build=FAIL; c_lib=-; c_harness=-; c_async=-; c_abi=-; c_transp=-; c_shm=-; c_plain=-; c_tickets=-; c_rediss=-; c_sni=-; c_hangup=-; c_quic=-

    # ---- OpenSSL, then the library against it ---------------------------------------------
    if sh scripts/openssl_build.sh "$v" >"$out/openssl-build.log" 2>&1; then
        prefix=$(sh scripts/openssl_build.sh prefix "$v")
        ok "$ov OpenSSL: $(cat "$prefix/.complete"), built in $(cat "$prefix/build-time") s ($prefix)"
        c_build=$(cat "$prefix/build-time")
    else
        tail -n 30 "$out/openssl-build.log" | note
        fail "$ov OpenSSL: the build failed ($out/openssl-build.log)"
        table="$table
# | $ov | FAIL | - | - | - | - | - | - | - | - | - | - | - | - | $(($(date +%s) - t0)) |"
        f0=$failed
        return
    fi
    lib=$prefix/lib
    tdir=target/compat/$ov
    sc=$ROOT/$tdir/release
    if OPENSSL_DIR=$prefix RUSTFLAGS="-C link-arg=-Wl,-rpath,$lib" \
        cargo build --release --locked --lib --target-dir "$tdir" >"$out/cargo.log" 2>&1; then
        ln -sf libsesscache.so "$sc/libsesscache.so.$MAJOR"
        if only_prefix_ssl "$sc/libsesscache.so"; then
            ok "$ov library: built, loads the prefix's libssl and libcrypto only"
        else
            ldd "$sc/libsesscache.so" | note
            fail "$ov library: does not load the prefix's libssl and libcrypto only"
        fi
    else
        tail -n 30 "$out/cargo.log" | note
        fail "$ov library: cargo build failed ($out/cargo.log)"
    fi
    mark; c_lib=$cell
    if [ "$c_lib" = FAIL ]; then
        table="$table
# | $ov | $c_build | FAIL | - | - | - | - | - | - | - | - | - | - | - | $(($(date +%s) - t0)) |"
        return
    fi

    # ---- the C programs, against the version's headers and libraries ----------------------
    cppflags="-Iinclude -Ic-tests -I$prefix/include"
    ssl_libs="-L$lib -lssl -lcrypto -Wl,-rpath,$lib"
    link_sc="-L$sc -lsesscache -Wl,-rpath,$sc"
    # compile NAME COMMAND…: one check; the compiler's messages go to NAME.build.log.
    compile() {
        _n=$1; shift
        if "$@" >"$out/$_n.build.log" 2>&1; then return 0; fi
        note <"$out/$_n.build.log" | head -n 30
        fail "$ov $_n: does not compile against OpenSSL $ov ($out/$_n.build.log)"
        return 1
    }
    hcells=
    for t in test_cache test_shm; do
        # shellcheck disable=SC2086 # lists of options
        if compile $t $CC $WARN -O2 -g $cppflags c-tests/$t.c c-tests/tls_util.c c-tests/check.c \
            -o "$out/$t" $link_sc $ssl_libs -lpthread; then
            if only_prefix_ssl "$out/$t"; then harness $t
            else ldd "$out/$t" | note; fail "$ov $t: loads another libssl"; fi
        fi
    done
    # (hcells: "test_cache: N test_shm: M")
    mark "ok ($(echo $hcells | sed 's/: / /g; s/ test_shm/, test_shm/'))"; c_harness=$cell

    # ---- asynchronous lookups, against the script's redis-server -------------------------
    hcells=
    # shellcheck disable=SC2086
    if compile test_async $CC $WARN -O2 -g $cppflags c-tests/test_async.c c-tests/tls_util.c \
            c-tests/check.c -o "$out/test_async" $link_sc $ssl_libs -lpthread; then
        if ! only_prefix_ssl "$out/test_async"; then
            ldd "$out/test_async" | note; fail "$ov test_async: loads another libssl"
        elif redis_up; then
            export SESSCACHE_TEST_REDIS_PORT="$redis_port"
            harness test_async
            unset SESSCACHE_TEST_REDIS_PORT
        fi
    fi
    mark "ok (${hcells#*: })"; c_async=$cell

    # shellcheck disable=SC2086
    if compile abi_check $CC $WARN -O2 $cppflags -c c-tests/abi_check.c -o "$out/abi_check.o"; then
        ok "$ov abi: sesscache.h and OpenSSL $ov's ssl.h agree"
    fi
    mark; c_abi=$cell

    # shellcheck disable=SC2086
    if compile observe_plain $CC $WARN -O2 $cppflags c-tests/observe.c c-tests/tls_util.c \
            -o "$out/observe_plain" $ssl_libs &&
       compile observe_linked $CC $WARN -O2 $cppflags c-tests/observe.c c-tests/tls_util.c \
            -o "$out/observe_linked" -Wl,--no-as-needed $link_sc -Wl,--as-needed $ssl_libs; then
        "$out/observe_plain" >"$out/observe.plain" 2>"$out/observe.plain.err"; rc_plain=$?
        "$out/observe_linked" >"$out/observe.linked" 2>"$out/observe.linked.err"; rc_linked=$?
        LD_PRELOAD=$sc/libsesscache.so "$out/observe_plain" >"$out/observe.preload" 2>"$out/observe.preload.err"
        rc_preload=$?
        if [ $rc_plain -ne 0 ] || [ ! -s "$out/observe.plain" ]; then
            show "$out/observe.plain.err"; fail "$ov transparency: the probe failed on its own (exit $rc_plain)"
        elif ! ldd "$out/observe_linked" | grep -q " => $sc/libsesscache"; then
            fail "$ov transparency: observe_linked lacks the library"
        else
            for m in linked preload; do
                eval "rc=\$rc_$m"
                if [ "$rc" -eq 0 ] && cmp -s "$out/observe.plain" "$out/observe.$m"; then
                    ok "$ov transparency: $m ($(wc -l <"$out/observe.plain") observations identical)"
                else
                    diff "$out/observe.plain" "$out/observe.$m" | head -n 20 | note
                    show "$out/observe.$m.err"
                    fail "$ov transparency: $m differs from plain (exit $rc)"
                fi
            done
        fi
    fi
    mark; c_transp=$cell

    # ---- the version's own s_server and s_client -----------------------------------------
    SSERVER_OPENSSL=$prefix/bin/openssl
    SSERVER_LIB=$sc/libsesscache.so
    dir=$out/preload
    mkdir -p "$dir/cert"
    seg=compat-$$-$(echo "$ov" | tr -c '0-9a-z\n' -)
    rm -f "/dev/shm/sesscache-$seg"
    sserver_cert "$dir/cert" || fail "$ov preload: openssl req could not make a certificate"
    # server 1: connections 1, 3, 4, 6; server 2: connections 2, 5, 7.
    if sserver_two "$dir" "$dir/cert" 4 3 SESSCACHE_URL="shm:$seg?size=4M" SESSCACHE_STATS="$dir/stats"; then
        sserver_cross "$dir"
        sserver_two_wait || fail "$ov preload: a server did not exit after its connections"
        check "$C1 | $C2 | $C3" "New TLSv1.2 | Reused TLSv1.2 | Reused TLSv1.2" \
            "$ov preload shm: TLS 1.2: a session made on server 1 resumes on server 2, and on 1"
        check "$C4 | $C5 | $C6 | $C7" "New TLSv1.3 | Reused TLSv1.3 | New TLSv1.3 | New TLSv1.3" \
            "$ov preload shm: TLS 1.3: a ticket from server 1 resumes once on server 2, then is refused on both"
        st=$(sort -t= -k3,3n "$dir/stats" 2>/dev/null | tail -n 1)
        check "$(echo "$st" | sed -n 's/.* lookups=\([0-9]*\) hits=\([0-9]*\) misses=\([0-9]*\) .*errors=\([0-9]*\).*/\1 \2 \3 \4/p')" \
            "5 3 2 0" "$ov preload shm: the segment's stats: lookups hits misses errors"
        check "$(cat "$dir/s1/server.err" "$dir/s2/server.err" | grep -c sesscache)" 0 \
            "$ov preload shm: no message from the library on the servers' standard error"
        [ "$failed" -eq "$f0" ] || show "$dir/stats" "$dir/s1/server.err" "$dir/s2/server.err"
    else
        show "$dir/s1/server.err" "$dir/s2/server.err"
        fail "$ov preload shm: the two servers did not start"
        for _p in $S1 $S2; do sserver_stop "$_p"; done; exec 8>&-; S1=; S2=
    fi
    rm -f "/dev/shm/sesscache-$seg"
    mark; c_shm=$cell

    # Preloaded without SESSCACHE_URL, s_server keeps OpenSSL's own cache: the same
    # connections as without the library, TLS 1.3 tickets replayable as there.
    plain_run() { # LIB: prints what 5 connections to one server saw
        SSERVER_LIB=$1
        mkdir -p "$dir/u"; cp "$dir/cert/cert.pem" "$dir/cert/key.pem" "$dir/u/"
        sserver_start "$dir/u" 5 || { echo "no server"; return; }
        _a=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_out "$dir/u/s12.pem")
        _b=$(sserver_connect "$SSERVER_PORT" -tls1_2 -sess_in "$dir/u/s12.pem")
        _c=$(SSERVER_LINGER=1 sserver_connect "$SSERVER_PORT" -tls1_3 -sess_out "$dir/u/t13.pem")
        _d=$(sserver_connect "$SSERVER_PORT" -tls1_3 -sess_in "$dir/u/t13.pem")
        _e=$(sserver_connect "$SSERVER_PORT" -tls1_3 -sess_in "$dir/u/t13.pem")
        sserver_wait "$SSERVER_PID" || _e="$_e (server did not exit)"
        echo "$_a | $_b | $_c | $_d | $_e"
    }
    without=$(plain_run "")
    cp "$dir/u/server.err" "$dir/u/server.err.without" 2>/dev/null
    with=$(plain_run "$sc/libsesscache.so")
    check "$without" "New TLSv1.2 | Reused TLSv1.2 | New TLSv1.3 | Reused TLSv1.3 | Reused TLSv1.3" \
        "$ov without the library: s_server's own cache resumes, TLS 1.3 tickets replay"
    check "$with" "$without" "$ov unconfigured preload (no SESSCACHE_URL): the same as without the library"
    if cmp -s "$dir/u/server.err" "$dir/u/server.err.without"; then
        ok "$ov unconfigured preload: s_server's standard error is the same as without the library"
    else
        diff "$dir/u/server.err.without" "$dir/u/server.err" | head -n 10 | note
        fail "$ov unconfigured preload: s_server's standard error differs from without the library"
    fi
    [ "$failed" -eq "$f0" ] || show "$dir/u/server.err"
    mark; c_plain=$cell

    # ---- shared ticket keys -----------------------------------------------------------------
    suite_part tickets c-tests/tickets.sh TICKETS_ONLY=shm; c_tickets=$cell

    # ---- TLS to Redis -----------------------------------------------------------------------
    suite_part rediss c-tests/redis_tls.sh REDIS_TLS_ONLY=hosts; c_rediss=$cell

    # ---- server names (sni_check): c-tests/sni.sh's s_server part; 4.0: ECH too ----------
    case $ov in 4.*) parts="sserver ech" ;; *) parts=sserver ;; esac
    suite_part sni c-tests/sni.sh SNI_PARTS="$parts"; c_sni=$cell

    # ---- clients that hang up without close_notify ----------------------------------------
    hangup; mark; c_hangup=$cell

    # ---- QUIC servers (3.5 on): left to OpenSSL ------------------------------------------
    case $ov in
        1.*|3.[0-4].*) c_quic=n/a ;;
        *) quic; mark; c_quic=$cell ;;
    esac

    table="$table
# | $ov | $c_build | $c_lib | $c_harness | $c_async | $c_abi | $c_transp | $c_shm | $c_plain | $c_tickets | $c_rediss | $c_sni | $c_hangup | $c_quic | $(($(date +%s) - t0)) |"
}

# The redis-server test_async runs against, one for every version, started at the first
# call (killed by the EXIT trap): sets redis_port. Without redis-server (or redis-cli, which
# wait_redis asks), each call fails.
redis_up() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        fail "$ov async: redis-server and redis-cli are required (apt-get install redis-server redis-tools)"
        return 1
    fi
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null && redis_pong "$redis_port"; then
        return 0
    fi
    [ -z "$redis_pid" ] || kill "$redis_pid" 2>/dev/null
    mkdir -p "$redis_dir"
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$redis_dir" >"$redis_dir/redis.log" 2>&1 &
    redis_pid=$!
    if wait_redis "$redis_port"; then return 0; fi
    show "$redis_dir/redis.log"
    fail "$ov async: redis-server did not start on port $redis_port"
    return 1
}

# The version's own `s_server -rev` (it answers a line, then reads the next) and a Python
# client that hangs up without close_notify after each answer (c-tests/servers/hangup.py), 5
# resumptions, TLS 1.2 and 1.3: with the library (memory:) as many resume as without it (from
# 3.0 on, OpenSSL removes the session on that unexpected end of file); and a record with a
# broken authentication tag still ends its session with the library.
hangup() {
    hdir=$out/hangup
    mkdir -p "$hdir"
    cp "$dir/cert/cert.pem" "$dir/cert/key.pem" "$hdir/"
    printf '#!/bin/sh\nexec "%s" "$@" -rev\n' "$prefix/bin/openssl" >"$hdir/openssl-rev"
    chmod +x "$hdir/openssl-rev"
    for cfg in without memory; do
        case $cfg in
            without) SSERVER_LIB=; set -- ;;
            memory) SSERVER_LIB=$sc/libsesscache.so; set -- SESSCACHE_URL=memory: ;;
        esac
        SSERVER_OPENSSL=$hdir/openssl-rev
        if ! sserver_start "$hdir" 100 "$@" 2>"$hdir/start.err"; then
            show "$hdir/start.err"; fail "$ov hang-up: s_server -rev ($cfg) did not start"
            continue
        fi
        for tls in 1.2 1.3; do
            r=$(timeout 60 python3 c-tests/servers/hangup.py "$SSERVER_PORT" 5 $tls line 2>>"$hdir/client.err" |
                sed -n 's/^reused //p')
            eval "hu_${cfg}_${tls%.*}${tls#*.}=\${r:-error}"
            if [ $cfg = memory ]; then
                f=$(timeout 60 python3 c-tests/servers/hangup.py --forge "$SSERVER_PORT" $tls line 2>>"$hdir/client.err" |
                    sed -n 's/^forged: //p')
                check "$f" "second=Reused third=New" "$ov hang-up, memory:, TLS $tls: a forged record (bad_record_mac) still ends its session"
            fi
        done
        sserver_stop "$SSERVER_PID"
    done
    SSERVER_OPENSSL=$prefix/bin/openssl
    SSERVER_LIB=$sc/libsesscache.so
    for tls in 12 13; do
        eval "w=\$hu_without_$tls m=\$hu_memory_$tls"
        no_fewer "$m" "$w" "$ov hang-up, memory:, TLS 1.${tls#1}" || show "$hdir/client.err"
    done
}

# c-tests/quic_probe.c: a QUIC server and client in one process, 8 connections, each offering
# the session of the one before. Without the library, preloaded (SESSCACHE_URL unset,
# memory:, shm:) and linked with sesscache_attach (which must refuse a QUIC context): every
# handshake and echo succeeds, nothing hangs (60 s), and sessions still resume through
# OpenSSL's own tickets (how many varies from run to run, even without the library: only the
# sum over the runs with the library is checked).
quic() {
    qdir=$out/quic
    mkdir -p "$qdir"
    # shellcheck disable=SC2086 # lists of options
    compile quic_probe $CC $WARN -O2 $cppflags c-tests/quic_probe.c -o "$qdir/quic_probe" \
        $ssl_libs -lpthread || return
    # shellcheck disable=SC2086
    compile quic_probe_attach $CC $WARN -O2 -DWITH_SESSCACHE $cppflags c-tests/quic_probe.c \
        -o "$qdir/quic_probe_attach" $link_sc $ssl_libs -lpthread || return
    export QUIC_PROBE_CERT="$dir/cert/cert.pem" QUIC_PROBE_KEY="$dir/cert/key.pem"
    qseg=$seg-quic
    rm -f "/dev/shm/sesscache-$qseg"
    resumed=; rsum=0
    for mode in none preload preload-memory preload-shm attach callbacks; do
        case $mode in
            none) set -- ;;
            preload) set -- LD_PRELOAD="$SSERVER_LIB" ;;
            preload-memory) set -- LD_PRELOAD="$SSERVER_LIB" SESSCACHE_URL=memory: ;;
            preload-shm) set -- LD_PRELOAD="$SSERVER_LIB" SESSCACHE_URL="shm:$qseg?size=1M" ;;
        esac
        if [ $mode = attach ] || [ $mode = callbacks ]; then
            timeout 60 "$qdir/quic_probe_attach" $mode >"$qdir/$mode.out" 2>"$qdir/$mode.err"; rc=$?
        else
            timeout 60 env "$@" "$qdir/quic_probe" >"$qdir/$mode.out" 2>"$qdir/$mode.err"; rc=$?
        fi
        got="$(grep -v '^resumed' "$qdir/$mode.out" | tr '\n' ' ')exit $rc"
        want="handshakes 8/8 echoed 8/8 exit 0"
        case $mode in
            attach)
                want="attach: refused $want"
                what="linked, sesscache_attach on a QUIC server context is refused (with a message), then" ;;
            callbacks)
                want="callbacks: installed $want"
                what="linked, the ready-made callbacks installed on the QUIC server context, then" ;;
            none) what="without the library:" ;;
            *) what="$mode:" ;;
        esac
        r=$(sed -n 's/^resumed \([0-9]*\)\/7$/\1/p' "$qdir/$mode.out")
        check "$got" "$want" "$ov QUIC $what 8 handshakes and echoes (resumed ${r:-?}/7)"
        if [ $mode = attach ]; then
            check "$(grep -c 'sesscache_attach: .*QUIC' "$qdir/$mode.err")" 1 "$ov QUIC: the refusal says why"
        elif [ $mode != none ]; then
            check "$(grep -c sesscache "$qdir/$mode.err")" 0 "$ov QUIC $what no message from the library"
        fi
        [ $mode = none ] || { resumed="$resumed${resumed:++}${r:-0}"; rsum=$((rsum + ${r:-0})); }
    done
    rm -f "/dev/shm/sesscache-$qseg"
    if [ "$rsum" -gt 0 ]; then
        ok "$ov QUIC: sessions resume through OpenSSL's tickets with the library around ($resumed of 5 x 7)"
    else
        fail "$ov QUIC: no session resumed in the 5 runs with the library"
    fi
}

for v in $versions; do one_version "$v"; done

echo "#"
echo "# Results (build: the seconds OpenSSL's build took when it was made; time: this version's run here, its OpenSSL build included when it was made now)"
echo "$table"
echo "# compat took $(($(date +%s) - t_start)) s"
finish
