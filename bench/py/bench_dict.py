"""Shared dict on Python's multiprocessing: the same workloads as bench/bench_dict.c, on a
multiprocessing.Manager().dict() (SyncManager: every access is a round trip to the server)."""
import multiprocessing as mp
import statistics
import struct
import time

from benchrow import row

ROUNDS = 5
OPS = 20_000
KEYS = 1000


def one_at_a_time(d, ident, ops):
    for i in range(ops // 2):
        k = struct.pack("<Q", (ident << 56) | (i % KEYS))
        v = struct.pack("<Q", i)
        d[k] = v
        assert d[k] == v


def rate_one(d):
    t0 = time.perf_counter()
    one_at_a_time(d, 0, OPS)
    return OPS / (time.perf_counter() - t0)


def second(d, barrier):
    barrier.wait()
    one_at_a_time(d, 1, OPS)


def rate_two(d):
    barrier = mp.Barrier(2)
    p = mp.Process(target=second, args=(d, barrier))
    p.start()
    barrier.wait()
    t0 = time.perf_counter()
    one_at_a_time(d, 0, OPS)
    p.join()
    return 2 * OPS / (time.perf_counter() - t0)


def main():
    mp.set_start_method("fork")
    with mp.Manager() as m:
        d = m.dict()
        rate_one(d)
        one = statistics.median(rate_one(d) for _ in range(ROUNDS))
        two = statistics.median(rate_two(d) for _ in range(ROUNDS))
    row("dict set+get, one at a time", "python", one, "ops/s", "higher")
    row("dict set+get, one at a time, 2 processes", "python", two, "ops/s", "higher")


if __name__ == "__main__":
    main()
