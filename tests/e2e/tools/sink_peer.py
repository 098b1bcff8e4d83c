# SPDX-License-Identifier: GPL-2.0-or-later
"""A tripwire: TCP and UDP listeners on every address of a namespace, one port.

Binds TCP and UDP on ``0.0.0.0:PORT`` and ``[::]:PORT`` (IPv6 only), so that
anything reaching the namespace's loopback (``127.0.0.1``, ``::1``) or any
other of its addresses on that port is seen.  Prints ``LISTEN <port>``, then
one JSON line per accepted connection or datagram, until ``--timeout``.  A
test that must prove that nothing got through checks there are no such
lines.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time


def bind_all(port: int) -> list[socket.socket]:
    """TCP and UDP on both wildcards; ``port`` 0 picks one free for all four."""
    socks: list[socket.socket] = []
    first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    first.bind(("0.0.0.0", port))
    first.listen(64)
    port = first.getsockname()[1]
    socks.append(first)
    for family, kind, host in (
        (socket.AF_INET, socket.SOCK_DGRAM, "0.0.0.0"),
        (socket.AF_INET6, socket.SOCK_STREAM, "::"),
        (socket.AF_INET6, socket.SOCK_DGRAM, "::"),
    ):
        sock = socket.socket(family, kind)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
        socks.append(sock)
    return socks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    socks = bind_all(args.port)
    print(f"LISTEN {socks[0].getsockname()[1]}", flush=True)
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + args.timeout
    while (remaining := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(remaining):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock.type == socket.SOCK_STREAM:
                conn, peer = sock.accept()
                conn.close()
                record = {"event": "accept", "peer": str(peer[0])}
            else:
                data, peer = sock.recvfrom(65536)
                record = {"event": "datagram", "peer": str(peer[0]), "len": len(data)}
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
