#!/bin/sh
# The fuzz targets of fuzz/ (cargo-fuzz, libFuzzer), built with the nightly toolchain:
#
#   sh scripts/fuzz.sh smoke        build every target, then run each for FUZZ_SECONDS (20)
#                                   over a copy of its committed seed corpus (make fuzz)
#   sh scripts/fuzz.sh long RUNS    run each target for RUNS executions (at most
#                                   FUZZ_MAX_SECONDS each when set) over a corpus kept in
#                                   fuzz/corpus-work/ (seeded from the committed one)
#   sh scripts/fuzz.sh build        build every target, run none (make check starts this early,
#                                   in the background, so that smoke later finds them built)
#   sh scripts/fuzz.sh list         the targets
#
# FUZZ_TARGETS: the targets to run (default: all of them); FUZZ_SANITIZER: address (the
# default, cargo-fuzz's) or none (faster, for long runs). The committed corpus
# (fuzz/corpus/TARGET) is never written to. A target that crashes, panics, leaks or hangs
# (10 s for one input) fails the run: its input is kept in fuzz/artifacts/TARGET/ and
# named; turn it into a regression test (see fuzz/README.md). Needs the nightly toolchain
# (`rustup toolchain install nightly`) and cargo-fuzz (`cargo install cargo-fuzz --version
# 0.13.2 --locked`); missing either is a failure, not a skip.
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
FUZZ="$ROOT/fuzz"
ALL="url shm_shard sealed_value callback_der ticket_record"
TARGETS=${FUZZ_TARGETS:-$ALL}
SAN=${FUZZ_SANITIZER:-address}
TRIPLE=$(rustc +nightly -vV 2>/dev/null | sed -n 's/^host: //p') || TRIPLE=
BIN="$FUZZ/target/$TRIPLE/release"
# Diagnostics of corrupt entries would flood the output: errors only.
SESSCACHE_LOG=${SESSCACHE_LOG:-error}
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
export SESSCACHE_LOG ASAN_OPTIONS

die() {
    echo "fuzz: FAILED: $*" >&2
    exit 1
}

usage() {
    echo "usage: sh scripts/fuzz.sh smoke | long RUNS | build | list" >&2
    exit 2
}

MODE=${1:-}
case $MODE in
    smoke) SECS=${FUZZ_SECONDS:-20} ;;
    build) ;;
    long)
        RUNS=${2:-}
        case $RUNS in '' | *[!0-9]*) usage ;; esac
        ;;
    list)
        echo "$ALL"
        exit 0
        ;;
    *) usage ;;
esac

[ -n "$TRIPLE" ] || die "the nightly toolchain is missing: rustup toolchain install nightly"
cargo +nightly fuzz --version >/dev/null 2>&1 ||
    die "cargo-fuzz is missing: cargo install cargo-fuzz --version 0.13.2 --locked"

start=$(date +%s)
echo "fuzz: building $TARGETS (release, debug assertions, sanitizer: $SAN)"
(cd "$FUZZ" && cargo +nightly fuzz build --sanitizer "$SAN") ||
    die "cargo +nightly fuzz build did not build the targets"
echo "fuzz: built in $(($(date +%s) - start)) s"
[ "$MODE" = build ] && exit 0

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sesscache-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
failed=""
for t in $TARGETS; do
    [ -d "$FUZZ/corpus/$t" ] || die "no target $t (targets: $ALL)"
    [ -x "$BIN/$t" ] || die "$BIN/$t was not built"
    if [ "$MODE" = smoke ]; then
        corpus="$WORK/corpus/$t"
        limit="-max_total_time=$SECS"
    else
        corpus="$FUZZ/corpus-work/$t"
        limit="-runs=$RUNS"
        [ -n "${FUZZ_MAX_SECONDS:-}" ] && limit="$limit -max_total_time=$FUZZ_MAX_SECONDS"
    fi
    mkdir -p "$corpus" "$FUZZ/artifacts/$t"
    cp "$FUZZ/corpus/$t/"* "$corpus/"
    log="$WORK/$t.log"
    t0=$(date +%s)
    rc=0
    # shellcheck disable=SC2086 # $limit is one or two options
    "$BIN/$t" $limit -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$FUZZ/artifacts/$t/" "$corpus" >"$log" 2>&1 || rc=$?
    secs=$(($(date +%s) - t0))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ] && [ -z "$crash" ]; then
        found="nothing found"
    else
        found="FOUND (exit $rc): ${crash:-no input written}"
        failed="$failed $t"
        echo "---- $t: the end of its log ----"
        grep -v '^#[0-9]' "$log" | tail -n 40
        echo "----"
    fi
    printf 'fuzz: %-13s %12s executions in %4s s (%s exec/s): %s\n' \
        "$t" "${runs:-?}" "$secs" "${rate:-?}" "$found"
done
echo "fuzz: $MODE done in $(($(date +%s) - start)) s"
[ -z "$failed" ] || die "a target failed:$failed (inputs in fuzz/artifacts/)"
