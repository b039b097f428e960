"""A Python client (an unmodified SyncManager proxy) against the mproc manager (its Python dialect,
the mproc-manager command) and against Python's own SyncManager, same workload, same run, rounds
interleaved: dict set+get one at a time (bench_manager.py's), and the cost of a connection
(connect() + handshake + 'dummy') and of m.dict() with its first call.

mproc-manager is found by $MPROC_MANAGER, else in build-bench/ or build/ (tools/mproc-manager);
without it the script prints nothing."""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.managers import SyncManager

from benchrow import row

ROUNDS = 5
PAIRS = 5000
CONNECTS = 20
KEY = b"bench key"
HERE = os.path.dirname(os.path.abspath(__file__))


def find_tool():
    if os.environ.get("MPROC_MANAGER"):
        return os.environ["MPROC_MANAGER"]
    for b in ("build-bench", "build"):
        p = os.path.join(HERE, "..", "..", b, "tools", "mproc-manager")
        if os.access(p, os.X_OK):
            return p
    return None


class Client(SyncManager):
    pass


def dict_rate(address):
    m = Client(address=address, authkey=KEY)
    m.connect()
    d = m.dict()
    t0 = time.perf_counter()
    for i in range(PAIRS):
        k = "k%d" % (i & 1023)
        d[k] = k
        d[k]
    return 2 * PAIRS / (time.perf_counter() - t0)


def setup_ms(address):
    conn, first = [], []
    for _ in range(CONNECTS):
        t0 = time.perf_counter()
        m = Client(address=address, authkey=KEY)
        m.connect()
        t1 = time.perf_counter()
        d = m.dict()
        d["k"] = 1
        t2 = time.perf_counter()
        conn.append((t1 - t0) * 1e3)
        first.append((t2 - t1) * 1e3)
        del d
    return statistics.median(conn), statistics.median(first)


def main():
    tool = find_tool()
    if not tool:
        print("bench_pydialect: no mproc-manager (set MPROC_MANAGER)", file=sys.stderr)
        return
    name = "mproc-bench-pyd-%d" % os.getpid()
    with tempfile.NamedTemporaryFile() as kf:
        kf.write(KEY)
        kf.flush()
        srv = subprocess.Popen([tool, "--address", "unix:@" + name, "--authkey-file", kf.name,
                                "--foreground"], stdout=subprocess.PIPE, text=True)
        srv.stdout.readline()  # its address: listening
        ours_addr = "\0" + name
        py = SyncManager(address="\0" + name + "-py", authkey=KEY)
        py.start()
        try:
            ours, theirs = [], []
            for _ in range(ROUNDS):
                ours.append(dict_rate(ours_addr))
                theirs.append(dict_rate(py.address))
            oc, of = setup_ms(ours_addr)
            pc, pf = setup_ms(py.address)
        finally:
            py.shutdown()
            srv.terminate()
            srv.wait()
    w = "manager dict set+get, Python client, unix socket, one at a time"
    row(w, "mproc", statistics.median(ours) / 1e3, "k ops/s", "higher")
    row(w, "python", statistics.median(theirs) / 1e3, "k ops/s", "higher")
    w = "manager connect + handshake, Python client, unix socket"
    row(w, "mproc", oc, "ms", "lower")
    row(w, "python", pc, "ms", "lower")
    w = "manager m.dict() + first call, Python client, unix socket"
    row(w, "mproc", of, "ms", "lower")
    row(w, "python", pf, "ms", "lower")


if __name__ == "__main__":
    main()
