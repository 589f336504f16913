#!/bin/sh
# OpenSSL's own test suite with libsesscache.so preloaded and unconfigured (make
# openssl-suite): the library must be transparent without SESSCACHE_URL, so every test that
# passes without it must pass with it.
#
#   sh scripts/openssl_suite.sh [TARBALL]
#
# TARBALL: an upstream OpenSSL source tarball (openssl-X.Y.Z.tar.gz, or Debian's
# openssl_X.Y.Z.orig.tar.gz). Without one ($OPENSSL_TARBALL is the same), a tarball
# already in the cache whose major version is the system's OpenSSL's is reused, else
# `apt-get source --download-only openssl` fetches Debian's upstream tarball: that needs a
# deb-src entry in the apt sources (and `apt-get update` since), and gives the version in the
# archive, which may be newer than the installed one (same ABI series: checked below).
#
# Needs: the library built (target/release/libsesscache.so, `make lib`; SESSCACHE_SO names
# another), cc, make, perl with its core modules (Test::More, Test::Harness), readelf, and
# about 1 GB in the cache. Its steps:
#   build   the source unpacked into $SESSCACHE_OPENSSL_SUITE_CACHE (default
#           ~/.cache/sesscache/openssl-suite)/VERSION, `./Configure shared`, `make -j2`
#           (MAKE_JOBS) of the libraries, programs and test programs (5 to 6 min on two
#           cores), in place: the tests run from the build tree. Reused while its .built
#           file says the same build (a build interrupted or of another recipe is redone).
#           Upstream links libssl with -Wl,-Bsymbolic, so libssl's calls to its own
#           functions (SSL_new's SSL_clear, SSL_CTX_new's SSL_CTX_new_ex, SSL_free's
#           internal uses, ...) never reach an interposer; Debian (and other distributions)
#           drop it, and their libssl is the one the library is preloaded over. It is dropped
#           here too (OPENSSL_SUITE_SYMBOLIC=1 keeps it), and checked: libssl.so must have
#           dynamic relocations for SSL_CTX_new_ex, SSL_free and SSL_clear.
#   plain   `make run_tests TESTS=...` without LD_PRELOAD: every test's result.
#   preload the same with LD_PRELOAD=libsesscache.so, LD_DEBUG=files to files (no output
#           on the terminal): every run of one of the tree's programs (test/*, apps/openssl,
#           fuzz/*) must have initialised the library and the tree's libssl, not the
#           system's. One test program is run again under LD_DEBUG=bindings (LD_BIND_NOW):
#           its SSL_CTX_new_ex and libssl's SSL_free must bind to the library.
#   compare each test: ok when it passes (or is skipped for the same reason) with the
#           preload as without; FAIL when it fails with the library, or fails without it
#           (then nothing is shown).
# OPENSSL_SUITE_TESTS: the tests (OpenSSL's names, "test_sslapi test_dtls"; "all" for the
# whole suite, about ten times as long); default: the TLS, DTLS and session ones below.
# HARNESS_JOBS (OpenSSL's own) runs that many tests at once. The logs stay in the cache
# directory (plain.log, preload.log, ld/). Prints ok/FAIL lines and "openssl-suite: N passed,
# M failed"; exits non-zero on a failure.
set -u
# Unconfigured: none of the library's settings (SESSCACHE_LOG does not configure a cache
# but writes to stderr, which some tests compare).
for v in $(env | sed -n 's/^\(SESSCACHE_[A-Z_]*\)=.*/\1/p'); do
    case $v in SESSCACHE_SO | SESSCACHE_OPENSSL_SUITE_CACHE) ;; *) unset "$v" ;; esac
