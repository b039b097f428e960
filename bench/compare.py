#!/usr/bin/env python3
"""Compare two builds of the C benchmarks, interleaved: A, B, A, B, ... so that the host's noise
falls on both alike. Prints the median of each mproc row for both builds and B/A.

    python3 bench/compare.py --a OLD_BUILD --b NEW_BUILD --runs 7 [program-name-filter ...]

A build is a build directory holding bench/bench_* (make bench builds build-bench). Used to show
that a change which should not move performance (a restructuring) does not.
"""
import argparse
import os
import statistics
import subprocess
import sys
from collections import OrderedDict, defaultdict


def benches(build, only):
    bdir = os.path.join(build, "bench")
    names = sorted(n for n in os.listdir(bdir) if n.startswith("bench_")
                   and os.access(os.path.join(bdir, n), os.X_OK))
    return [n for n in names if not only or any(o in n for o in only)]


def rows(path):
    res = subprocess.run([path], stdout=subprocess.PIPE, text=True)
    for line in res.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 6 and parts[0] == "ROW" and parts[2] == "mproc":
            yield parts[1], float(parts[3]), parts[4], parts[5]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="baseline build directory")
    ap.add_argument("--b", required=True, help="build directory to compare with it")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("only", nargs="*")
    args = ap.parse_args()
    names = [n for n in benches(args.a, args.only) if n in benches(args.b, args.only)]
    samples = {"a": defaultdict(list), "b": defaultdict(list)}
    meta = OrderedDict()
    for run in range(args.runs):
        for name in names:
            for side in ("a", "b") if run % 2 == 0 else ("b", "a"):
                print(f"run {run + 1}/{args.runs}: {side} {name}", file=sys.stderr, flush=True)
                for workload, value, unit, better in rows(os.path.join(getattr(args, side), "bench", name)):
                    samples[side][workload].append(value)
                    meta.setdefault(workload, (unit, better))
    print(f"{'workload':58} {'A':>12} {'B':>12} {'B/A':>6}  unit")
    for workload, (unit, better) in meta.items():
        a, b = samples["a"].get(workload), samples["b"].get(workload)
        if not a or not b:
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        ratio = mb / ma if ma else float("nan")
        print(f"{workload[:58]:58} {ma:12.4g} {mb:12.4g} {ratio:6.2f}  {unit} ({better} is better)")


if __name__ == "__main__":
    main()
