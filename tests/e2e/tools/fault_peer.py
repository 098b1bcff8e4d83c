# SPDX-License-Identifier: GPL-2.0-or-later
"""A TCP peer that misbehaves on purpose: resets mid-stream, times connects.

``server --listen HOST:PORT``
    accepts one connection, then runs ``--then``: ``send-reset:N`` sends N
    seeded bytes and closes with an RST (``SO_LINGER`` 0), ``recv`` reads to
    EOF or error.  Prints ``LISTEN <port>`` first.
``client --connect HOST:PORT``
    connects (reporting how long the attempt took and how it ended), then
    runs ``--then``: ``recv`` reads to EOF or error; ``send-reset:N`` sends N
    seeded bytes, waits ``--pause`` seconds and closes with an RST.

``--recv-rate MB/s`` paces ``recv`` (either role), so that the reader is the
slowest part of the path and every buffer before it is full.

Each side prints one JSON line: the bytes it moved and their SHA-256, the
error that ended the stream (``ECONNRESET``, ``ECONNREFUSED``... or ``EOF``)
and, for a client, ``connect_seconds``.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import random
import socket
import struct
import sys
import time
from typing import Any

LINGER_RST = struct.pack("ii", 1, 0)


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def error_name(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


def recv_all(sock: socket.socket, rate: float = 0.0) -> dict[str, Any]:
    """Read to EOF or an error; ``rate`` (MB/s, 0: as fast as it comes)
    paces the reads, so that every buffer before this reader stays full."""
    digest = hashlib.sha256()
    total = 0
    end = "EOF"
    start = time.monotonic()
    try:
        while chunk := sock.recv(1 << 16):
            digest.update(chunk)
            total += len(chunk)
            if rate:
                ahead = start + total / (rate * 1e6) - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    except OSError as exc:
        end = error_name(exc)
    return {"received": total, "sha256": digest.hexdigest(), "end": end}


def send_reset(sock: socket.socket, size: int, pause: float) -> dict[str, Any]:
    data = random.Random(size).randbytes(size)
    end = "sent"
    try:
        sock.sendall(data)
        time.sleep(pause)
    except OSError as exc:
        end = error_name(exc)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    sock.close()
    return {"sent": size, "end": end}


def run(sock: socket.socket, then: str, pause: float, rate: float) -> dict[str, Any]:
    if then == "recv":
        return recv_all(sock, rate)
    kind, _, size = then.partition(":")
    if kind == "send-reset":
        return send_reset(sock, int(size), pause)
    raise ValueError(f"bad --then {then!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--listen")
    parser.add_argument("--connect")
    parser.add_argument("--then", default="recv")
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--recv-rate", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    record: dict[str, Any] = {}
    if args.role == "server":
        host, port = parse_hostport(args.listen)
        lsock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((host, port))
        lsock.listen(1)
        print(f"LISTEN {lsock.getsockname()[1]}", flush=True)
        lsock.settimeout(args.timeout)
        conn, _ = lsock.accept()
        conn.settimeout(args.timeout)
        record.update(run(conn, args.then, args.pause, args.recv_rate))
    else:
        host, port = parse_hostport(args.connect)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.settimeout(args.timeout)
        start = time.monotonic()
        try:
            sock.connect((host, port))
        except OSError as exc:
            record["connect_error"] = error_name(exc)
        record["connect_seconds"] = round(time.monotonic() - start, 3)
        if "connect_error" not in record:
            record.update(run(sock, args.then, args.pause, args.recv_rate))
    print(json.dumps(record, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
