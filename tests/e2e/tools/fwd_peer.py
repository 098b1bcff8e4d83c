# SPDX-License-Identifier: GPL-2.0-or-later
"""Host-side clients of port forwards for the end-to-end tests.

``tcp``: one connection per ``--connect HOST:PORT`` (repeatable; ``[::1]:P``
for IPv6), made one after the other, optionally from ``--bind ADDR``.  Each
runs a comma-separated list of actions:

``send:rand:SEED:NBYTES``
    send NBYTES from ``random.Random(SEED).randbytes`` (as ``tcp_peer.py``);
``send:file:PATH``
    send the whole file;
``recv``
    read until EOF;
``recv:NBYTES``
    read exactly NBYTES (EOF before that is an error);
``shutwr``
    ``shutdown(SHUT_WR)``;
``mark:NAME``
    print the line ``MARK NAME`` (a test waits for it);
``waitfile:PATH``
    wait until PATH exists (a test creates it to let the connection go on).

Each connection prints one JSON line: the SHA-256 and length of everything
sent and of everything received over the whole connection, whether EOF was
seen, the seconds from connect to the end, and the error that stopped it
(``connect_error`` if the connection was never made).

``udp``: sends ``--count`` datagrams to ``--connect`` (sizes cycling through
``--sizes``, content seeded by the datagram's index), at most ``--window``
of them awaiting their echo at any time, and prints one JSON line: how many
were sent, echoed intact, garbled or lost (no echo within ``--wait``
seconds of the last progress), and the local address used.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import random
import select
import socket
import sys
import time
from typing import Any

CHUNK = 1 << 20


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` or ``[HOST]:PORT``."""
    host, _, port = text.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def error_name(exc: BaseException) -> str:
    """``ECONNRESET``, ``timeout``... for an exception."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


class Stream:
    """Digests and counters of one TCP connection."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.tx = hashlib.sha256()
        self.rx = hashlib.sha256()
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.eof = False

    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(remaining)

    def send(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for off in range(0, len(view), CHUNK):
            self._arm()
            self.sock.sendall(view[off : off + CHUNK])
        self.tx.update(view)
        self.tx_bytes += len(view)

    def recv(self, limit: int | None) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        wanted = limit
        while wanted is None or wanted > 0:
            self._arm()
            size = CHUNK if wanted is None else min(CHUNK, wanted)
            n = self.sock.recv_into(view[:size])
            if n == 0:
                self.eof = True
                if wanted is not None:
                    raise EOFError(f"EOF with {wanted} bytes still expected")
                return
            self.rx.update(view[:n])
            self.rx_bytes += n
            if wanted is not None:
                wanted -= n

    def run(self, action: str) -> None:
        kind, _, rest = action.partition(":")
        if kind == "send" and rest.startswith("rand:"):
            seed, _, size = rest[5:].partition(":")
            self.send(random.Random(int(seed)).randbytes(int(size)))
        elif kind == "send" and rest.startswith("file:"):
            with open(rest[5:], "rb") as f:
                while chunk := f.read(CHUNK):
                    self.send(chunk)
        elif kind == "recv":
            self.recv(int(rest) if rest else None)
        elif action == "shutwr":
            self.sock.shutdown(socket.SHUT_WR)
        elif kind == "mark":
            print(f"MARK {rest}", flush=True)
        elif kind == "waitfile":
            while not os.path.exists(rest):
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"{rest} did not appear")
                time.sleep(0.01)
        else:
            raise ValueError(f"bad action {action!r}")

    def record(self) -> dict[str, Any]:
        return {
            "tx_sha256": self.tx.hexdigest(),
            "tx_bytes": self.tx_bytes,
            "rx_sha256": self.rx.hexdigest(),
            "rx_bytes": self.rx_bytes,
            "eof": self.eof,
        }


