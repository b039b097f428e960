#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_manager_protocol (tests/fuzz/corpus/manager_protocol): a native
client's streams after the handshake, in src/manager/protocol.h's framing (a little-endian header
u32 len, u32 id, u16 op, u16 flags, u32 obj, then len bytes). Object ids are the server's: the
first object a fresh server makes is slot 0, generation 1, so id 1 << 20 (objects.c SLOT_BITS).
usage: tests/fuzz/manager_protocol_seeds.py [DIR]"""
import os
import struct
import sys

HELLO, OPEN, DELETE, SHUTDOWN, CANCEL, SHARE = 1, 2, 3, 4, 5, 6
DICT_SET, DICT_GET, DICT_DEL, DICT_CONTAINS, DICT_LEN, DICT_CLEAR, DICT_SET_MANY, DICT_GET_MANY, \
    DICT_ITEMS = range(16, 25)
LIST_APPEND, LIST_INSERT, LIST_GET, LIST_SET, LIST_POP, LIST_LEN, LIST_CLEAR = range(32, 39)
QUEUE_PUT, QUEUE_GET, QUEUE_SIZE, QUEUE_FULL, QUEUE_CLOSE, QUEUE_CLOSED, QUEUE_TASK_DONE, \
    QUEUE_JOIN = range(48, 56)
EVENT_SET, EVENT_CLEAR, EVENT_IS_SET, EVENT_WAIT = range(64, 68)
LOCK_ACQUIRE, LOCK_RELEASE, LOCK_LOCKED = range(80, 83)
VALUE_LOAD, VALUE_STORE = 96, 97
DICT, LIST, QUEUE, EVENT, LOCK, VALUE = range(1, 7)
FIRST = 1 << 20  # the id of a fresh server's first object
SECOND = FIRST | 1


class Stream:
    def __init__(self):
        self.b = b""
        self.id = 0

    def req(self, op, body=b"", obj=0, length=None):
        self.id += 1
        n = len(body) if length is None else length
        self.b += struct.pack("<IIHHI", n, self.id, op, 0, obj) + body
        return self

    def hello(self):
        return self.req(HELLO, struct.pack("<I", 1))

    def open(self, kind, name, a=0, b=0, c=0):
        return self.req(OPEN, struct.pack("<BQQB", kind, a, b, c) + name)


def f64(x):
    return struct.pack("<d", x)


def seeds():
    s = {}
    s["hello"] = Stream().hello()
    s["hello_bad_version"] = Stream().req(HELLO, struct.pack("<I", 99))
    s["dict_set_get"] = (Stream().hello().open(DICT, b"d")
                         .req(DICT_SET, struct.pack("<I", 1) + b"kv", FIRST)
                         .req(DICT_GET, b"k", FIRST).req(DICT_CONTAINS, b"k", FIRST)
                         .req(DICT_LEN, b"", FIRST).req(DICT_ITEMS, b"\0", FIRST)
                         .req(DICT_DEL, b"k", FIRST).req(DICT_CLEAR, b"", FIRST))
    s["dict_many"] = (Stream().hello().open(DICT, b"d")
                      .req(DICT_SET_MANY, struct.pack("<III", 2, 1, 2) + b"abb"
                           + struct.pack("<II", 1, 0) + b"c", FIRST)
                      .req(DICT_GET_MANY, struct.pack("<II", 2, 1) + b"a"
                           + struct.pack("<I", 1) + b"z", FIRST))
    s["list_ops"] = (Stream().hello().open(LIST, b"l").req(LIST_APPEND, b"x", FIRST)
                     .req(LIST_INSERT, struct.pack("<q", 0) + b"y", FIRST)
                     .req(LIST_GET, struct.pack("<q", -1), FIRST)
                     .req(LIST_SET, struct.pack("<q", 1) + b"z", FIRST)
                     .req(LIST_POP, struct.pack("<qQ", 0, 2**64 - 1), FIRST)
                     .req(LIST_LEN, b"", FIRST).req(LIST_CLEAR, b"", FIRST))
    s["queue_put_get_timeout"] = (Stream().hello().open(QUEUE, b"q", 4, 0, 1)
                                  .req(QUEUE_PUT, f64(1.0) + b"msg", FIRST)
                                  .req(QUEUE_GET, f64(1.0) + struct.pack("<Q", 2**64 - 1), FIRST)
                                  .req(QUEUE_GET, f64(0.0005) + struct.pack("<Q", 16), FIRST)
                                  .req(QUEUE_SIZE, b"", FIRST).req(QUEUE_FULL, b"", FIRST)
                                  .req(QUEUE_TASK_DONE, b"", FIRST)
                                  .req(QUEUE_JOIN, f64(0), FIRST)
                                  .req(QUEUE_CLOSE, b"", FIRST).req(QUEUE_CLOSED, b"", FIRST))
    # a get parked (forever), then a put from the same client answers it
    s["queue_parked_get"] = (Stream().hello().open(QUEUE, b"q")
                             .req(QUEUE_GET, f64(-1) + struct.pack("<Q", 2**64 - 1), FIRST)
                             .req(QUEUE_PUT, f64(0) + b"late", FIRST))
    s["event_wait"] = (Stream().hello().open(EVENT, b"e").req(EVENT_WAIT, f64(0), FIRST)
                       .req(EVENT_WAIT, f64(5.0), FIRST).req(EVENT_SET, b"", FIRST)
                       .req(EVENT_IS_SET, b"", FIRST).req(EVENT_CLEAR, b"", FIRST)
                       .req(EVENT_WAIT, f64(-1), FIRST))
    st = Stream().hello().open(EVENT, b"e").req(EVENT_WAIT, f64(5.0), FIRST)
    parked = st.id
    s["cancel_parked"] = st.req(CANCEL, struct.pack("<I", parked)).req(CANCEL, b"\1")
    s["lock_acquire_release"] = (Stream().hello().open(LOCK, b"m")
                                 .req(LOCK_ACQUIRE, f64(1.0), FIRST)
                                 .req(LOCK_ACQUIRE, f64(1.0), FIRST)  # -EDEADLK
                                 .req(LOCK_LOCKED, b"", FIRST).req(LOCK_RELEASE, b"", FIRST)
                                 .req(LOCK_RELEASE, b"", FIRST))  # -EPERM
    s["lock_held_at_close"] = Stream().hello().open(LOCK, b"m").req(LOCK_ACQUIRE, f64(0), FIRST)
    s["value_store_load"] = (Stream().hello().open(VALUE, b"v", 8, 0, 1)
                             .req(VALUE_STORE, b"12345678", FIRST)
                             .req(VALUE_LOAD, struct.pack("<Q", 8), FIRST)
                             .req(VALUE_LOAD, struct.pack("<Q", 9), FIRST))
    # found by the fuzzer's property: a load answered with more than max_message (64 KiB here)
    s["bug-value-load-over-max-message"] = (Stream().hello().open(VALUE, b"v", 100000)
                                            .req(VALUE_LOAD, struct.pack("<Q", 100000), FIRST)
                                            .req(VALUE_LOAD, struct.pack("<Q", 8), FIRST))
    s["delete"] = (Stream().hello().open(DICT, b"d").open(QUEUE, b"q")
                   .req(QUEUE_GET, f64(-1) + struct.pack("<Q", 8), SECOND)
                   .req(DELETE, b"q").req(DELETE, b"q").req(DICT_LEN, b"", SECOND)
                   .req(DELETE, b"d"))
    s["open_wrong_kind"] = Stream().hello().open(DICT, b"x").open(QUEUE, b"x").open(9, b"y")
    s["unknown_ops"] = (Stream().hello().req(0).req(200, b"abc").req(DICT_GET, b"k", 12345)
                        .req(SHARE))
    s["shutdown_then_more"] = Stream().hello().open(DICT, b"d").req(SHUTDOWN).hello()
    s["survivor_name_taken"] = Stream().hello().open(QUEUE, b"fuzz-survivor")
    s["oversize_length"] = Stream().hello().req(DICT_SET, b"", FIRST, length=0x7FFFFFFF)
    s["oversize_just_over"] = Stream().hello().req(DICT_SET, b"", FIRST, length=(64 << 10) + 1)
    s["truncated_frame"] = Stream().hello().open(DICT, b"d").req(DICT_SET, b"\1\0\0", FIRST,
                                                                  length=40)
    s["truncated_header"] = Stream().hello()
    s["truncated_header"].b += b"\x04\0\0\0\x09"
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "manager_protocol")
    os.makedirs(out, exist_ok=True)
    for name, st in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(st.b)


if __name__ == "__main__":
    main()
