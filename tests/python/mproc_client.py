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
    mproc_client.py condition ADDRESS KEYHEX    m.Condition(): wait/notify/notify_all/wait_for across
                                                threads, timeouts, reentrancy, RuntimeError
    mproc_client.py barrier ADDRESS KEYHEX      m.Barrier(): a round of 3 threads, properties, abort,
                                                reset, a timeout breaking it
    mproc_client.py pool_event ADDRESS KEYHEX   the talk's example: get_ev() handed to a Pool task
                                                computing e until it is set; "READY" once the task
                                                runs, then set by C: prints "E <e>"
Any failed check exits non-zero with the traceback on stderr.
"""
import math
import multiprocessing
import queue
import sys
import threading
import time
from multiprocessing.managers import SyncManager, dispatch

from peerlib import parse_address


class Manager(SyncManager):
    pass


for name in ("get_jobs", "get_ev", "get_q", "get_replies", "get_lk"):
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


def run_threads(n, target):
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()


def check_condition(m):
    c = m.Condition()
    state = m.dict()
    got = []

    def consumer(i):
        with c:  # each thread: a connection of its own, so the server sees three holders
            got.append(c.wait_for(lambda: state.get("go"), timeout=30))

    threads = [threading.Thread(target=consumer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    with c:
        state["go"] = 1
        c.notify_all()
    for t in threads:
        t.join(60)
    assert got == [1, 1, 1], got
    # one notify wakes one waiter
    with c:
        state["n"] = 0
    woken = []

    def one(i):
        with c:
            if c.wait(timeout=30):
                woken.append(i)
            state["n"] = state["n"] + 1

    t = threading.Thread(target=one, args=(0,))
    t.start()
    while True:  # notify only once it waits (a notify before its wait would be lost)
        with c:
            c.notify(1)
            if state["n"] == 1:
                break
        time.sleep(0.01)
    t.join(60)
    assert woken == [0], woken
    # a timed out wait returns False holding the lock again, at its depth (an RLock)
    with c:
        with c:
            t0 = time.monotonic()
            assert c.wait(0.2) is False
            assert 0.15 < time.monotonic() - t0 < 10
            assert c.wait(0) is False
    try:
        c.wait(0)
        raise AssertionError("waited without the lock")
    except RuntimeError:
        pass
    try:
        c.notify()
        raise AssertionError("notified without the lock")
    except RuntimeError:
        pass
    assert c.acquire(timeout=1)
    c.release()


def check_barrier(m):
    b = m.Barrier(3, timeout=30)
    assert b.parties == 3 and b.n_waiting == 0 and not b.broken
    indexes = []
    run_threads(3, lambda i: indexes.append(b.wait()))
    assert sorted(indexes) == [0, 1, 2], indexes
    run_threads(3, lambda i: indexes.append(b.wait()))  # a second round
    assert sorted(indexes) == [0, 0, 1, 1, 2, 2], indexes
    # abort: the party waiting gets BrokenBarrierError
    b2 = m.Barrier(2)
    errors = []

    def waiter(i):
        try:
            b2.wait()
        except threading.BrokenBarrierError:
            errors.append(i)

    t = threading.Thread(target=waiter, args=(0,))
    t.start()
    deadline = time.monotonic() + 30
    while b2.n_waiting != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    b2.abort()
    t.join(60)
    assert errors == [0] and b2.broken
    try:
        b2.wait()
        raise AssertionError("waited on a broken barrier")
    except threading.BrokenBarrierError:
        pass
    b2.reset()
    assert not b2.broken and b2.n_waiting == 0
    run_threads(2, lambda i: b2.wait(30))
    # a wait that times out breaks the barrier
    b3 = m.Barrier(2)
    t0 = time.monotonic()
    try:
        b3.wait(0.2)
        raise AssertionError("no BrokenBarrierError")
    except threading.BrokenBarrierError:
        pass
    assert 0.15 < time.monotonic() - t0 < 10 and b3.broken


def calculate_e(exit_event):
    # the talk's task: an mproc manager's Event, reached by the worker through its own proxy
    e, term, n = 0.0, 1.0, 0
    while True:
        for _ in range(1000):
            e += term
            n += 1
            term /= n
        if exit_event.is_set():
            return e


def pool_event(m, key):
    multiprocessing.current_process().authkey = key  # what the workers' proxies authenticate with
    exit_event = m.get_ev()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(calculate_e, (exit_event,))
        try:
            result.get(timeout=0.3)
            raise AssertionError("the task ended before the Event was set")
        except multiprocessing.TimeoutError:
            pass
        print("READY", flush=True)
        e = result.get(timeout=60)
    assert abs(e - math.e) < 1e-12, e
    print(f"E {e:.15f}", flush=True)


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
        # on a queue of its own: on q the C side's get could take this reply's place
        m.get_replies().put(("done", 1.5))
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
    elif mode == "condition":
        check_condition(m)
    elif mode == "barrier":
        check_barrier(m)
    elif mode == "pool_event":
        pool_event(m, key)
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
