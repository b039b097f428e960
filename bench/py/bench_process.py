"""Process start+join with Python's multiprocessing for each start method, in a small parent and
in a parent holding 1 GiB, the same workloads as bench_process.c."""
import multiprocessing as mp
import statistics

from benchrow import now, row

ROUNDS = 7
PER_ROUND = {"fork": 20, "forkserver": 20, "spawn": 3}


def nothing():
    pass


def inc(x):
    return x + 1


def measure_pool(method, suffix):
    ctx = mp.get_context(method)
    times = []
    for _ in range(3 if method == "spawn" else ROUNDS):
        t0 = now()
        with ctx.Pool(2) as pool:
            assert pool.apply(inc, (1,)) == 2
            times.append(now() - t0)
    label = {"fork": "fork", "forkserver": "forkserver", "spawn": "spawn (python only)"}[method]
    row(f"pool(2) start+first result, {label}{suffix}", "python", statistics.median(times) * 1e3,
        "ms", "lower")


def measure(method, suffix):
    ctx = mp.get_context(method)
    times = []
    for _ in range(ROUNDS):
        t0 = now()
        for _ in range(PER_ROUND[method]):
            p = ctx.Process(target=nothing)
            p.start()
            p.join()
        times.append((now() - t0) / PER_ROUND[method])
    # Python's spawn is the analogue of nothing in mproc; it lines up with mproc's thread method
    # only in name, so it gets its own row.
    label = {"fork": "fork", "forkserver": "forkserver", "spawn": "spawn (python only)"}[method]
    row(f"process start+join, {label}{suffix}", "python", statistics.median(times) * 1e6, "us", "lower")


def main():
    for m in ("fork", "forkserver", "spawn"):
        measure(m, "")
        measure_pool(m, "")
    ballast = bytearray(1 << 30)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    for m in ("fork", "forkserver"):
        measure(m, ", 1 GiB parent")
        measure_pool(m, ", 1 GiB parent")
    del ballast


if __name__ == "__main__":
    main()
