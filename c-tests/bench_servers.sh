#!/bin/sh
# `make bench-servers`: real servers, measured. Each server runs twice, side by side, on
# 127.0.0.1:
#   nginx (2 workers, reuseport), both with `ssl_session_tickets off`:
#     A  `ssl_session_cache shared:SSL:10m`: nginx's own shared cache, no library;
#     B  `ssl_session_cache none`, LD_PRELOAD=libsesscache.so SESSCACHE_URL=shm:NAME: nginx's
#        cache off and sesscache serving every worker (nginx's `none` keeps the server cache
#        mode on, so no force=1 is needed: c-tests/shm_servers.sh tests the same setup);
#   Apache httpd prefork (4 to 8 children), both with `SSLSessionTickets off`:
#     A  `SSLSessionCache shmcb:…(512000)`: mod_ssl's own shared cache, no library;
#     B  `SSLSessionCache none`, LD_PRELOAD=libsesscache.so SESSCACHE_URL=shm:NAME?force=1
#        (Apache's `none` turns the server cache off: force=1 has sesscache serve it anyway).
# Tickets are off in both so that what resumes is the session cache (TLS 1.2 session IDs, TLS
# 1.3 stateful tickets: a lookup on every resumption), not a stateless ticket; with force=1
# sesscache gives B's connections stateful tickets itself.
#
# The load: c-tests/bench_client.c, N client threads (BENCH_CLIENTS, default 8) that each
# resume their latest session again and again for S seconds (BENCH_SECONDS, default 5), each
# connection a handshake plus a small HTTP/1.0 GET read to the end. The figure is the
# connections per second the server completed; nearly all resumed (the client reports the
# fraction, and a measurement fails below BENCH_MIN_RESUMED, default 0.9).
#
# Client and servers share the machine's CPUs: the figure is the whole system's throughput,
# and the client takes about half of it (measured on the 2-core development machine, nginx
# TLS 1.2: 2.9 CPU-seconds of client, kernel included, to 2.6 of nginx's workers in 4 s), so
# a difference in the servers' own cost per connection shows at about half its size.
#
# The machines are noisy (2 cores shared with other work, client and server on the same
# ones), so every figure is a ratio B/A to a baseline measured in the same round: R rounds
# (BENCH_ROUNDS, default 5), each measuring A and B for S seconds each, alternating which goes
# first; both servers run for the whole set of rounds (an idle server costs nothing), after a
# 1 s warm-up of each (Apache prefork spawns children under load; nginx's caches fill). Per
# server and protocol (BENCH_PROTOCOLS, default "tls12 tls13"; BENCH_SERVERS, default
# "nginx apache") it prints each round, then the median connections/s of A and B, the resumed
# fraction of each (all rounds together), and the median, min and max of the per-round ratios.
# The summary lines, one per configuration,
#   server <nginx|apache> <tls12|tls13> <config> <median_conns_per_s> <resumed_fraction> <ratio_median> <ratio_min> <ratio_max>
# (the baseline's ratios are 1.000) go to stdout and are appended to $BENCH_OUT when it is set.
# Configs: nginx `shared:SSL:10m` and `none+shm`, apache `shmcb` and `none+shm+force`.
#
# Each round's line also gives the servers' own CPU time per connection (user + system of
# the master and its children, from /proc, over the connections completed): a figure that
# the machine's other load moves less than connections per second; its medians follow the
# summary as a note (not in the summary lines).
#
# B is checked to resume through sesscache: the segment's counters (SESSCACHE_STATS, written
# by every process at exit) must show at least as many cache hits as the clients saw
# resumptions against B.
#
# BENCH_SLICES=k (default 1): each configuration's S seconds of a round measured as k slices
# of S/k seconds, alternating A B B A …, the round's rate being all its slices' connections
# over their seconds: for a machine whose other load changes within seconds (the default,
# k=1, measures each for S seconds in one go).
#
# QUICK=1: a smoke test (1 round of 1 s per configuration, no warm-up; well under a minute):
# fails when a server does not start, a client fails, or nothing resumes.
#
# Run as root (nginx and httpd switch their workers to another user) after `make lib` and
# building build/bench_client, from anywhere:
#     sh c-tests/bench_servers.sh [BENCH_CLIENT]
# Prints ok/FAIL lines for the checks; exits non-zero on any failure. Starts and stops every
# server itself; its temporary directory and shm: segments are removed at exit.
set -u
# The client program and $BENCH_OUT are named relative to the caller's directory.
bs_client=${1:-}
case $bs_client in ''|/*) ;; *) bs_client=$(pwd)/$bs_client ;; esac
bs_out_file=${BENCH_OUT:-}
case $bs_out_file in ''|/*) ;; *) bs_out_file=$(pwd)/$bs_out_file ;; esac
cd "$(dirname "$0")/.." || exit 1
# The servers get their settings below; the caller's would change what is measured.
unset SESSCACHE_URL SESSCACHE_LOG SESSCACHE_STATS SESSCACHE_STATS_INTERVAL
. c-tests/sserver.sh
. c-tests/ports.sh
. c-tests/nginx.sh
. c-tests/servers/common.sh
. c-tests/servers/apache.sh

# (The helpers' variables are global and start with `_`: ours start with `bs_`.)
[ -n "$bs_client" ] || bs_client=$(pwd)/build/bench_client
bs_lib=$SSERVER_LIB
if [ "${QUICK:-0}" = 1 ]; then
    bs_rounds=1; bs_secs=1; bs_warm=0
else
    bs_rounds=${BENCH_ROUNDS:-5}; bs_secs=${BENCH_SECONDS:-5}; bs_warm=1
fi
bs_slices=${BENCH_SLICES:-1}
[ "${QUICK:-0}" = 1 ] && bs_slices=1
bs_slice_secs=$(awk -v s="$bs_secs" -v k="$bs_slices" 'BEGIN { printf "%.3f", s / k }')
bs_nclients=${BENCH_CLIENTS:-8}
bs_protos=${BENCH_PROTOCOLS:-tls12 tls13}
bs_servers=${BENCH_SERVERS:-nginx apache}
bs_min_resumed=${BENCH_MIN_RESUMED:-0.9}
bs_seg=bench$$
bs_failed=0

ok() { echo "ok - $1"; }
fail() { bs_failed=$((bs_failed + 1)); echo "FAIL - $1"; }
note() { echo "# $1"; }

bs_root=$(mktemp -d "${TMPDIR:-/tmp}/sesscache-bench-servers.XXXXXX") || { fail "mktemp"; exit 1; }
chmod 0755 "$bs_root"   # the servers' workers (nobody, www-data) read under it

# Both servers of a kind run at once: the helpers keep one server's pids in their globals,
# so each configuration's are saved here (PID_a, WORKERS_a, PORT_a, …) and put back to stop it.
PID_a=; PID_b=; WORKERS_a=; WORKERS_b=; PORT_a=; PORT_b=
bs_kind=
stop_cfg() { # a|b: stops that server of the current kind, if it runs
    eval "bs_pid=\$PID_$1; bs_workers=\$WORKERS_$1"
    [ -n "$bs_pid" ] || return 0
    case $bs_kind in
        nginx) NGX_PID=$bs_pid; NGX_WORKERS=$bs_workers; ngx_stop ;;
        apache) APACHE_PID=$bs_pid; apache_stop ;;
    esac
    bs_rc=$?
    eval "PID_$1=; WORKERS_$1="
    return $bs_rc
}
cleanup() {
    trap - EXIT INT TERM HUP
    stop_cfg a; stop_cfg b
    rm -f /dev/shm/sesscache-"$bs_seg"-*
    rm -rf "$bs_root"
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 1' INT TERM HUP

# The configurations' names in the summary lines, and what they are.
cfg_name() { # KIND a|b
    case $1-$2 in
        nginx-a) echo 'shared:SSL:10m' ;; nginx-b) echo 'none+shm' ;;
        apache-a) echo 'shmcb' ;; apache-b) echo 'none+shm+force' ;;
    esac
}

# start_cfg KIND a|b: starts that server in $bs_root/KIND-CFG, saves its pids and port.
start_cfg() {
    bs_d=$bs_root/$1-$2
    mkdir -p "$bs_d"
    cp "$bs_root/cert.pem" "$bs_root/key.pem" "$bs_d/"
    : >"$bs_d/stats"; chmod 0666 "$bs_d/stats"   # written by every process, workers too
    # B: the library preloaded, its counters written at exit (SESSCACHE_STATS; the periodic
    # line, once a minute, costs nothing here) for the check that it did the resuming.
    case $1-$2 in
        nginx-a) NGX_SSL_SESSION_CACHE=shared:SSL:10m; ngx_start "$bs_d" ;;
        nginx-b) NGX_SSL_SESSION_CACHE=none
                 ngx_start "$bs_d" LD_PRELOAD="$bs_lib" SESSCACHE_STATS="$bs_d/stats" \
                     SESSCACHE_URL="shm:$bs_seg-nginx" ;;
        apache-a) APACHE_SESSION_TICKETS=off; apache_start "$bs_d" prefork shmcb ;;
        apache-b) APACHE_SESSION_TICKETS=off
                  apache_start "$bs_d" prefork none LD_PRELOAD="$bs_lib" SESSCACHE_STATS="$bs_d/stats" \
                      SESSCACHE_URL="shm:$bs_seg-apache?force=1" ;;
    esac
    bs_rc=$?
    NGX_SSL_SESSION_CACHE=; APACHE_SESSION_TICKETS=
    [ $bs_rc -eq 0 ] || return 1
    case $1 in
        nginx) eval "PID_$2=\$NGX_PID; WORKERS_$2=\$NGX_WORKERS; PORT_$2=\$NGX_PORT" ;;
        apache) eval "PID_$2=\$APACHE_PID; PORT_$2=\$APACHE_PORT" ;;
    esac
    # Cleared, so that no helper stops this server by mistake: stop_cfg puts them back.
    NGX_PID=; NGX_WORKERS=; APACHE_PID=
}

# server_ticks a|b: the CPU time (user + system, in clock ticks) that server's processes
# have used so far: the master or parent and its children (nginx's workers, httpd's).
server_ticks() {
    eval "bs_tpid=\$PID_$1"
    for bs_p in $bs_tpid $(ps -o pid= --ppid "$bs_tpid" 2>/dev/null); do
        cat "/proc/$bs_p/stat" 2>/dev/null
    done | awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}
bs_hz=$(getconf CLK_TCK)

kv() { echo "$1" | awk -v k="$2" '{ for (i = 1; i < NF; i += 2) if ($i == k) print $(i + 1) }'; }

# measure a|b PROTO SECONDS: runs the clients against that server; sets M_RATE, M_FRAC,
# M_OK, M_RES; false (after a FAIL line) when the client failed or too little resumed.
measure() {
    eval "bs_port=\$PORT_$1"
    # (httpd is configured without mod_dir: no index for `/`, so the page is named.)
    case $bs_kind in apache) bs_path=/index.html ;; *) bs_path=/ ;; esac
    bs_tk0=$(server_ticks "$1")
    bs_out=$("$bs_client" --port "$bs_port" --path "$bs_path" --clients "$bs_nclients" --seconds "$3" \
        "--$(echo "$2" | sed 's/tls1/tls1_/')" 2>"$bs_root/client.err")
    bs_rc=$?
    M_TICKS=$(( $(server_ticks "$1") - bs_tk0 ))
    M_RATE=$(kv "$bs_out" conns_per_s); M_FRAC=$(kv "$bs_out" resumed_fraction)
    M_OK=$(kv "$bs_out" ok); M_RES=$(kv "$bs_out" resumed); M_FAIL=$(kv "$bs_out" failed)
    M_SECS=$(kv "$bs_out" seconds)
    if [ $bs_rc -ne 0 ] || [ -z "$M_RATE" ]; then
        fail "$bs_kind $2 $(cfg_name "$bs_kind" "$1"): the client failed (exit $bs_rc): $bs_out"
        sed 's/^/#   /' "$bs_root/client.err"
        return 1
    fi
    if ! awk -v f="$M_FRAC" -v m="$bs_min_resumed" 'BEGIN { exit !(f >= m) }'; then
        fail "$bs_kind $2 $(cfg_name "$bs_kind" "$1"): only $M_FRAC of the connections resumed (want >= $bs_min_resumed): $bs_out"
        return 1
    fi
    eval "RESUMED_$1=\$((RESUMED_$1 + M_RES))"
    return 0
}

# div N D FMT: N/D printed with FMT (0 when D is 0)
div() { awk -v n="$1" -v d="$2" -v f="$3" 'BEGIN { printf f "\n", (d > 0 ? n / d : 0) }'; }

# add_measurement a|b: adds the last measurement (M_*) to that configuration's totals for
# the round (bs_rok_, bs_rres_, bs_rsec_, bs_fail_, bs_rticks_) and for the protocol (bs_ok_, bs_res_,
# bs_nfail_).
add_measurement() {
    eval "bs_rok_$1=\$((bs_rok_$1 + M_OK)); bs_rres_$1=\$((bs_rres_$1 + M_RES)); bs_fail_$1=\$((bs_fail_$1 + M_FAIL))"
    eval "bs_rticks_$1=\$((bs_rticks_$1 + M_TICKS))"
    eval "bs_rsec_$1=\$(awk -v t=\"\$bs_rsec_$1\" -v s=\"\$M_SECS\" 'BEGIN { print t + s }')"
    eval "bs_ok_$1=\$((bs_ok_$1 + M_OK)); bs_res_$1=\$((bs_res_$1 + M_RES)); bs_nfail_$1=\$((bs_nfail_$1 + M_FAIL))"
}

# median, min and max of the numbers on standard input (one a line), printed with the
# printf format FMT (e.g. %.1f)
stats3() { # FMT
    sort -g | awk -v f="$1" '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan nan nan"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf f " " f " " f "\n", m, v[1], v[NR] }'
}
lines() { for bs_x in "$@"; do echo "$bs_x"; done; }

# The segment's hits (the counters are the whole segment's: the line with the most lookups,
# from the last process to exit, has them all).
seg_hits() {
    sort -t= -k3,3n "$1" 2>/dev/null | tail -n 1 | sed -n 's/.* hits=\([0-9]*\).*/\1/p'
}

