#!/usr/bin/env bash
# The Debian packages the project's tests and demo need, in one list.
#
#   scripts/deps.sh check [demo]     report which are installed; exit 1 if some are missing
#   scripts/deps.sh install [demo]   install the missing ones: as root, apt-get (no service
#                                    is started: a temporary /usr/sbin/policy-rc.d refuses);
#                                    not as root, print the apt-get line to run and exit 1
#   scripts/deps.sh list [demo]      print the list, one package a line
# `demo`: only what `make demo` needs; without it, what `make check` needs (everything).
#
# What needs what: libssl-dev pkg-config make gcc binutils build the C harness and check the
# ABI; valgrind runs it under memcheck; openssl (s_server, s_client) drives the preload, shm
# and server tests and `make demo`; nginx, apache2, haproxy, python3 are the real servers of
# c-tests/shm_servers.sh and c-tests/servers.sh (python3 also drives its Python client);
# redis-server and redis-tools (redis-cli) are the Redis the redis:// tests start themselves;
# groff-base and man-db (groff, man) render the manual pages in c-tests/man_check.sh;
# gnuplot-nox draws the chart of `make bench` (and of its smoke run in `make check`);
# prometheus brings promtool, which checks the tool's Prometheus metrics in c-tests/metrics.sh
# (its server is not started: see policy-rc.d below); spin checks the model of the shm lock
# (model/shm_lock.pml, `make model`).
# Beside the Debian packages, `install` also gets cargo-fuzz (crates.io, pinned) for the fuzz
# smoke run of `make check` (scripts/fuzz.sh), which builds with the machine's nightly
# toolchain; `check` reports it. Not for `demo`.
set -euo pipefail

PACKAGES=(libssl-dev pkg-config valgrind make gcc g++ binutils openssl nginx apache2 haproxy python3 redis-server redis-tools groff-base man-db gnuplot-nox prometheus spin)
DEMO_PACKAGES=(libssl-dev pkg-config make gcc openssl python3 redis-server redis-tools)

usage() {
    echo "usage: $0 check|install|list" >&2
    exit 2
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing_packages() {
    MISSING=()
    for p in "${PACKAGES[@]}"; do
        installed "$p" || MISSING+=("$p")
    done
}

# cargo-fuzz, from crates.io, for the fuzz smoke run (g++ builds libFuzzer for it).
CARGO_FUZZ_VERSION=0.13.2
RUST_TOOLS=1

[ $# -eq 1 ] || [ $# -eq 2 ] || usage
if [ $# -eq 2 ]; then
    [ "$2" = demo ] || usage
    PACKAGES=("${DEMO_PACKAGES[@]}")
    RUST_TOOLS=0
fi

cargo_fuzz_ok() {
    cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\b" &&
        rustc +nightly --version >/dev/null 2>&1
}

# Installs cargo-fuzz when it is missing (after the Debian packages: it needs a C compiler).
rust_tools() {
    [ $RUST_TOOLS = 1 ] || return 0
    if cargo_fuzz_ok; then
        echo "deps: cargo-fuzz $CARGO_FUZZ_VERSION and the nightly toolchain are installed"
        return 0
    fi
    if ! rustc +nightly --version >/dev/null 2>&1; then
        echo "deps: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
        exit 1
    fi
    echo "deps: installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install, a few minutes)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
}
case $1 in
    list)
        printf '%s\n' "${PACKAGES[@]}"
        exit 0 ;;
    check|install) ;;
    *) usage ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps: dpkg-query not found: this script knows Debian packages only; install the equivalents of: ${PACKAGES[*]}" >&2
    exit 1
fi

missing_packages
if [ "$1" = check ]; then
    for p in "${PACKAGES[@]}"; do
        if installed "$p"; then echo "ok      $p"; else echo "missing $p"; fi
    done
    if [ $RUST_TOOLS = 1 ]; then
        if cargo_fuzz_ok; then echo "ok      cargo-fuzz $CARGO_FUZZ_VERSION (nightly)"; else echo "missing cargo-fuzz $CARGO_FUZZ_VERSION (nightly)"; MISSING+=(cargo-fuzz); fi
    fi
    if [ ${#MISSING[@]} -gt 0 ]; then
        echo "deps: ${#MISSING[@]} missing: ${MISSING[*]} (scripts/deps.sh install)" >&2
        exit 1
    fi
    echo "deps: all ${#PACKAGES[@]} packages are installed"
    exit 0
fi

# install
if [ ${#MISSING[@]} -eq 0 ]; then
    echo "deps: all ${#PACKAGES[@]} packages are installed"
    rust_tools
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${MISSING[*]}; installing needs root. Run this, then try again:" >&2
    echo "    sudo apt-get install -y -q --no-install-recommends ${MISSING[*]}" >&2
    exit 1
fi
echo "deps: installing ${MISSING[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages must not start services here (nginx, apache2 and haproxy would take ports 80 and
# 443): the tests start their own servers on loopback. An existing policy-rc.d is left as is.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${MISSING[@]}"
missing_packages
if [ ${#MISSING[@]} -gt 0 ]; then
    echo "deps: still missing after apt-get install: ${MISSING[*]}" >&2
    exit 1
fi
echo "deps: all ${#PACKAGES[@]} packages are installed"
rust_tools
