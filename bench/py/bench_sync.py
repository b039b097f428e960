"""Synchronisation on Python's multiprocessing: the same workloads as bench/bench_sync.c."""
import multiprocessing as mp
import statistics
import time

from benchrow import row

ROUNDS = 5
UNCONTENDED_OPS = 200_000
CONTENDED_OPS = 50_000
LATENCY_SAMPLES = 500


def uncontended(lock):
    t0 = time.perf_counter()
    for _ in range(UNCONTENDED_OPS):
        lock.acquire()
        lock.release()
    return (time.perf_counter() - t0) / UNCONTENDED_OPS


def contend(lock, barrier, counter):
    barrier.wait()
    for _ in range(CONTENDED_OPS):
        lock.acquire()
        counter.value += 1
        lock.release()


def contended():
    lock, barrier = mp.Lock(), mp.Barrier(2)
    counter = mp.Value("l", 0, lock=False)
    p = mp.Process(target=contend, args=(lock, barrier, counter))
    p.start()
    t0 = time.perf_counter()
    contend(lock, barrier, counter)
    p.join()
    assert counter.value == 2 * CONTENDED_OPS
    return (time.perf_counter() - t0) / (2 * CONTENDED_OPS)


def event_waiter(go, ack, woke):
    for _ in range(LATENCY_SAMPLES):
        go.wait()
        woke.value = time.monotonic_ns()
        go.clear()
        ack.set()


def event_latency():
    go, ack = mp.Event(), mp.Event()
    woke = mp.Value("q", 0, lock=False)
    p = mp.Process(target=event_waiter, args=(go, ack, woke))
    p.start()
    samples = []
    for _ in range(LATENCY_SAMPLES):
        time.sleep(0.0005)  # let the waiter get into wait() and fall asleep
        t0 = time.monotonic_ns()
        go.set()
        ack.wait()
        ack.clear()
        samples.append(woke.value - t0)
    p.join()
    return statistics.median(samples)


def main():
    mp.set_start_method("fork")
    lock = mp.Lock()
    uncontended(lock)
    u = statistics.median(uncontended(lock) for _ in range(ROUNDS))
    row("lock acquire+release uncontended", "python", u * 1e9, "ns", "lower")
    c = statistics.median(contended() for _ in range(ROUNDS))
    row("lock acquire+release, 2 processes contending", "python", c * 1e9, "ns", "lower")
    row("event set-to-wake latency", "python", event_latency() / 1e3, "us", "lower")


if __name__ == "__main__":
    main()
