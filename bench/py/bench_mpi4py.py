"""mpi4py.futures, the peer of bench/bench_mpi_pool.c: run by run.py as
`mpirun -np 3 python3 -m mpi4py.futures bench_mpi4py.py` (rank 0 runs this, two workers)."""
import time

from mpi4py.futures import MPIPoolExecutor

from benchrow import row


def inc(x):
    return x + 1


def map_inc(xs):
    return [x + 1 for x in xs]


def main():
    with MPIPoolExecutor() as ex:
        ex.submit(inc, 0).result()
        n = 20000
        t0 = time.perf_counter()
        fs = [ex.submit(inc, i) for i in range(n)]
        for i, f in enumerate(fs):
            assert f.result() == i + 1
        row("mpi pool: submit+get, trivial tasks", "mpi4py.futures", n / (time.perf_counter() - t0),
            "tasks/s", "higher")
        # map over 10 M ints, chunked as mproc's map chunks them (a few chunks per worker)
        total = 10_000_000
        t0 = time.perf_counter()
        got = 0
        for r in ex.map(inc, range(total), chunksize=total // 16):
            got += 1
        assert got == total
        row("mpi pool: map 10M ints (chunked)", "mpi4py.futures", total / (time.perf_counter() - t0),
            "items/s", "higher")
        lat = []
        for i in range(500):
            t0 = time.perf_counter()
            ex.submit(inc, i).result()
            lat.append(time.perf_counter() - t0)
        lat.sort()
        row("mpi pool: apply round trip", "mpi4py.futures", lat[len(lat) // 2] * 1e6, "us", "lower")


if __name__ == "__main__":
    main()
