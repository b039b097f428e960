"""Queue workloads of bench/bench_queue.c on Python's multiprocessing.Queue (same row names)."""
import multiprocessing as mp
import statistics
import time

from benchrow import now, row

SMALL = 64
SMALL_MSGS = 100_000
LARGE = 1 << 20
LARGE_MSGS = 300
PINGS = 5000
ROUNDS = 3


def consumer(q, end):
    while True:
        if q.get() is None:
            break
    with end.get_lock():
        end.value = max(end.value, time.monotonic())


def producer(q, ready, go, size, n):
    data = bytes(size)
    ready.release()
    go.wait()
    for _ in range(n):
        q.put(data)


def throughput(size, msgs, np_, nc, maxsize=1024):
    q = mp.Queue(maxsize)
    end = mp.Value("d", 0.0)
    ready = mp.Semaphore(0)
    go = mp.Event()
    cons = [mp.Process(target=consumer, args=(q, end)) for _ in range(nc)]
    prods = [mp.Process(target=producer, args=(q, ready, go, size, msgs // np_)) for _ in range(np_)]
    for p in cons + prods:
        p.start()
    for _ in prods:
        ready.acquire()
    t0 = time.monotonic()
    go.set()
    for p in prods:
        p.join()
    for _ in cons:
        q.put(None)
    for p in cons:
        p.join()
    return (msgs // np_ * np_) / (end.value - t0)


def ponger(a, b):
    while True:
        m = a.get()
        if m is None:
            return
        b.put(m)


def pingpong():
    a, b = mp.Queue(), mp.Queue()
    p = mp.Process(target=ponger, args=(a, b))
    p.start()
    msg = bytes(SMALL)
    t = []
    for i in range(PINGS + 200):
        t0 = now()
        a.put(msg)
        b.get()
        if i >= 200:
            t.append(now() - t0)
    a.put(None)
    p.join()
    return statistics.median(t)


def med(f):
    return statistics.median(f() for _ in range(ROUNDS))


def main():
    mp.set_start_method("fork")
    row("queue 64 B messages, 1 producer 1 consumer", "python",
        med(lambda: throughput(SMALL, SMALL_MSGS, 1, 1)), "msgs/s", "higher")
    row("queue 64 B messages, 2 producers 2 consumers", "python",
        med(lambda: throughput(SMALL, SMALL_MSGS, 2, 2)), "msgs/s", "higher")
    row("queue 1 MiB messages, 1 producer 1 consumer", "python",
        med(lambda: throughput(LARGE, LARGE_MSGS, 1, 1, maxsize=8)) * LARGE / 1e9, "GB/s", "higher")
    row("queue ping-pong round trip", "python", pingpong() * 1e6, "us", "lower")


if __name__ == "__main__":
    main()