def tcp_one(
    target: str, bind: str | None, actions: list[str], timeout: float
) -> dict[str, Any]:
    """One connection to ``target``; its JSON record."""
    host, port = parse_hostport(target)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    record: dict[str, Any] = {"target": target, "error": None}
    start = time.monotonic()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(timeout)
            if bind:
                sock.bind((bind, 0))
            sock.connect((host, port))
        except Exception as exc:
            record["connect_error"] = record["error"] = error_name(exc)
            record["elapsed"] = round(time.monotonic() - start, 3)
            return record
        record["local"] = "{}:{}".format(*sock.getsockname()[:2])
        stream = Stream(sock, start + timeout)
        try:
            for action in actions:
                stream.run(action)
        except Exception as exc:
            record["error"] = error_name(exc)
            record["message"] = str(exc)
        record.update(stream.record())
    record["elapsed"] = round(time.monotonic() - start, 3)
    return record


def tcp_main(args: argparse.Namespace) -> int:
    """Run every ``--connect`` in turn."""
    actions = [a for a in args.actions.split(",") if a]
    ok = True
    for target in args.connect:
        record = tcp_one(target, args.bind, actions, args.timeout)
        ok = ok and record["error"] is None
        print(json.dumps(record, sort_keys=True), flush=True)
    return 0 if ok else 2


def udp_main(args: argparse.Namespace) -> int:
    """Send datagrams with a bounded window and check every echo."""
    host, port = parse_hostport(args.connect[0])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sizes = [int(s) for s in args.sizes.split(",")]
    summary: dict[str, Any] = {
        "sent": 0,
        "echoed": 0,
        "garbled": 0,
        "lost": 0,
        "error": None,
    }
    start = time.monotonic()
    deadline = start + args.timeout
    pending: dict[bytes, int] = {}
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            if args.bind:
                sock.bind((args.bind, 0))
            sock.connect((host, port))
            summary["local"] = "{}:{}".format(*sock.getsockname()[:2])
            sock.setblocking(False)
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            index = 0
            last_progress = time.monotonic()
            while index < args.count or pending:
                now = time.monotonic()
                if now > deadline:
                    raise TimeoutError("overall deadline passed")
                while index < args.count and len(pending) < args.window:
                    payload = random.Random(index).randbytes(sizes[index % len(sizes)])
                    sock.send(payload)
                    pending[payload] = index
                    summary["sent"] += 1
                    index += 1
                if not poller.poll(50):
                    if time.monotonic() - last_progress > args.wait:
                        # Whatever is still out is lost; start a new window.
                        summary["lost"] += len(pending)
                        pending.clear()
                        last_progress = time.monotonic()
                    continue
                while True:
                    try:
                        reply = sock.recv(65535)
                    except BlockingIOError:
                        break
                    if pending.pop(reply, None) is None:
                        summary["garbled"] += 1
                    else:
                        summary["echoed"] += 1
                    last_progress = time.monotonic()
        except Exception as exc:
            summary["error"] = error_name(exc)
            summary["message"] = str(exc)
    summary["elapsed"] = round(time.monotonic() - start, 3)
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0 if summary["error"] is None and summary["echoed"] == args.count else 2


def main() -> int:
    """Parse the command line and run the client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("tcp", "udp"))
    parser.add_argument("--connect", metavar="HOST:PORT", action="append", default=[])
    parser.add_argument("--bind", metavar="ADDR")
    parser.add_argument("--actions", default="recv", help="tcp: the actions")
    parser.add_argument("--count", type=int, default=20, help="udp: datagrams")
    parser.add_argument("--sizes", default="1,64,512,1000,1400", help="udp: sizes")
    parser.add_argument("--window", type=int, default=1, help="udp: in flight")
    parser.add_argument("--wait", type=float, default=2.0, help="udp: loss timer")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    if not args.connect:
        parser.error("--connect is required")
    return tcp_main(args) if args.mode == "tcp" else udp_main(args)


if __name__ == "__main__":
    sys.exit(main())
