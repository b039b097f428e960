"""A real Python SyncManager for tests/test_pymanager.c, and Python clients of it.

    py_manager.py serve ADDRESS KEYHEX          serve until a 'shutdown' request; prints
                                                "READY <address>" (mproc syntax) when listening
    py_manager.py wait_event ADDRESS KEYHEX T   get_event() then "READY", wait up to T s:
                                                exit 0 if it was set, 1 if not
    py_manager.py set_event ADDRESS KEYHEX      "READY", read a line on stdin, set get_event()
    py_manager.py echo_queue ADDRESS KEYHEX     "READY", take one item from get_queue(), put back
                                                ("echo", item) on it
    py_manager.py check_jobs ADDRESS KEYHEX     exit 0 if get_jobs() holds gamma == "from C"
    py_manager.py bench ADDRESS KEYHEX N        N dict set+get pairs through a Python proxy:
                                                prints "BENCH <connect ms> <ops/s>"
    py_manager.py check_typed ADDRESS KEYHEX    exit 0 if get_jobs() holds what C wrote with the
                                                typed helpers: "s" "text", "i" 42, "f" 2.5,
                                                b"raw" b"\x00raw"; then sets "from_py" to "py text"
    py_manager.py lock_held ADDRESS KEYHEX      exit 0 if get_lock() cannot be acquired at once
The registered names: get_jobs (a dict, DictProxy), get_event, get_queue, get_box, get_lock.
"""
import queue
import sys
import threading
import time
from multiprocessing.managers import DictProxy, EventProxy, SyncManager

from peerlib import format_address, parse_address

JOBS = {"alpha": 1, "beta": [2, 3]}
EVENT = threading.Event()
QUEUE = queue.Queue()
LOCK = threading.Lock()


class Box:
    """get_box(): its child() is answered with '#PROXY' (a proxy of JOBS, typeid 'dict')."""

    def child(self):
        return JOBS


class Manager(SyncManager):
    pass


def client_manager(address, key):
    Manager.register("get_jobs", proxytype=DictProxy)
    Manager.register("get_event", proxytype=EventProxy)
    Manager.register("get_queue")
    Manager.register("get_lock")
    m = Manager(address=parse_address(address), authkey=key)
    m.connect()
    return m


def main():
    mode, address, key = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
    if mode == "serve":
        Manager.register("get_jobs", callable=lambda: JOBS, proxytype=DictProxy)
        Manager.register("get_event", callable=lambda: EVENT, proxytype=EventProxy)
        Manager.register("get_queue", callable=lambda: QUEUE)
        Manager.register("get_lock", callable=lambda: LOCK)
        Manager.register("get_box", callable=Box, exposed=("child",),
                         method_to_typeid={"child": "dict"})
        server = Manager(address=parse_address(address), authkey=key).get_server()
        print(f"READY {format_address(server.address)}", flush=True)
        server.serve_forever()  # until a shutdown request: sys.exit(0)
    m = client_manager(address, key)
    if mode == "wait_event":
        ev = m.get_event()
        print("READY", flush=True)
        sys.exit(0 if ev.wait(float(sys.argv[4])) else 1)
    if mode == "set_event":
        ev = m.get_event()
        print("READY", flush=True)
        sys.stdin.readline()
        ev.set()
        sys.exit(0)
    if mode == "echo_queue":
        q = m.get_queue()
        print("READY", flush=True)
        item = q.get(timeout=60)
        q.put(("echo", item))
        sys.exit(0)
    if mode == "check_jobs":
        jobs = m.get_jobs()
        sys.exit(0 if jobs.get("gamma") == "from C" and jobs["alpha"] == 1 else 1)
    if mode == "check_typed":
        jobs = m.get_jobs()
        ok = (jobs["s"] == "text" and type(jobs["i"]) is int and jobs["i"] == 42
              and jobs["f"] == 2.5 and jobs[b"raw"] == b"\x00raw")
        jobs["from_py"] = "py text"
        sys.exit(0 if ok else 1)
    if mode == "lock_held":
        sys.exit(0 if not m.get_lock().acquire(False) else 1)
    if mode == "bench":
        n = int(sys.argv[4])
        t0 = time.perf_counter()
        d = m.dict()
        d["warm"] = 0
        t1 = time.perf_counter()
        for i in range(n):
            d["k"] = i
            d["k"]
        t2 = time.perf_counter()
        print(f"BENCH {(t1 - t0) * 1000:.2f} {2 * n / (t2 - t1):.0f}", flush=True)
        sys.exit(0)
    sys.exit(2)


if __name__ == "__main__":
    main()
