"""multiprocessing.Pool on the workloads of bench/bench_pool.c (same row names)."""
import multiprocessing as mp
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchrow import now, row  # noqa: E402

ONE_N = 5000
MANY_N = 100000
APPLY_N = 2000
MAP_N = 10_000_000
IDLE_N = 500
IDLE_PAUSE = 200e-6  # longer than any wait's spin: the workers are asleep


def trivial(x):
    return x + 1


def twice(x):
    return x * 2


def main():
    t0 = now()
    pool = mp.Pool()
    assert pool.apply(trivial, (1,)) == 2
    row("pool start + first result", "python", (now() - t0) * 1e3, "ms", "lower")

    t0 = now()
    for i in range(ONE_N):
        assert pool.apply_async(trivial, (i,)).get() == i + 1
    row("submit+get throughput, 1 in flight", "python", ONE_N / (now() - t0), "tasks/s", "higher")

    t0 = now()
    rs = [pool.apply_async(trivial, (i,)) for i in range(MANY_N)]
    for i, r in enumerate(rs):
        assert r.get() == i + 1
    row("submit+get throughput, 100k in flight", "python", MANY_N / (now() - t0), "tasks/s",
        "higher")

    t0 = now()
    for i in range(APPLY_N):
        pool.apply(trivial, (i,))
    row("apply round trip", "python", (now() - t0) / APPLY_N * 1e6, "us", "lower")

    # A sporadic apply: the pool has gone idle before each one (as in bench_pool.c).
    idle_t = []
    for i in range(IDLE_N):
        time.sleep(IDLE_PAUSE)
        t0 = now()
        pool.apply(trivial, (i,))
        idle_t.append(now() - t0)
    row("apply round trip, pool idle", "python", statistics.median(idle_t) * 1e6, "us", "lower")

    data = range(MAP_N)
    t0 = now()
    out = pool.map(twice, data)
    dt = now() - t0
    assert out[12345] == 24690
    row("map trivial fn over 10M ints", "python", MAP_N / dt, "items/s", "higher")
    pool.close()
    pool.join()


if __name__ == "__main__":
    main()
