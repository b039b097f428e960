"""Record the pickles a real SyncManager session sends (requests and replies), as the seed corpus
of tests/fuzz/fuzz_pickle.c:

    python3 tests/python/capture_manager_frames.py tests/fuzz/corpus/pickle

Server and client run in this one process (the server in a thread), so patching
Connection._send_bytes sees both directions. Each distinct pickle becomes one file named
py<version>-<n>-<request|reply>.
"""
import hashlib
import os
import pickle
import sys
import threading
from multiprocessing import connection
from multiprocessing.managers import DictProxy, SyncManager

frames = []
_send = connection.Connection._send_bytes


def recording_send(self, buf):
    data = bytes(buf)
    if data[:1] == b"\x80":  # a pickle, not a handshake message
        frames.append(data)
    return _send(self, buf)


connection.Connection._send_bytes = recording_send


class Manager(SyncManager):
    pass


JOBS = {"alpha": 1, "beta": [2, 3.5, None], "gamma": {"nested": (True, b"\x00\xff")}}
Manager.register("get_jobs", callable=lambda: JOBS, proxytype=DictProxy)


def session(address, key):
    m = Manager(address=address, authkey=key)
    m.connect()
    d = m.dict()
    d["k"] = "v"
    d[1] = [1, 2**70, -1.5]
    d[b"bytes"] = bytearray(b"ba")
    _ = d["k"], d.get("missing"), len(d), list(d.keys()), d.items()
    try:
        d["missing"]
    except KeyError:
        pass
    lst = m.list([1, "two", (3,)])
    lst.append({"x": {1, 2}})
    lst.extend([frozenset({4})])
    _ = lst[0], lst[-1], len(lst)
    q = m.Queue(2)
    q.put(("job", 1))
    q.put_nowait("second")
    try:
        q.put(3, timeout=0.01)
    except Exception:
        pass
    _ = q.get(), q.get()
    try:
        q.get(timeout=0.01)
    except Exception:
        pass
    ev = m.Event()
    ev.set()
    _ = ev.is_set(), ev.wait(0.01)
    ev.clear()
    lock = m.Lock()
    lock.acquire()
    lock.release()
    ns = m.Namespace()
    ns.x = 1
    _ = ns.x
    v = m.Value("i", 5)
    v.value = 6
    _ = v.value
    jobs = m.get_jobs()
    _ = jobs.copy(), jobs["alpha"]
    try:
        jobs.no_such_method()
    except Exception:
        pass
    try:
        lst._callmethod("__class__")
    except Exception:
        pass


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    key = b"corpus key"
    server = Manager(address=("127.0.0.1", 0), authkey=key).get_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    session(server.address, key)
    version = "%d%d" % sys.version_info[:2]
    seen = set()
    n = 0
    for data in frames:
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            continue
        seen.add(digest)
        obj = pickle.loads(data)
        kind = "reply" if isinstance(obj, tuple) and str(obj[0]).startswith("#") else "request"
        with open(os.path.join(out, f"py{version}-{n:03d}-{kind}"), "wb") as f:
            f.write(data)
        n += 1
    print(f"{n} frames", file=sys.stderr)


if __name__ == "__main__":
    main()
