"""Log throughput: 2 processes logging INFO lines to one file, Python's recommended way
(logging cookbook): a QueueHandler in each process, one QueueListener writing a FileHandler in
the main process. Timed from start until the listener has written every line (the same format as
mproc's). The C side is bench/bench_log.c."""
import logging
import logging.handlers
import multiprocessing as mp
import os
import shutil
import tempfile

from benchrow import now, row

PROCS = 2
LINES = 50000
FMT = "%(asctime)s - bench - %(processName)s - %(filename)s - %(lineno)d - %(funcName)s - %(levelname)s - %(message)s"


def writer(q):
    log = logging.getLogger("bench")
    log.handlers[:] = [logging.handlers.QueueHandler(q)]
    log.setLevel(logging.INFO)
    log.propagate = False
    for i in range(LINES):
        log.info("message number %d from the benchmark", i)


def main():
    d = tempfile.mkdtemp(prefix="mproc-bench-log-py-")
    try:
        q = mp.Queue()
        fh = logging.FileHandler(os.path.join(d, "bench.log"))
        fh.setFormatter(logging.Formatter(FMT))
        listener = logging.handlers.QueueListener(q, fh)
        t0 = now()
        listener.start()
        ps = [mp.Process(target=writer, args=(q,)) for _ in range(PROCS)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        listener.stop()  # drains the queue: every line is written
        dt = now() - t0
        fh.close()
        with open(os.path.join(d, "bench.log"), "rb") as f:
            n = sum(1 for _ in f)
        assert n == PROCS * LINES, n
        row("log lines/s, 2 processes to one file", "python", PROCS * LINES / dt, "lines/s", "higher")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