# ---- preconditions ----------------------------------------------------------------------
[ -f "$bs_lib" ] || { fail "$bs_lib is missing: run 'make lib' first"; exit 1; }
[ -x "$bs_client" ] || { fail "$bs_client is missing: run 'make build/bench_client' first"; exit 1; }
[ "$(id -u)" -eq 0 ] || note "not root: nginx and httpd need root here (their configurations name users as root would)"
sserver_cert "$bs_root" || { fail "openssl could not make a certificate"; exit 1; }
bs_t0=$(date +%s)
bs_sl=; [ "$bs_slices" -gt 1 ] && bs_sl=" (in $bs_slices slices)"
note "$(date -u '+%Y-%m-%d %H:%M UTC'): $bs_rounds rounds of $bs_secs s per configuration$bs_sl, $bs_nclients clients, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
note "$(openssl version); nginx $("$NGX_BIN" -v 2>&1 | sed 's/^nginx version: nginx\///'); $("$APACHE_BIN" -v 2>/dev/null | sed -n 's/^Server version: //p')"

for bs_kind in $bs_servers; do
    case $bs_kind in
        nginx) [ -x "$NGX_BIN" ] || { fail "nginx is not installed ($NGX_BIN): scripts/deps.sh install"; continue; } ;;
        apache) [ -x "$APACHE_BIN" ] || { fail "apache2 is not installed ($APACHE_BIN): scripts/deps.sh install"; continue; } ;;
        *) fail "unknown server '$bs_kind' in BENCH_SERVERS (nginx, apache)"; continue ;;
    esac
    bs_na=$(cfg_name "$bs_kind" a); bs_nb=$(cfg_name "$bs_kind" b)
    rm -f "/dev/shm/sesscache-$bs_seg-$bs_kind"
    if ! start_cfg "$bs_kind" a 2>"$bs_root/start.err" || ! start_cfg "$bs_kind" b 2>>"$bs_root/start.err"; then
        fail "$bs_kind: a server did not start"
        sed 's/^/#   /' "$bs_root/start.err" | tail -n 20
        stop_cfg a; stop_cfg b
        continue
    fi
    ok "$bs_kind: $bs_na on port $PORT_a, $bs_nb on port $PORT_b"
    RESUMED_b=0
    for bs_proto in $bs_protos; do
        case $bs_proto in tls12|tls13) ;; *) fail "unknown protocol '$bs_proto' in BENCH_PROTOCOLS (tls12, tls13)"; continue ;; esac
        RESUMED_a=0; bs_ok_a=0; bs_ok_b=0; bs_res_a=0; bs_res_b=0; bs_nfail_a=0; bs_nfail_b=0
        bs_rates_a=; bs_rates_b=; bs_ratios=; bs_cpus_a=; bs_cpus_b=; bs_bad=0
        if [ "$bs_warm" -gt 0 ]; then
            measure a "$bs_proto" "$bs_warm" && measure b "$bs_proto" "$bs_warm" || bs_bad=1
        fi
        bs_r=1
        while [ $bs_r -le "$bs_rounds" ] && [ $bs_bad -eq 0 ]; do
            # Odd rounds A first, even rounds B first: neither always gets the warmer machine.
            # With BENCH_SLICES=k each configuration's S seconds are k slices, alternating
            # A B B A A B …: both meet the same changes in the machine's other load.
            if [ $((bs_r % 2)) -eq 1 ]; then bs_order="a b"; bs_first=$bs_na; else bs_order="b a"; bs_first=$bs_nb; fi
            bs_rok_a=0; bs_rok_b=0; bs_rres_a=0; bs_rres_b=0; bs_rsec_a=0; bs_rsec_b=0; bs_fail_a=0; bs_fail_b=0
            bs_rticks_a=0; bs_rticks_b=0
            bs_s=1
            while [ $bs_s -le "$bs_slices" ] && [ $bs_bad -eq 0 ]; do
                for bs_c in $bs_order; do
                    measure "$bs_c" "$bs_proto" "$bs_slice_secs" && add_measurement "$bs_c" || { bs_bad=1; break; }
                done
                bs_order=$(echo "$bs_order" | awk '{ print $2, $1 }')
                bs_s=$((bs_s + 1))
            done
            [ $bs_bad -eq 0 ] || break
            # The round's rate of each: its connections over its seconds, all slices together.
            bs_rate_a=$(div "$bs_rok_a" "$bs_rsec_a" %.1f); bs_frac_a=$(div "$bs_rres_a" "$bs_rok_a" %.4f)
            bs_rate_b=$(div "$bs_rok_b" "$bs_rsec_b" %.1f); bs_frac_b=$(div "$bs_rres_b" "$bs_rok_b" %.4f)
            bs_ratio=$(div "$bs_rate_b" "$bs_rate_a" %.3f)
            # The servers' own CPU time per connection, in µs: less sensitive to the
            # machine's other load than connections per second (a note, not a summary field).
            bs_cpu_a=$(div $((bs_rticks_a * 1000000 / bs_hz)) "$bs_rok_a" %.0f)
            bs_cpu_b=$(div $((bs_rticks_b * 1000000 / bs_hz)) "$bs_rok_b" %.0f)
            bs_cpus_a="$bs_cpus_a $bs_cpu_a"; bs_cpus_b="$bs_cpus_b $bs_cpu_b"
            bs_rates_a="$bs_rates_a $bs_rate_a"; bs_rates_b="$bs_rates_b $bs_rate_b"; bs_ratios="$bs_ratios $bs_ratio"
            note "$bs_kind $bs_proto round $bs_r/$bs_rounds ($bs_first first): $bs_na $bs_rate_a conns/s (resumed $bs_frac_a, failed $bs_fail_a), $bs_nb $bs_rate_b conns/s (resumed $bs_frac_b, failed $bs_fail_b), ratio $bs_ratio; server CPU per connection $bs_cpu_a µs and $bs_cpu_b µs"
            bs_r=$((bs_r + 1))
        done
        [ $bs_bad -eq 0 ] || continue
        set -- $(lines $bs_rates_a | stats3 %.1f); bs_med_a=$1
        set -- $(lines $bs_rates_b | stats3 %.1f); bs_med_b=$1
        set -- $(lines $bs_ratios | stats3 %.3f); bs_rmed=$1; bs_rmin=$2; bs_rmax=$3
        bs_fa=$(div "$bs_res_a" "$bs_ok_a" %.4f); bs_fb=$(div "$bs_res_b" "$bs_ok_b" %.4f)
        note "$bs_kind $bs_proto: $bs_na median $bs_med_a conns/s (resumed $bs_fa, failed $bs_nfail_a of $((bs_ok_a + bs_nfail_a))); $bs_nb median $bs_med_b conns/s (resumed $bs_fb, failed $bs_nfail_b of $((bs_ok_b + bs_nfail_b))); ratio $bs_nb/$bs_na median $bs_rmed (min $bs_rmin, max $bs_rmax) over $bs_rounds rounds"
        set -- $(lines $bs_cpus_a | stats3 %.0f); bs_cmed_a=$1
        set -- $(lines $bs_cpus_b | stats3 %.0f); bs_cmed_b=$1
        note "$bs_kind $bs_proto: server CPU per connection, median: $bs_na $bs_cmed_a µs, $bs_nb $bs_cmed_b µs (ratio $(div "$bs_cmed_b" "$bs_cmed_a" %.3f))"
        bs_line_a="server $bs_kind $bs_proto $bs_na $bs_med_a $bs_fa 1.000 1.000 1.000"
        bs_line_b="server $bs_kind $bs_proto $bs_nb $bs_med_b $bs_fb $bs_rmed $bs_rmin $bs_rmax"
        echo "$bs_line_a"; echo "$bs_line_b"
        if [ -n "$bs_out_file" ]; then
            printf '%s\n%s\n' "$bs_line_a" "$bs_line_b" >>"$bs_out_file" || fail "cannot append to BENCH_OUT=$bs_out_file"
        fi
    done
    # Stop both (every process writes its SESSCACHE_STATS line at exit), then check that
    # sesscache is what resumed B's sessions.
    stop_cfg a || fail "$bs_kind $bs_na: the server did not stop in time (killed)"
    stop_cfg b || fail "$bs_kind $bs_nb: the server did not stop in time (killed)"
    bs_hits=$(seg_hits "$bs_root/$bs_kind-b/stats")
    if [ "$RESUMED_b" -eq 0 ]; then
        note "$bs_kind $bs_nb: no measurement completed: sesscache's counters not checked"
    elif [ "${bs_hits:-0}" -ge "$RESUMED_b" ]; then
        ok "$bs_kind $bs_nb: sesscache's segment counted $bs_hits hits for the $RESUMED_b resumptions the clients saw"
    else
        fail "$bs_kind $bs_nb: sesscache's segment counted ${bs_hits:-no} hits for the $RESUMED_b resumptions the clients saw"
        sed 's/^/#   /' "$bs_root/$bs_kind-b/stats" | tail -n 5
    fi
    if [ "$bs_failed" -gt 0 ]; then
        for bs_f in "$bs_root/$bs_kind"-[ab]/error.log "$bs_root/$bs_kind"-[ab]/stderr "$bs_root/$bs_kind"-[ab]/nginx.out; do
            [ -s "$bs_f" ] && { note "$bs_f:"; tail -n 10 "$bs_f" | sed 's/^/#   /'; }
        done
    fi
    rm -f "/dev/shm/sesscache-$bs_seg-$bs_kind"
done

note "took $(( $(date +%s) - bs_t0 )) s; load average now $(cut -d' ' -f1-3 /proc/loadavg) (the machine's other work shows in the spread of the ratios)"
cleanup
if [ "$bs_failed" -gt 0 ]; then echo "bench-servers: $bs_failed failed"; exit 1; fi
echo "bench-servers: ok"
exit 0
