"""Python clients of an mproc manager (mproc-manager) for tests/test_pydialect.c: an unmodified
multiprocessing SyncManager client, registered names answered by the mproc objects of those names.

    mproc_client.py dict ADDRESS KEYHEX         dict semantics on get_jobs() and m.dict(); reads
                                                b"from_c" (set by C), writes "from_py" and b"raw"
    mproc_client.py wait_event ADDRESS KEYHEX T "READY", then exit 0 if get_ev() is set within T s
    mproc_client.py set_event ADDRESS KEYHEX    "READY", read a line on stdin, set get_ev()
    mproc_client.py queue ADDRESS KEYHEX        get_q() timeouts (queue.Empty), "READY", take b"job"
                                                (put by C), put back ("done", 1.5)
    mproc_client.py hold_lock ADDRESS KEYHEX    acquire get_lk(), "READY", sleep (to be killed)
    mproc_client.py take_lock ADDRESS KEYHEX    exit 0 if get_lk() is acquired within 10 s
    mproc_client.py shutdown ADDRESS KEYHEX     ask the manager to end
    mproc_client.py bad ADDRESS KEYHEX          hostile or unservable requests: RemoteError, in step
    mproc_client.py bench ADDRESS KEYHEX N      "BENCH <connect ms> <dict ms> <ops/s>": N set+get pairs
Any failed check exits non-zero with the traceback on stderr.
"""
import queue
import sys
import time
from multiprocessing.managers import SyncManager, dispatch

from peerlib import parse_address


class Manager(SyncManager):
    pass


for name in ("get_jobs", "get_ev", "get_q", "get_lk"):
    Manager.register(name)


def check_dict(m):
    jobs = m.get_jobs()
    assert jobs[b"from_c"] == b"world", jobs.get(b"from_c")
    jobs["from_py"] = {"n": 1}
    jobs[b"raw"] = b"\x00bin"
    jobs[b"\x80looks pickled"] = b"\x80\x04 not a pickle"
    assert jobs[b"\x80looks pickled"] == b"\x80\x04 not a pickle"
    try:
        jobs["nope"]
        raise AssertionError("no KeyError")
    except KeyError as e:
        assert e.args == ("nope",), e.args
    d = m.dict({"a": 1}, b=[1, (2, 3)])
    d[1] = "int"
    d[1.0] = "float"  # one key with 1 and True, as in Python
    d[True] = "bool"
    assert len(d) == 3 and d[1] == "bool" and d[1.0] == "bool", d.copy()
    d[(1, "x")] = None
    assert (1.0, "x") in d and d[(True, "x")] is None
    assert list(d) == ["a", "b", 1, (1, "x")], list(d)  # insertion order, through an Iterator
    assert d.keys() == ["a", "b", 1, (1, "x")]
    assert d.items()[1] == ("b", [1, (2, 3)])
    assert d.get("zz", 5) == 5 and d.get("zz") is None
    assert d.pop("a") == 1 and "a" not in d and d.pop("a", 9) == 9
    assert d.setdefault("s", 2.5) == 2.5 and d.setdefault("s", 0) == 2.5
    d.update({"u": "v"}, w=b"x")
    assert d["u"] == "v" and d["w"] == b"x"
    del d["u"]
    assert d.popitem() == ("w", b"x")
    big = 2**100
    d[big] = -(2**70)
    assert d[big] == -(2**70)
    d.clear()
    assert len(d) == 0 and d.copy() == {}
    try:
        d[[1]] = 2
        raise AssertionError("a list key was accepted")
    except TypeError:
        pass
    ns = m.Namespace(a=1)
    ns.b = "bee"
    assert ns.a == 1 and ns.b == "bee"
    try:
        ns.c
        raise AssertionError("no AttributeError")
    except AttributeError:
        pass
    del ns.b
    lst = m.list([1, "two"])
    lst.append(b"3")
    lst.extend([4.0, None])
    lst.insert(0, "zero")
    lst[1] = "one"
    assert len(lst) == 6 and lst[0] == "zero" and lst[-1] is None, lst._getvalue()
    assert lst.pop() is None and lst.pop(0) == "zero"
    assert 4 in lst and lst.count(4) == 1 and lst.index(b"3") == 2
    lst.remove("two") if "two" in lst else lst.remove("one")
    del lst[0]
    assert lst._getvalue() == [b"3", 4.0], lst._getvalue()
    try:
        lst[10]
        raise AssertionError("no IndexError")
    except IndexError:
        pass
    rl = m.RLock()
    assert rl.acquire() and rl.acquire()
    rl.release()
    rl.release()
    try:
        rl.release()
        raise AssertionError("released an RLock not held")
    except RuntimeError:
        pass
    with rl:
        pass
    sem = m.Semaphore(2)
    assert sem.acquire() and sem.acquire(timeout=1)
    t = time.monotonic()
    assert not sem.acquire(timeout=0.1)
    assert time.monotonic() - t >= 0.08
    assert not sem.acquire(False)
    sem.release()
    assert sem.acquire(False)
    bs = m.BoundedSemaphore(1)
    assert bs.acquire()
    bs.release()
    try:
        bs.release()
        raise AssertionError("a BoundedSemaphore released past its value")
    except ValueError:
        pass
    v = m.Value("i", 7)
    assert v.value == 7
    v.value = 8
    assert v.get() == 8


