# SPDX-License-Identifier: GPL-2.0-or-later
"""A UDP echo server and a checking client for the end-to-end tests.

Server (``--listen HOST:PORT``): prints ``LISTEN <port>``, then echoes every
datagram back to its sender and prints one JSON line per datagram (peer,
SHA-256, length); it stops after ``--count`` datagrams or ``--timeout``.

Client (``--connect HOST:PORT``): sends ``--count`` datagrams of distinct
seeded content and sizes up to ``--size``, waits for each echo (resending a
few times, as UDP may drop) and prints one JSON summary line.  Exit status 0
only if every echo came back byte for byte.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import random
import socket
import sys
import time
from typing import Any


def family(host: str) -> socket.AddressFamily:
    """The socket family for a literal address."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT``."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def serve(args: argparse.Namespace) -> int:
    """Echo datagrams until ``--count`` of them or the deadline."""
    listen = parse_hostport(args.listen)
    sock = socket.socket(family(listen[0]), socket.SOCK_DGRAM)
    sock.bind(listen)
    print(f"LISTEN {sock.getsockname()[1]}", flush=True)
    deadline = time.monotonic() + args.timeout
    for _ in range(args.count):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            data, peer = sock.recvfrom(65535)
        except TimeoutError:
            break
        sock.sendto(data, peer)
        record = {
            "peer": f"{peer[0]}:{peer[1]}",
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
        print(json.dumps(record, sort_keys=True), flush=True)
    sock.close()
    return 0


def client(args: argparse.Namespace) -> int:
    """Send datagrams and check each echo."""
    server = parse_hostport(args.connect)
    sock = socket.socket(family(server[0]), socket.SOCK_DGRAM)
    summary: dict[str, Any] = {"sent": 0, "echoed": 0, "resends": 0, "error": None}
    deadline = time.monotonic() + args.timeout
    try:
        sock.connect(server)
        summary["local"] = "{}:{}".format(*sock.getsockname()[:2])
        for i in range(args.count):
            size = 1 + (i * 7919) % args.size
            payload = random.Random(i).randbytes(size)
            for _attempt in range(args.tries):
                if time.monotonic() > deadline:
                    raise TimeoutError("overall deadline passed")
                sock.send(payload)
                summary["sent"] += 1
                sock.settimeout(args.wait)
                try:
                    reply = sock.recv(65535)
                except TimeoutError:
                    summary["resends"] += 1
                    continue
                if reply != payload:
                    raise ValueError(f"datagram {i}: echo differs")
                summary["echoed"] += 1
                break
            else:
                raise TimeoutError(f"datagram {i}: no echo after {args.tries} tries")
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        summary["error"] = code if exc.errno else str(exc) or type(exc).__name__
        summary["message"] = str(exc)
    except ValueError as exc:
        summary["error"] = "mismatch"
        summary["message"] = str(exc)
    finally:
        sock.close()
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0 if summary["error"] is None and summary["echoed"] == args.count else 2


def main() -> int:
    """Parse the command line and run as server or client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--listen", metavar="HOST:PORT")
    mode.add_argument("--connect", metavar="HOST:PORT")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--size", type=int, default=1400)
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--wait", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    return serve(args) if args.listen else client(args)


if __name__ == "__main__":
    sys.exit(main())
