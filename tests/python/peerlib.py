"""Shared by the interop helper scripts: mproc address syntax and the echo loop.

Exit codes the C tests look at: 0 success, 3 authentication failed, anything else an error.
"""
import sys

AUTH_FAILED = 3


def parse_address(spec):
    """mproc's "unix:/path", "unix:@name" or "tcp:host:port" as a Python address."""
    if spec.startswith("unix:@"):
        return "\0" + spec[6:]
    if spec.startswith("unix:"):
        return spec[5:]
    if spec.startswith("tcp:"):
        host, _, port = spec[4:].rpartition(":")
        return (host.strip("[]"), int(port))
    raise ValueError(f"bad address {spec!r}")


def format_address(addr):
    if isinstance(addr, tuple):
        return f"tcp:{addr[0]}:{addr[1]}"
    if isinstance(addr, bytes):  # abstract names come back as bytes
        return "unix:@" + addr[1:].decode()
    if addr.startswith("\0"):
        return "unix:@" + addr[1:]
    return "unix:" + addr


def parse_key(arg):
    return None if arg == "-" else bytes.fromhex(arg)


def ready(address):
    """Tell the C test we listen, and where."""
    print(f"READY {address}", flush=True)


def echo(recv_bytes, send_bytes):
    """Send every message back reversed until the peer hangs up."""
    n = 0
    while True:
        try:
            msg = recv_bytes()
        except EOFError:
            return n
        send_bytes(msg[::-1])
        n += 1


def fail(msg, code=1):
    print(f"{sys.argv[0]}: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)
