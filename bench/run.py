#!/usr/bin/env python3
"""Run every benchmark several times and print one table of medians.

Protocol: each bench/bench_*.c binary and each bench/py/bench_*.py script prints rows
    ROW <tab> workload <tab> impl <tab> value <tab> unit <tab> lower|higher
where impl is mproc, python (multiprocessing), threads (a pthread pool) or floor (the raw
syscall or memcpy limit). Rows of one workload from different programs are put side by side.
"""
import argparse
import os
import statistics
import subprocess
import sys
from collections import OrderedDict, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))


def programs(build, only):
    progs = []
    bdir = os.path.join(build, "bench")
    if os.path.isdir(bdir):
        for name in sorted(os.listdir(bdir)):
            path = os.path.join(bdir, name)
            if name.startswith("bench_") and os.access(path, os.X_OK) and os.path.isfile(path):
                progs.append((name, [path]))
    pdir = os.path.join(HERE, "py")
    for name in sorted(os.listdir(pdir)):
        if name.startswith("bench_") and name.endswith(".py"):
            progs.append((name, [sys.executable, os.path.join(pdir, name)]))
    if only:
        progs = [p for p in progs if any(o in p[0] for o in only)]
    return progs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-bench")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "5")))
    ap.add_argument("only", nargs="*", help="run only programs whose name contains one of these")
    args = ap.parse_args()

    samples = defaultdict(list)
    meta = OrderedDict()
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "py"))
    for run in range(args.runs):
        for name, cmd in programs(args.build, args.only):
            print(f"run {run + 1}/{args.runs}: {name}", file=sys.stderr, flush=True)
            res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
            if res.returncode != 0:
                print(f"  {name} exited {res.returncode}", file=sys.stderr)
            for line in res.stdout.splitlines():
                parts = line.split("\t")
                if len(parts) != 6 or parts[0] != "ROW":
                    continue
                _, workload, impl, value, unit, better = parts
                samples[(workload, impl)].append(float(value))
                meta.setdefault(workload, (unit, better))

    cols = ["mproc", "python", "threads", "floor"]
    header = f"{'workload':44} {'unit':9}" + "".join(f"{c:>12}" for c in cols)
    header += f"{'vs python':>11}{'vs floor':>10}"
    print(f"medians of {args.runs} runs")
    print(header)
    print("-" * len(header))
    for workload, (unit, better) in meta.items():
        med = {c: statistics.median(samples[(workload, c)]) for c in cols if samples[(workload, c)]}
        row = f"{workload:44} {unit:9}"
        for c in cols:
            row += f"{med[c]:12.4g}" if c in med else f"{'-':>12}"

        def ratio(other):
            if "mproc" not in med or other not in med or not med["mproc"] or not med[other]:
                return "-"
            r = med[other] / med["mproc"] if better == "lower" else med["mproc"] / med[other]
            return f"{r:.2f}x"

        # "vs python": how many times better mproc is; "vs floor": floor/mproc (1.0 = at the floor).
        row += f"{ratio('python'):>11}{ratio('floor') if 'floor' in med else ratio('threads'):>10}"
        print(row)


if __name__ == "__main__":
    main()
