# SPDX-License-Identifier: GPL-2.0-or-later
"""The smallest TCP relay an asyncio loop can run, for ``python -m bench.floor``.

It accepts on ``--listen``, connects each client to ``--to`` and copies bytes
both ways with ``add_reader``, ``recv`` until ``EAGAIN`` and ``send``: the
system calls a userspace proxy cannot avoid per request, with no stack, no
buffering and no error handling beyond closing. Prints ``LISTEN <port>`` and
runs until it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import socket


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT``."""
    host, _, port = text.rpartition(":")
    return host, int(port)


def pipe(
    loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket
) -> None:
    """Copy ``src`` to ``dst`` whenever ``src`` is readable."""

    def readable() -> None:
        while True:
            try:
                data = src.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(src.fileno())
                src.close()
                dst.close()
                return
            dst.sendall(data)

    loop.add_reader(src.fileno(), readable)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", metavar="HOST:PORT", required=True)
    parser.add_argument("--to", metavar="HOST:PORT", required=True)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    listener = socket.create_server(parse_hostport(args.listen))
    listener.setblocking(False)
    target = parse_hostport(args.to)

    def accept() -> None:
        client, _ = listener.accept()
        server = socket.create_connection(target)
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe(loop, client, server)
        pipe(loop, server, client)

    loop.add_reader(listener.fileno(), accept)
    print(f"LISTEN {listener.getsockname()[1]}", flush=True)
    loop.run_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
