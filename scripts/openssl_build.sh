#!/bin/sh
# Builds OpenSSL versions from source for the compatibility matrix (make compat,
# c-tests/compat.sh), each into a prefix of its own in a cache that survives between runs:
#
#   sh scripts/openssl_build.sh VERSION…   build the versions missing from the cache
#   sh scripts/openssl_build.sh prefix VERSION
#                                          print the prefix of VERSION (built or not)
#
# VERSION is an openssl-src crate version (111.28.2+1.1.1w, 300.5.5+3.5.5, …): Cargo
# fetches the crate (a throwaway project under build/openssl-fetch/), whose openssl/ folder
# is the OpenSSL source. Its tree lacks the test suite, the fuzzers and what OpenSSL's own
# shared build needs, so OpenSSL is configured static (no-shared) with -fPIC, and the shared
# libraries are made here from the static ones, with OpenSSL's SONAMEs (libssl.so.1.1,
# .so.3, .so.4). The `openssl` program is linked again, dynamically against them (rpath to
# the prefix): a preloaded libsesscache.so must be able to interpose its libssl calls.
#
# The prefix, $SESSCACHE_OPENSSL_CACHE (default ~/.cache/sesscache/openssl)/VERSION-HASH
# (HASH: of this script, so a change here builds again), holds include/, lib/ (libssl.so.N,
# libcrypto.so.N, the unversioned links, the .a files, pkgconfig/), bin/openssl and ssl/
# (OPENSSLDIR, with openssl.cnf). Its file .complete is written last: a prefix without it
# (an interrupted build) is built again, one with it is reused. One build runs `make -j2`
# (MAKE_JOBS); the time each took goes to the prefix's build-time file.
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${SESSCACHE_OPENSSL_CACHE:-$HOME/.cache/sesscache/openssl}
HASH=$(sha256sum "$ROOT/scripts/openssl_build.sh" | cut -c 1-12)
JOBS=${MAKE_JOBS:-2}

prefix_of() { echo "$CACHE/$1-$HASH"; }

# The unpacked openssl-src crate of version $1, fetched by Cargo into its own registry.
crate_source() {
    fetch=$ROOT/build/openssl-fetch/$1
    mkdir -p "$fetch"
    # [workspace]: not a member of the tree's workspace above it.
    cat >"$fetch/Cargo.toml" <<EOF
[package]
name = "openssl-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "lib.rs"

[dependencies]
openssl-src = "=$1"

[workspace]
EOF
    : >"$fetch/lib.rs"
    cargo metadata --quiet --format-version 1 --manifest-path "$fetch/Cargo.toml" |
        python3 -c 'import json, os, sys
m = json.load(sys.stdin)
print(os.path.dirname(next(p["manifest_path"] for p in m["packages"] if p["name"] == "openssl-src")))'
}

