"""Process start+join with Python's multiprocessing (fork context), the same workload as
bench_process.c."""
import multiprocessing as mp
import statistics

from benchrow import now, row

ROUNDS, PER_ROUND = 15, 20


def nothing():
    pass


def main():
    ctx = mp.get_context("fork")
    times = []
    for _ in range(ROUNDS):
        t0 = now()
        for _ in range(PER_ROUND):
            p = ctx.Process(target=nothing)
            p.start()
            p.join()
        times.append((now() - t0) / PER_ROUND)
    row("process start+join", "python", statistics.median(times) * 1e6, "us", "lower")


if __name__ == "__main__":
    main()
