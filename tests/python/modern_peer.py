"""The CPython 3.12+ authkey handshake written out by hand (the Python here may be older), to
prove mproc's "{sha256}" form byte for byte; then an echo loop with the same framing.

usage: modern_peer.py server|client ADDRESS KEYHEX
The server prints "READY <bound address>" once listening.
"""
import hmac
import os
import socket
import struct
import sys

import peerlib

CHALLENGE, WELCOME, FAILURE = b"#CHALLENGE#", b"#WELCOME#", b"#FAILURE#"


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            if buf:
                peerlib.fail("end of file inside a message")
            raise EOFError
        buf += chunk
    return buf


def recv_bytes(sock, maxlength=None):
    (size,) = struct.unpack("!i", recv_exact(sock, 4))
    if size == -1:
        (size,) = struct.unpack("!Q", recv_exact(sock, 8))
    if maxlength is not None and size > maxlength:
        peerlib.fail(f"message of {size} bytes exceeds {maxlength}")
    return recv_exact(sock, size)


def send_bytes(sock, data):
    header = struct.pack("!i", len(data)) if len(data) <= 0x7FFFFFFF else \
        struct.pack("!iQ", -1, len(data))
    sock.sendall(header + data)


def deliver_challenge(sock, key):
    message = b"{sha256}" + os.urandom(40)
    send_bytes(sock, CHALLENGE + message)
    response = recv_bytes(sock, 256)
    expected = b"{sha256}" + hmac.new(key, message, "sha256").digest()
    if not hmac.compare_digest(response, expected):
        send_bytes(sock, FAILURE)
        peerlib.fail(f"wrong response {response!r}", peerlib.AUTH_FAILED)
    send_bytes(sock, WELCOME)


def answer_challenge(sock, key):
    message = recv_bytes(sock, 256)
    if not message.startswith(CHALLENGE):
        peerlib.fail(f"expected a challenge, got {message!r}")
    message = message[len(CHALLENGE):]
    # what CPython 3.12 sends: "{sha256}" and 40 random bytes
    if not message.startswith(b"{sha256}") or len(message) != 48:
        peerlib.fail(f"challenge is not the 3.12 form: {message!r}")
    send_bytes(sock, b"{sha256}" + hmac.new(key, message, "sha256").digest())
    if recv_bytes(sock, 256) != WELCOME:
        peerlib.fail("digest sent was rejected", peerlib.AUTH_FAILED)


def main():
    role, address, key = sys.argv[1], peerlib.parse_address(sys.argv[2]), bytes.fromhex(sys.argv[3])
    family = socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX
    if role == "server":
        with socket.socket(family, socket.SOCK_STREAM) as lsock:
            lsock.bind(address)
            lsock.listen(1)
            peerlib.ready(peerlib.format_address(lsock.getsockname()))
            sock, _ = lsock.accept()
        if family == socket.AF_UNIX and not address.startswith("\0"):
            os.unlink(address)
        deliver_challenge(sock, key)
        answer_challenge(sock, key)
    else:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.connect(address)
        answer_challenge(sock, key)
        deliver_challenge(sock, key)
    with sock:
        n = peerlib.echo(lambda: recv_bytes(sock), lambda m: send_bytes(sock, m))
    if n == 0:
        peerlib.fail("no message received")


main()