build() {
    ver=$1
    prefix=$(prefix_of "$ver")
    if [ -f "$prefix/.complete" ]; then
        echo "openssl $ver: reusing $prefix"
        return 0
    fi
    src=$(crate_source "$ver")/openssl
    [ -f "$src/Configure" ] || { echo "openssl $ver: no OpenSSL source in $src" >&2; return 1; }
    echo "openssl $ver: building from $src into $prefix"
    t0=$(date +%s)
    work=$CACHE/build-$ver
    rm -rf "$work" "$prefix"
    mkdir -p "$CACHE"
    cp -R "$src" "$work"
    cd "$work"

    # Static, position-independent, no tests (their sources are not in the crate), the
    # providers built into libcrypto (no-module, 3.0 on). `config` guesses the target
    # (1.1.1's Configure needs one named). Only the libraries and programs are built below,
    # so no-docs (3.2 on) is not needed.
    case $ver in
        111.*) opts="no-tests" ;;
        *) opts="no-tests no-module" ;;
    esac
    # shellcheck disable=SC2086 # a list of options
    ./config --prefix="$prefix" --openssldir="$prefix/ssl" --libdir=lib \
        no-shared $opts no-comp no-zlib -fPIC >configure.log 2>&1 ||
        { tail -n 30 configure.log; return 1; }
    # build_programs builds the libraries first (naming build_libs too would run two makes
    # at once over the same objects).
    make -j"$JOBS" build_programs >make.log 2>&1 || { tail -n 40 make.log; return 1; }
    # Headers, static libraries, pkg-config files; OPENSSLDIR with openssl.cnf (the 3.5 and
    # later crates lack apps/openssl.cnf: a minimal one then, enough for `openssl req`).
    make install_dev >install.log 2>&1 || { tail -n 30 install.log; return 1; }
    if [ -f apps/openssl.cnf ]; then
        make install_ssldirs >>install.log 2>&1 || { tail -n 30 install.log; return 1; }
    else
        mkdir -p "$prefix/ssl"
        printf '# No apps/openssl.cnf in this source: written by scripts/openssl_build.sh.\n[req]\ndistinguished_name = req_dn\n[req_dn]\n' \
            >"$prefix/ssl/openssl.cnf"
    fi

    # The shared libraries, from the static ones: every object of the archive, every
    # symbol exported, nothing left undefined.
    sover=$(sed -n 's/^SHLIB_VERSION_NUMBER=//p' Makefile)
    ex_libs="$(sed -n 's/^CNF_EX_LIBS=//p' Makefile) $(sed -n 's/^EX_LIBS=//p' Makefile)"
    lib=$prefix/lib
    for l in crypto ssl; do
        [ $l = ssl ] && dep="-L$lib -lcrypto -Wl,-rpath,$lib" || dep=
        # shellcheck disable=SC2086 # lists of options
        ${CC:-cc} -shared -o "$lib/lib$l.so.$sover" -Wl,-soname,"lib$l.so.$sover" -Wl,-z,defs \
            -Wl,--whole-archive "lib$l.a" -Wl,--no-whole-archive $dep $ex_libs
        ln -sf "lib$l.so.$sover" "$lib/lib$l.so"
    done

    # apps/openssl again, with the Makefile's own link line, the static libraries replaced
    # by the shared ones: 3.x names them ./libssl.a ./libcrypto.a, 1.1.1 -lssl -lcrypto
    # found in the build directory (-L.), where only the .a files are.
    rm -f apps/openssl
    make -n apps/openssl | sed -n '/^rm -f apps\/openssl$/,$p' | grep -v '^make' >relink.sh
    sed -i -e "s# \./libssl\.a # -lssl #; s# \./libcrypto\.a # -lcrypto #" \
        -e "s# -L\. # -L$lib -Wl,-rpath,$lib #" relink.sh
    sh -e relink.sh >relink.log 2>&1 || { cat relink.sh relink.log; return 1; }
    mkdir -p "$prefix/bin"
    cp apps/openssl "$prefix/bin/openssl"

    # The checks: the program says its version and loads the prefix's libssl.
    want=${ver#*+}
    got=$("$prefix/bin/openssl" version)
    case $got in
        "OpenSSL $want "*) ;;
        *) echo "openssl $ver: bin/openssl says '$got', not $want" >&2; return 1 ;;
    esac
    ldd "$prefix/bin/openssl" | grep -q "libssl.so.$sover => $lib/libssl.so.$sover" ||
        { ldd "$prefix/bin/openssl"; echo "openssl $ver: bin/openssl does not load $lib's libssl" >&2; return 1; }

    cd "$ROOT"
    rm -rf "$work"
    # The prefixes of this version built by other versions of this script.
    for old in "$CACHE/$ver"-*; do [ "$old" = "$prefix" ] || rm -rf "$old"; done
    took=$(($(date +%s) - t0))
    echo "$took" >"$prefix/build-time"
    echo "$got" >"$prefix/.complete"
    echo "openssl $ver: $got built in $took s"
}

case ${1:-} in
    "") echo "usage: sh scripts/openssl_build.sh VERSION… | prefix VERSION" >&2; exit 2 ;;
    prefix) prefix_of "$2" ;;
    *) for v; do (build "$v") || { echo "openssl $v: BUILD FAILED" >&2; exit 1; }; done ;;
esac
