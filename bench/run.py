#!/usr/bin/env python3
"""Run every benchmark several times and print one table of medians.

Protocol: each bench/bench_*.c binary and each bench/py/bench_*.py script prints rows
    ROW <tab> workload <tab> impl <tab> value <tab> unit <tab> lower|higher
where impl is mproc, python (multiprocessing), threads (a pthread pool) or floor (the raw
syscall or memcpy limit, or the minimal shared-memory ring of bench/peers), or any other name:
a peer library (bench/peers/README.md: "zmq push/pull", "glib", "open mpi", "fork", ...). Rows of
one workload from different programs are put side by side.

Two tables: mproc against python, threads and the floor, for the workloads without peers; then
"mproc vs peers": for each workload with peer rows, mproc, each peer's median, the floor, and
mproc against the best peer (> 1: mproc is better, in the workload's own direction), one table
per family of workloads. --markdown prints them as Markdown tables (as in docs/performance.md).

bench_peer_mpi_* programs are started under mpirun (2 ranks for messages, a master and one
worker per CPU for the pool), on the shared-memory transport; they are skipped when mpirun is
missing. bench_mpi_* (mproc's "mpi" pool backend, docs/mpi.md) run twice: under mpirun -np 3
(rank 0 and two worker ranks) and without a launcher (the local backend); bench/py/bench_mpi4py.py
runs under mpirun -np 3 -m mpi4py.futures, its peer.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections import OrderedDict, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
KNOWN = ["mproc", "python", "threads", "floor"]


def mpi_command(name, path, ranks=None, argv=None):
    """The mpirun line of an MPI peer, or None when Open MPI is not installed."""
    mpirun = shutil.which("mpirun")
    if not mpirun:
        return None
    if ranks is None:
        # mpi_relay is the floor of bench_mpi_pool's apply row: the same 3 ranks
        ranks = {"bench_peer_mpi_msg": 2, "bench_peer_mpi_relay": 3}.get(name, (os.cpu_count() or 1) + 1)
    cmd = [mpirun, "-np", str(ranks), "--oversubscribe"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    # ob1 over the shared-memory BTL (vader in Open MPI 4, sm in 5, which knows vader as an alias)
    cmd += ["--mca", "pml", "ob1", "--mca", "btl", "self,vader", "-x", "MPROC_POOL_BACKEND=mpi"]
    return cmd + (argv or [path])


def mpi4py_python():
    """An interpreter with mpi4py (Debian's python3-mpi4py is for /usr/bin/python3), or None."""
    for py in (sys.executable, "/usr/bin/python3"):
        res = subprocess.run([py, "-c", "import mpi4py.futures"], capture_output=True)
        if res.returncode == 0:
            return py
    return None


def programs(build, only, c_only=False):
    progs = []
    bdir = os.path.join(build, "bench")
    if os.path.isdir(bdir):
        for name in sorted(os.listdir(bdir)):
            path = os.path.join(bdir, name)
            if not (name.startswith("bench_") and os.access(path, os.X_OK) and os.path.isfile(path)):
                continue
            if name.startswith("bench_mpi_"):
                cmd = mpi_command(name, path, ranks=3)
                if cmd:
                    progs.append((name + " (mpirun -np 3)", cmd))
                progs.append((name + " (no launcher)", [path]))
                continue
            cmd = mpi_command(name, path) if name.startswith("bench_peer_mpi_") else [path]
            if cmd:
                progs.append((name, cmd))
    pdir = os.path.join(HERE, "py")
    for name in [] if c_only else sorted(os.listdir(pdir)):
        if not (name.startswith("bench_") and name.endswith(".py")):
            continue
        path = os.path.join(pdir, name)
        if name == "bench_mpi4py.py":
            py = mpi4py_python()
            cmd = py and mpi_command(name, path, 3, [py, "-m", "mpi4py.futures", path])
            if cmd:
                progs.append((name, cmd))
            continue
        progs.append((name, [sys.executable, path]))
    if only:
        progs = [p for p in progs if any(o in p[0] for o in only)]
    return progs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-bench")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "5")))
    ap.add_argument("--c-only", action="store_true", help="skip the Python twins in bench/py")
    ap.add_argument("--markdown", action="store_true", help="print the tables in Markdown")
    ap.add_argument("--save", help="also write every sample to this JSON file")
    ap.add_argument("--load", help="print the tables of a --save file instead of running")
    ap.add_argument("only", nargs="*", help="run only programs whose name contains one of these")
    args = ap.parse_args()

    samples = defaultdict(list)
    meta = OrderedDict()
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "py"))
    if args.load:
        with open(args.load) as f:
            saved = json.load(f)
        args.runs = saved["runs"]
        for workload, impl, unit, better, values in saved["rows"]:
            samples[(workload, impl)] = values
            meta.setdefault(workload, (unit, better))
    for run in range(0 if args.load else args.runs):
        for name, cmd in programs(args.build, args.only, args.c_only):
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

    if args.save:
        with open(args.save, "w") as f:
            rows = [[w, i, *meta[w], v] for (w, i), v in samples.items()]
            json.dump({"runs": args.runs, "rows": rows}, f)
    print(f"medians of {args.runs} runs")
    peered = [w for w in meta if any(i not in KNOWN for (w2, i) in samples if w2 == w)]
    plain = [w for w in meta if w not in peered or any(
        (w, c) in samples for c in ("python", "threads"))]
    print_known(plain, meta, samples, args.markdown)
    if peered:
        print()
        print_peers(peered, meta, samples, args.markdown)


def fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:.4g} M"
    return f"{v / 1e3:.4g} k" if v >= 1e4 else f"{v:.4g}"


def ratio(mine, other, better):
    """How many times better mine is than other, in the workload's direction."""
    if not mine or not other:
        return None
    return other / mine if better == "lower" else mine / other


def print_table(header, rows, markdown):
    if not rows:
        return
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("| --- | --- |" + " ---: |" * (len(header) - 2))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(str(r[i])) for r in [header] + rows) + 2 for i in range(len(header))]

    def line(cells):
        return "".join(f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(header))
    print("-" * sum(widths))
    for r in rows:
        print(line(r))


def print_known(workloads, meta, samples, markdown):
    header = ["workload", "unit"] + KNOWN + ["vs python", "vs floor"]
    rows = []
    for workload in workloads:
        unit, better = meta[workload]
        med = {c: statistics.median(samples[(workload, c)]) for c in KNOWN if samples.get((workload, c))}
        row = [workload, unit] + [fmt(med[c]) if c in med else "-" for c in KNOWN]
        # "vs python": how many times better mproc is; "vs floor": floor/mproc (1.0 = at the floor).
        for other in ("python", "floor" if "floor" in med else "threads"):
            r = ratio(med.get("mproc"), med.get(other), better)
            row.append(f"{r:.2f}x" if r else "-")
        rows.append(row)
    print_table(header, rows, markdown)


def print_peers(workloads, meta, samples, markdown):
    """"vs best peer" > 1 means mproc is ahead of every peer."""
    # One table per family of workloads (the name's first word: "messages", "map", ...), with the
    # union of their peers as columns, so that a peer missing one size shows "-" there.
    groups = OrderedDict()
    for w in workloads:
        peers, ws = groups.setdefault(w.split()[0], (OrderedDict(), []))
        peers.update((i, None) for (w2, i) in samples if w2 == w and i not in KNOWN)
        ws.append(w)
    for peers, ws in groups.values():
        peers = sorted(peers)
        has_floor = any(samples.get((w, "floor")) for w in ws)
        header = ["workload", "unit", "mproc"] + list(peers) + (["floor"] if has_floor else [])
        header += ["best peer", "mproc vs best"] + (["mproc vs floor"] if has_floor else [])
        rows = []
        for w in ws:
            unit, better = meta[w]
            med = {i: statistics.median(v) for (w2, i), v in samples.items() if w2 == w and v}
            got = [p for p in peers if p in med]
            best = (min if better == "lower" else max)(got, key=lambda p: med[p]) if got else None
            row = [w, unit] + [fmt(med[c]) if c in med else "-" for c in ["mproc"] + list(peers)]
            if has_floor:
                row.append(fmt(med["floor"]) if "floor" in med else "-")
            row.append(best or "-")
            r = ratio(med.get("mproc"), med.get(best), better) if best else None
            row.append(f"{r:.2f}x" if r else "-")
            if has_floor:
                r = ratio(med.get("mproc"), med.get("floor"), better)
                row.append(f"{r:.2f}x" if r else "-")
            rows.append(row)
        if not markdown:
            print("mproc vs peers (vs best: > 1 means mproc is ahead of every peer; vs floor: 1 = at the floor)")
        print_table(header, rows, markdown)
        print()


if __name__ == "__main__":
    main()
