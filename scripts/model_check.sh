#!/bin/sh
# `make model`: checks model/shm_lock.pml (the shm lock's protocol, see src/store/shm/lock.rs)
# with spin, exhaustively: two configurations that must pass, and mutants of the protocol
# that must each fail, which shows that the properties can fail. Last line:
# "model: N passed, M failed".
set -u
cd "$(dirname "$0")/.."
command -v spin >/dev/null 2>&1 || { echo "model: spin is missing (Debian package spin)"; echo "model: 0 passed, 1 failed"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
cp model/shm_lock.pml "$work/"
passed=0
failed=0

# $1: name, $2: "pass" or "fail" (what spin must find), rest: spin's -D options.
check() {
    name=$1 want=$2
    shift 2
    dir="$work/$name"
    mkdir -p "$dir"
    t0=$(date +%s)
    if ! (cd "$dir" && spin "$@" -a ../shm_lock.pml >spin.log 2>&1 &&
        cc -O2 -DSAFETY -DCOLLAPSE -o pan pan.c >cc.log 2>&1); then
        echo "FAIL - $name: the model did not build"; cat "$dir/spin.log" "$dir/cc.log"
        failed=$((failed + 1)); return
    fi
    (cd "$dir" && ./pan -m100000 -w24 >pan.log 2>&1)
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$dir/pan.log" | head -n 1)
    states=$(sed -n 's/^ *\([0-9e+.]*\) states, stored.*/\1/p' "$dir/pan.log" | head -n 1)
    took=$(($(date +%s) - t0))
    if [ -z "$errors" ]; then
        echo "FAIL - $name: spin did not finish"; tail -n 20 "$dir/pan.log"
        failed=$((failed + 1))
    elif [ "$want" = pass ] && [ "$errors" = 0 ]; then
        if grep -q "search not completed\|max search depth too small" "$dir/pan.log"; then
            echo "FAIL - $name: the search was not complete"; failed=$((failed + 1))
        else
            echo "ok - $name: no violation in $states states ($took s)"; passed=$((passed + 1))
        fi
    elif [ "$want" = fail ] && [ "$errors" != 0 ]; then
        what=$(grep -m1 "pan:1:\|assertion violated\|invalid end state" "$dir/pan.log")
        echo "ok - $name: caught ($what)"; passed=$((passed + 1))
    else
        echo "FAIL - $name: expected to $want, spin found $errors errors"
        grep -m3 "pan:\|violated" "$dir/pan.log"
        failed=$((failed + 1))
    fi
}

# The protocol: sleep and wake-up (three threads in two processes, two naps each), and
# fencing with the single-use entry (three threads, take-overs at any step).
check lock-and-wake-up pass -DTHREADS=3 -DCLAIMS=0 -DNAPS=2
check fencing-and-single-use pass -DTHREADS=3 -DCLAIMS=1 -DNAPS=0
# Each mutant breaks one part of the protocol; the model must catch it.
check "mutant: no fence checks" fail -DTHREADS=3 -DCLAIMS=1 -DNAPS=0 -DMUTANT_NO_FENCE
check "mutant: the outcome used without a successful release" fail -DTHREADS=3 -DCLAIMS=1 -DNAPS=0 -DMUTANT_NO_OUTCOME_CHECK
check "mutant: a process as the owner (before issue 22)" fail -DTHREADS=3 -DCLAIMS=1 -DNAPS=0 -DMUTANT_PROCESS_OWNER
check "mutant: WAITERS forgotten after a sleep" fail -DTHREADS=3 -DCLAIMS=0 -DNAPS=2 -DMUTANT_FORGET_WAITERS
check "mutant: no take-over of a dead owner" fail -DTHREADS=3 -DCLAIMS=0 -DNAPS=1 -DMUTANT_NO_TAKEOVER
echo "model: $passed passed, $failed failed"
[ "$failed" = 0 ]