done
unset LD_PRELOAD LD_DEBUG LD_DEBUG_OUTPUT LD_BIND_NOW

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SO=${SESSCACHE_SO:-$ROOT/target/release/libsesscache.so}
CACHE=${SESSCACHE_OPENSSL_SUITE_CACHE:-$HOME/.cache/sesscache/openssl-suite}
JOBS=${MAKE_JOBS:-2}
SUITE=openssl-suite
. c-tests/checks.sh
t_start=$(date +%s)
# The SSL tests of OpenSSL 3.x: the C programs that make SSL objects (sslapitest,
# ssl_test, ssl_old_test, dtlstest, ...) and the TLSProxy ones (s_server and s_client
# under a proxy). A name the version lacks is left out (and said).
DEFAULT_TESTS="test_sanity test_app_s_client test_asyncio test_bad_dtls test_cipherbytes
test_cipherlist test_ciphername test_clienthello test_dane test_dtls test_dtls_mtu
test_dtlsv1listen test_fatalerr test_recordlen test_servername test_shlibload test_ssl_ctx
test_ssl_new test_ssl_old test_ssl_test_ctx test_sslapi test_sslbuffers test_sslcbcpadding
test_sslcertstatus test_sslcorrupt test_sslextension test_sslmessages test_sslrecords
test_sslsessiontick test_sslsigalgs test_sslsignature test_sslskewith0p test_sslversions
test_sslvertol test_sysdefault test_tls13alerts test_tls13ccs test_tls13cookie
test_tls13downgrade test_tls13encryption test_tls13hrr test_tls13kexmodes
test_tls13messages test_tls13psk test_tls13secrets test_tls13ticket test_tlsextms"
SYMBOLIC=${OPENSSL_SUITE_SYMBOLIC:-0}
# The build recipe, in the .built file: a change to it builds again.
RECIPE="Configure shared; symbolic=$SYMBOLIC"

die() { echo "openssl-suite: $1" >&2; fail "$1"; finish; }

[ -f "$SO" ] || die "no $SO: build the library first (make lib)"
for c in cc make perl readelf tar; do
    command -v "$c" >/dev/null 2>&1 || die "needs $c"
done
perl -MTest::More -MTest::Harness -e 1 2>/dev/null || die "needs perl's Test::More and Test::Harness"
sysver=$(openssl version 2>/dev/null | sed -n 's/^OpenSSL \([0-9][0-9.]*\).*/\1/p')
sysmajor=${sysver%%.*}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$CACHE" || die "cannot make $CACHE"

# ---- the tarball -------------------------------------------------------------------------
tarball=${1:-${OPENSSL_TARBALL:-}}
if [ -z "$tarball" ]; then
    for t in "$CACHE"/openssl*"${sysmajor:-X}".*.tar.gz; do
        [ -f "$t" ] && tarball=$t
    done
fi
if [ -z "$tarball" ]; then
    echo "openssl-suite: no tarball given: apt-get source --download-only openssl"
    if (cd "$tmp" && apt-get source --download-only openssl >apt.log 2>&1); then :; else
        sed 's/^/#   /' "$tmp/apt.log" | tail -n 5
    fi
    # The upstream tarball is what matters (Debian's patch tarball may be missing).
    for t in "$tmp"/openssl_*.orig.tar.gz; do
        [ -f "$t" ] && { cp "$t" "$CACHE/" && tarball=$CACHE/${t##*/}; }
    done
    [ -n "$tarball" ] || die "no OpenSSL tarball: pass one (sh scripts/openssl_suite.sh openssl-X.Y.Z.tar.gz), or add a deb-src entry for apt-get source"
fi
[ -f "$tarball" ] || die "no such tarball: $tarball"
top=$(tar tzf "$tarball" 2>/dev/null | head -n 1 | cut -d / -f 1)
case $top in
    openssl-[0-9]*) version=${top#openssl-} ;;
    *) die "$tarball is not an OpenSSL source tarball (top directory '$top')" ;;
esac
if [ -n "$sysmajor" ] && [ "${version%%.*}" != "$sysmajor" ]; then
    die "OpenSSL $version is not of the system's series ($sysver): the library is built against the system's headers"
fi
tree=$CACHE/$version

# ---- build -------------------------------------------------------------------------------
if [ -f "$tree/.built" ] && [ "$(cat "$tree/.built")" = "$RECIPE" ]; then
    ok "build: OpenSSL $version reused from $tree"
else
    echo "openssl-suite: building OpenSSL $version in $tree (make -j$JOBS, several minutes)"
    t0=$(date +%s)
    rm -rf "$tree" "$CACHE/$top"
    if tar xzf "$tarball" -C "$CACHE" && { [ "$CACHE/$top" = "$tree" ] || mv "$CACHE/$top" "$tree"; } &&
        (cd "$tree" && ./Configure shared >configure.log 2>&1); then :; else
        show "$tree/configure.log"; die "build: OpenSSL $version does not configure"
    fi
    if [ "$SYMBOLIC" != 1 ]; then
        sed -i 's/^\(LIB_LDFLAGS=.*\) -Wl,-Bsymbolic/\1/' "$tree/Makefile"
    fi
    # build_sw: libraries, engines, providers and every program, the tests' included; not
    # the manual pages.
    (cd "$tree" && make -j"$JOBS" build_sw >make.log 2>&1) ||
        { show "$tree/make.log"; die "build: OpenSSL $version does not build"; }
    echo "$RECIPE" >"$tree/.built"
    ok "build: OpenSSL $version built in $(($(date +%s) - t0)) s"
fi
got=$(cd "$tree" && util/wrap.pl apps/openssl version 2>&1)
case $got in
    "OpenSSL $version "*) ok "build: the tree's openssl says $got" ;;
    *) fail "build: the tree's openssl says '$got', not $version" ;;