def main():
    mode, address, key = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
    t0 = time.perf_counter()
    m = Manager(address=parse_address(address), authkey=key)
    m.connect()
    connect_ms = (time.perf_counter() - t0) * 1000
    if mode == "dict":
        check_dict(m)
    elif mode == "wait_event":
        ev = m.get_ev()
        print("READY", flush=True)
        sys.exit(0 if ev.wait(float(sys.argv[4])) else 1)
    elif mode == "set_event":
        ev = m.get_ev()
        assert not ev.is_set()
        print("READY", flush=True)
        sys.stdin.readline()
        ev.set()
    elif mode == "queue":
        q = m.get_q()
        t = time.monotonic()
        try:
            q.get(timeout=0.3)
            raise AssertionError("no queue.Empty")
        except queue.Empty:
            pass
        waited = time.monotonic() - t
        assert 0.25 < waited < 10, waited
        try:
            q.get_nowait()
            raise AssertionError("no queue.Empty")
        except queue.Empty:
            pass
        assert q.empty() and q.qsize() == 0
        print("READY", flush=True)
        assert q.get(timeout=30) == b"job"
        q.put(("done", 1.5))
    elif mode == "hold_lock":
        lk = m.get_lk()
        assert lk.acquire()
        print("READY", flush=True)
        time.sleep(600)
    elif mode == "take_lock":
        lk = m.get_lk()
        assert lk.acquire(timeout=10)
        assert not lk.acquire(timeout=0.05)  # a Lock is not reentrant
        lk.release()
    elif mode == "shutdown":
        conn = m._Client(m._address, authkey=m._authkey)
        dispatch(conn, None, "shutdown")
    elif mode == "bad":
        import collections
        from multiprocessing.managers import RemoteError

        d = m.dict()
        for value in (collections.OrderedDict(a=1), print, collections.Counter):
            try:
                d["x"] = value  # a class instance or a global: never unpickled by the server
                raise AssertionError("accepted %r" % (value,))
            except RemoteError:
                pass
        d["y"] = 1
        assert d["y"] == 1 and "x" not in d  # the connection is still in step
        for junk in (lambda c: c.send("not a request"), lambda c: c.send_bytes(b"\x80\x04junk"),
                     lambda c: c.send((None, "no_such_request", (), {}))):
            conn = m._Client(m._address, authkey=m._authkey)
            junk(conn)
            kind, _ = conn.recv()
            assert kind == "#TRACEBACK", kind
            conn.close()
        for typeid in ("Pool", "Iterator", "no_such_typeid"):
            try:
                m._create(typeid)
                raise AssertionError("created %s" % typeid)
            except RemoteError:
                pass
        conn = m._Client(m._address, authkey=m._authkey)
        dispatch(conn, None, "accept_connection", ("t",))
        conn.send(("ffffffff", "__len__", (), {}))  # no such object
        assert conn.recv()[0] == "#TRACEBACK"
        conn.send((d._id, "__class__", (), {}))  # not exposed
        assert conn.recv()[0] == "#TRACEBACK"
        conn.send((d._id, "__len__", (), {}))
        assert conn.recv() == ("#RETURN", 1)
    elif mode == "bench":
        n = int(sys.argv[4])
        t0 = time.perf_counter()
        d = m.dict()
        d["warm"] = 1
        dict_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        for i in range(n):  # as py_manager.py's bench, for the same run against Python's
            d["k"] = i
            d["k"]
        ops = 2 * n / (time.perf_counter() - t0)
        print(f"BENCH {connect_ms:.3f} {dict_ms:.3f} {ops:.0f}", flush=True)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
