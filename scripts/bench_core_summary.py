#!/usr/bin/env python3
"""The figures of `cargo bench --bench core` (benches/core.rs) as lines for docs/bench.md.

Prints, to standard output (`make bench-core` writes them to build/bench-core.txt):
    core BACKEND OP ENTRIES NS_PER_OP        criterion's median per operation
    density shm KIND SESSIONS_PER_MIB BYTES   from build/bench-core-density.txt
for BACKEND in memory, shm; OP in get_hit, get_miss, put; ENTRIES in 1000, 100000, 1000000;
KIND in tls12, tls13, tls13_client_cert (BYTES: the session's DER).

Criterion keeps its estimates in TARGET/criterion/BACKEND/OP/ENTRIES/new/estimates.json
(TARGET: $CARGO_TARGET_DIR, or target/ beside this script's folder). Fails when one is
missing: a partial run (a filter) leaves nothing to summarise.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("memory", "shm")
OPS = ("get_hit", "get_hit_recent", "get_miss", "put")
ENTRIES = (1000, 100000, 1000000)


def main():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    lines = []
    for backend in BACKENDS:
        for op in OPS:
            for n in ENTRIES:
                path = os.path.join(target, "criterion", backend, op, str(n), "new", "estimates.json")
                try:
                    with open(path) as f:
                        ns = json.load(f)["median"]["point_estimate"]
                except (OSError, KeyError, ValueError) as e:
                    sys.exit(f"bench_core_summary: {path}: {e}: run `cargo bench --bench core` first")
                lines.append(f"core {backend} {op} {n} {ns:.1f}")
    density = os.path.join(ROOT, "build", "bench-core-density.txt")
    try:
        with open(density) as f:
            lines += [line.strip() for line in f if line.startswith("density ")]
    except OSError as e:
        sys.exit(f"bench_core_summary: {density}: {e}: run `cargo bench --bench core` first")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
