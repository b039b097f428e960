"""Pipe round trip on Python's multiprocessing: the workload of bench/bench_conn.c, a 64-byte
message ping-ponged over multiprocessing.Pipe() (send_bytes/recv_bytes) between two processes."""
import multiprocessing as mp
import statistics
import time

from benchrow import row

MSG = 64
WARMUP = 2000
SAMPLES = 20000


def echo(conn):
    for _ in range(WARMUP + SAMPLES):
        conn.send_bytes(conn.recv_bytes())


def main():
    a, b = mp.Pipe(duplex=True)
    p = mp.Process(target=echo, args=(b,))
    p.start()
    msg = bytes(MSG)
    now = time.perf_counter
    times = []
    for i in range(WARMUP + SAMPLES):
        t0 = now()
        a.send_bytes(msg)
        a.recv_bytes()
        if i >= WARMUP:
            times.append(now() - t0)
    p.join()
    row("pipe round trip", "python", statistics.median(times) * 1e6, "us", "lower")


if __name__ == "__main__":
    main()
