"""multiprocessing.connection.Listener serving one mproc client: echo messages reversed.

usage: mp_listener.py ADDRESS KEYHEX|-    (prints "READY <bound address>" once listening)
"""
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Listener

import peerlib


def main():
    address, key = peerlib.parse_address(sys.argv[1]), peerlib.parse_key(sys.argv[2])
    with Listener(address, authkey=key) as listener:
        peerlib.ready(peerlib.format_address(listener.address))
        try:
            conn = listener.accept()
        except AuthenticationError as e:
            peerlib.fail(f"AuthenticationError: {e}", peerlib.AUTH_FAILED)
        with conn:
            n = peerlib.echo(conn.recv_bytes, conn.send_bytes)
    if n == 0:
        peerlib.fail("no message received")


main()
