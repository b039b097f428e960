"""multiprocessing.connection.Client against an mproc listener: echo messages reversed.

usage: mp_client.py ADDRESS KEYHEX|-
"""
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client

import peerlib


def main():
    address, key = peerlib.parse_address(sys.argv[1]), peerlib.parse_key(sys.argv[2])
    try:
        conn = Client(address, authkey=key)
    except AuthenticationError as e:
        peerlib.fail(f"AuthenticationError: {e}", peerlib.AUTH_FAILED)
    with conn:
        n = peerlib.echo(conn.recv_bytes, conn.send_bytes)
    if n == 0:
        peerlib.fail("no message received")


main()
