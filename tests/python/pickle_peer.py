"""The Python side of tests/test_pickle.c: round trips through mproc's pickle codec.

    pickle_peer.py roundtrip PROTO   sends every sample pickled with PROTO on stdout (4-byte
                                     big-endian length, then the pickle), reads back what C wrote
                                     for each, unpickles it and compares it strictly (same types,
                                     same order, same sharing); then reads the values C built and
                                     compares them with BUILT.
Exit status: the number of mismatches (0: all equal). Mismatches are described on stderr.
"""
import math
import pickle
import queue
import struct
import sys

from multiprocessing.managers import RemoteError, Token
from multiprocessing.reduction import ForkingPickler


def samples():
    shared = [1, "two"]
    e = KeyError("with state")
    e.note = 42
    deep = []
    for _ in range(300):
        deep = [deep]
    token = Token("dict", ("127.0.0.1", 50000), "7f0012345678")
    return [
        None, True, False,
        0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, -2**31 - 1,
        2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64, 2**200, -(2**200), 2**2100 + 7,
        0.0, -0.0, 1.5, -2.25, 1e308, 5e-324, math.inf, -math.inf, math.nan, 0.1,
        "", "abc", "caf\u00e9 \u20ac \U0001d11e", "\ud800 lone", "x" * 300, "y" * 70000,
        "quote ' and \" and \\ and \n",
        b"", b"\x00\xff.", b"z" * 300, b"w" * 70000,
        bytearray(), bytearray(b"ab\x00\xff"), bytearray(b"q" * 300),
        (), (1,), (1, "2"), (1, 2, 3), (1, 2, 3, 4), tuple(range(50)),
        [], [1, [2, [3, []]]], list(range(10000)),
        {}, {"a": 1, 2: "b", (1, 2): [3], None: {}}, {str(i): i for i in range(5000)},
        {1: "int key", 1.5: "float key", b"k": "bytes key", True: "replaces 1"},
        set(), {1, "a", (2, 3)}, frozenset(), frozenset({1, 2, frozenset({3})}),
        (shared, shared, {"again": shared}),
        deep,
        KeyError("x"), KeyError(), ValueError("bad", 3), OSError(2, "No such file"), e,
        StopIteration(5), RuntimeError("boom"), queue.Empty(), queue.Full(),
        RemoteError("Traceback (most recent call last):\n..."),
        token, Token("Queue", "/tmp/sock", "abc"),
        ("#RETURN", {"a": 1}), ("#RETURN", None), ("#ERROR", KeyError("x")),
        ("#ERROR", queue.Empty()), ("#TRACEBACK", "Traceback ...\nKeyError: 'x'\n"),
        ("#PROXY", (("__contains__", "__getitem__", "get"), token)),
        (None, "create", ("dict",), {}), ("7f00", "__setitem__", ("k", [1, 2]), {}),
        ("7f00", "get", (), {"block": True, "timeout": 0.5}),
        (None, "accept_connection", ("MainProcess|MainThread",), {}),
        (None, "incref", ("7f00",), {}), (None, "decref", ("7f00",), {}),
        {"a": 1, "b": [2]}.items(), {"a": 1}.keys(), {"a": 1}.values(),
    ]


def built():
    """What tests/test_pickle.c builds with mproc__pk_*, in its order."""
    token = Token("dict", ("127.0.0.1", 50000), "7f00")
    return [
        ("#RETURN", 42),
        ("#ERROR", KeyError("x")),
        ("#ERROR", queue.Empty()),
        ("#PROXY", (("__getitem__", "__setitem__"), token)),
        ("7f00", "__setitem__", ("k", b"v\x00"), {}),
        (None, "create", ("dict",), {}),
        ({"s": {1, 2}, "f": frozenset({3})}, bytearray(b"ba"), -(2**70), 2.5, [None, True]),
    ]


VIEWS = (type({}.keys()), type({}.values()), type({}.items()))


def same(a, b):
    if isinstance(a, VIEWS):  # multiprocessing sends dict views as lists
        a = list(a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    if isinstance(a, BaseException):
        return same(a.args, b.args) and same(a.__dict__, b.__dict__)
    if isinstance(a, Token):
        return same(a.__getstate__(), b.__getstate__())
    return a == b


def sharing_kept(a, b):
    """The (shared, shared, {...}) sample: one object three times, on both sides."""
    if isinstance(a, tuple) and len(a) == 3 and isinstance(a[2], dict) and "again" in a[2]:
        return b[0] is b[1] and b[0] is b[2]["again"]
    return True


def main():
    proto = int(sys.argv[2])
    out, inp = sys.stdout.buffer, sys.stdin.buffer

    def send(data):
        out.write(struct.pack(">I", len(data)) + data)
        out.flush()

    def recv():
        head = inp.read(4)
        if len(head) < 4:
            raise EOFError
        (n,) = struct.unpack(">I", head)
        return inp.read(n)

    fails = 0
    values = samples()
    send(str(len(values)).encode())
    for i, v in enumerate(values):
        send(bytes(ForkingPickler.dumps(v, protocol=proto)))
        back = recv()
        try:
            got = pickle.loads(back)
        except Exception as exc:  # noqa: BLE001 - report and count
            print(f"sample {i}: C's pickle does not load: {exc!r} {back[:80]!r}", file=sys.stderr)
            fails += 1
            continue
        if not same(v, got) or not sharing_kept(v, got):
            print(f"sample {i}: {v!r:.80} came back as {got!r:.80}", file=sys.stderr)
            fails += 1
    expect = built()
    for i, v in enumerate(expect):
        data = recv()
        try:
            got = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001
            print(f"built {i}: does not load: {exc!r} {data!r}", file=sys.stderr)
            fails += 1
            continue
        if not same(v, got):
            print(f"built {i}: expected {v!r}, got {got!r}", file=sys.stderr)
            fails += 1
    sys.exit(min(fails, 100))


if __name__ == "__main__":
    main()