esac
if [ "$SYMBOLIC" != 1 ]; then
    rel=$(readelf -rW "$tree/libssl.so.3" "$tree"/libssl.so.[0-9]* 2>/dev/null |
        grep -oE ' (SSL_CTX_new_ex|SSL_free|SSL_clear)@' | sort -u | wc -l)
    check "$rel" 3 "build: libssl is linked without -Bsymbolic (relocations for its own SSL_CTX_new_ex, SSL_free, SSL_clear)"
fi

# ---- the tests ---------------------------------------------------------------------------
want=${OPENSSL_SUITE_TESTS:-$DEFAULT_TESTS}
tests=
if [ "$want" = all ]; then
    for r in "$tree"/test/recipes/[0-9][0-9]-test_*.t; do
        n=${r##*/[0-9][0-9]-}; tests="$tests ${n%.t}"
    done
else
    for t in $want; do
        if ls "$tree"/test/recipes/[0-9][0-9]-"$t".t >/dev/null 2>&1; then tests="$tests $t"
        else echo "# $t: not in OpenSSL $version, left out"; fi
    done
fi
[ -n "$tests" ] || die "no tests to run"
# shellcheck disable=SC2086 # a list
set -- $tests
echo "openssl-suite: OpenSSL $version, $# tests:$tests"

# Runs the tests (the rest of the command line: the environment); its log: $1.
run() { # LOG [VAR=VALUE...]
    log=$1; shift
    t0=$(date +%s)
    (cd "$tree" && env "$@" make run_tests TESTS="$tests" >"$log" 2>&1)
    echo "$?:$(($(date +%s) - t0))"
}

# The result of test $2 in log $1: ok, "skipped: REASON", or what the harness said.
result() { # LOG TEST
    line=$(grep -E "^(\[[0-9:]+\] )?[0-9][0-9]-$2\.t \.+" "$1" | tail -n 1)
    r=$(printf '%s\n' "$line" | sed -E 's/^.*\.t \.+ ?//; s/ +[0-9]+ ms$//')
    case $r in
        ok* | skipped*) echo "$r" ;;
        "") if grep -qE "^[0-9][0-9]-$2\.t \.+ *\$" "$1"; then echo "failed"; else echo "no result"; fi ;;
        *) echo "failed: $r" ;;
    esac
}

r_plain=$(run "$CACHE/plain.log" -u LD_PRELOAD)
echo "# without the library: exit ${r_plain%%:*}, ${r_plain#*:} s"
rm -rf "$CACHE/ld"
mkdir -p "$CACHE/ld"
r_pre=$(run "$CACHE/preload.log" LD_PRELOAD="$SO" LD_DEBUG=files LD_DEBUG_OUTPUT="$CACHE/ld/ld")
echo "# preloaded: exit ${r_pre%%:*}, ${r_pre#*:} s"

