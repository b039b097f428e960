"""Manager dict set+get on Python's multiprocessing: the workload of bench/bench_manager.c one at a
time, a SyncManager dict proxy from the process that started the manager (every call a round
trip, as for mproc's outside process)."""
import statistics
import time
from multiprocessing.managers import SyncManager

from benchrow import row

ROUNDS = 5
PAIRS = 5000


def main():
    with SyncManager() as m:
        d = m.dict()
        rates = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            for i in range(PAIRS):
                k = "k%d" % (i & 1023)
                d[k] = k
                d[k]
            rates.append(2 * PAIRS / (time.perf_counter() - t0))
        # The same SyncManager figure beside both of mproc's outside rows: through proxies, and
        # with the arena mapped (Python has no such path: every call is a round trip).
        for where in ("outside, unix socket", "outside, unix socket, mapped arena"):
            row("manager dict set+get, %s, one at a time" % where, "python",
                statistics.median(rates) / 1e3, "k ops/s", "higher")


if __name__ == "__main__":
    main()