# ---- the preload reached the tree's programs ---------------------------------------------
# Each ld.PID file: per exec, the libraries' "calling init:" lines, then "initialize
# program: NAME". A run of the tree's programs must have initialised the library, and a
# libssl from the tree (a path under it, or relative: util/wrap.pl's LD_LIBRARY_PATH).
awk -v so="$SO" '
    /calling init: / { lib = $0; sub(/.*calling init: /, "", lib)
                       if (lib == so) sc = 1
                       if (lib ~ /libssl\.so/) ssl = lib }
    /initialize program: / { p = $0; sub(/.*initialize program: /, "", p)
                       if (p ~ /(^|\/)(test|apps|fuzz)\/[^\/]+$/)
                           print p "\t" sc "\t" ((ssl == "") ? "-" : ssl)
                       sc = 0; ssl = "" }
' "$CACHE"/ld/ld.* 2>/dev/null >"$tmp/runs"
nruns=$(wc -l <"$tmp/runs")
nsc=$(awk -F '\t' '$2 == 1' "$tmp/runs" | wc -l)
nsys=$(awk -F '\t' '$3 != "-" && $3 !~ /^(util\/|\.\.?\/)/ && index($3, T) != 1' T="$tree/" "$tmp/runs" | wc -l)
if [ "$nruns" -gt 0 ] && [ "$nsc" -eq "$nruns" ]; then
    ok "preload: the library was initialised in all $nruns runs of the tree's programs"
else
    awk -F '\t' '$2 != 1 { print $1 }' "$tmp/runs" | sort | uniq -c | head -n 10 | note
    fail "preload: the library was initialised in $nsc of $nruns runs of the tree's programs"
fi
if [ "$nsys" -eq 0 ]; then
    ok "preload: every one of them used the tree's libssl"
else
    awk -F '\t' '$3 != "-" && $3 !~ /^(util\/|\.\.?\/)/ && index($3, T) != 1 { print $1 " " $3 }' \
        T="$tree/" "$tmp/runs" | sort | uniq -c | head -n 10 | note
    fail "preload: $nsys runs used a libssl from outside the tree"
fi
# The bindings, on one program (every symbol bound at start: LD_BIND_NOW).
(cd "$tree" && LD_PRELOAD="$SO" LD_BIND_NOW=1 LD_DEBUG=bindings LD_DEBUG_OUTPUT="$tmp/b" \
    util/wrap.pl test/sslapitest -help >/dev/null 2>&1)
b=$(grep -l 'initialize program: test/sslapitest' "$tmp"/b.* 2>/dev/null | head -n 1)
for pair in "test/sslapitest SSL_CTX_new_ex" "test/sslapitest SSL_CTX_ctrl" "libssl.so SSL_free" "libssl.so SSL_clear"; do
    from=${pair% *}; sym=${pair#* }
    [ "$SYMBOLIC" = 1 ] && [ "$from" = libssl.so ] && continue
    if [ -n "$b" ] && grep -E "binding file [^ ]*$from[^ ]* .* to $SO .*symbol \`$sym'" "$b" >/dev/null; then
        ok "preload: $from's $sym binds to the library"
    else
        fail "preload: $from's $sym does not bind to the library"
    fi
done

# ---- compare -----------------------------------------------------------------------------
for t in $tests; do
    a=$(result "$CACHE/plain.log" "$t")
    p=$(result "$CACHE/preload.log" "$t")
    case $a:$p in
        ok*:ok*) ok "$t: passes, as without the library" ;;
        skipped*:skipped*) check "$p" "$a" "$t: skipped, as without the library" ;;
        ok* | skipped*) fail "$t: $p with the library preloaded ($a without)" ;;
        *) fail "$t: $a without the library ($p with it): no comparison" ;;
    esac
done
for l in plain preload; do
    if grep -qE '^Result: FAIL' "$CACHE/$l.log"; then
        sed -n '/^Test Summary Report/,/^Result:/p' "$CACHE/$l.log" | head -n 30 | note
    fi
done
echo "# logs: $CACHE/plain.log, $CACHE/preload.log; $(($(date +%s) - t_start)) s in all"
finish
