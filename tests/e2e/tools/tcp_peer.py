# SPDX-License-Identifier: GPL-2.0-or-later
"""A scriptable TCP peer for the end-to-end tests: server or client.

Each connection runs a comma-separated list of actions:

``send:file:PATH``
    send the whole file;
``send:rand:SEED:NBYTES``
    send NBYTES from ``random.Random(SEED).randbytes``;
``shutwr``
    ``shutdown(SHUT_WR)``: send FIN, keep reading;
``recv``
    read until EOF;
``echo``
    send back everything read until EOF, then ``shutwr``.

In a spec, ``{i}`` is replaced by the connection's index (parallel clients).
Every connection prints one JSON line with the SHA-256 and length of each
``send``/``recv``/``echo`` step, or the error that stopped it.  A server prints
``LISTEN <port>`` first.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import random
import socket
import sys
import threading
import time
from typing import Any

CHUNK = 1 << 20
_print_lock = threading.Lock()


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON line, atomically with respect to other threads."""
    with _print_lock:
        print(json.dumps(obj, sort_keys=True), flush=True)


def family(host: str) -> socket.AddressFamily:
    """The socket family for a literal address."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT``."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def do_send(sock: socket.socket, spec: str) -> dict[str, Any]:
    """Send what ``spec`` names; return its digest and length."""
    digest = hashlib.sha256()
    total = 0
    kind, _, rest = spec.partition(":")
    if kind == "file":
        with open(rest, "rb") as f:
            while chunk := f.read(CHUNK):
                sock.sendall(chunk)
                digest.update(chunk)
                total += len(chunk)
    elif kind == "rand":
        seed, _, size = rest.partition(":")
        data = random.Random(int(seed)).randbytes(int(size))
        view = memoryview(data)
        for off in range(0, len(data), CHUNK):
            sock.sendall(view[off : off + CHUNK])
        digest.update(data)
        total = len(data)
    else:
        raise ValueError(f"bad send spec {spec!r}")
    return {"op": "send", "sha256": digest.hexdigest(), "bytes": total}


def do_recv(sock: socket.socket, echo: bool) -> dict[str, Any]:
    """Read until EOF (echoing if asked); return digest and length."""
    digest = hashlib.sha256()
    total = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(buf)
        if n == 0:
            break
        digest.update(view[:n])
        total += n
        if echo:
            sock.sendall(view[:n])
    if echo:
        sock.shutdown(socket.SHUT_WR)
    return {
        "op": "echo" if echo else "recv",
        "sha256": digest.hexdigest(),
        "bytes": total,
    }


def run_actions(
    sock: socket.socket, actions: list[str], index: int
) -> list[dict[str, Any]]:
    """Run the action list on a connected socket."""
    steps: list[dict[str, Any]] = []
    for action in actions:
        action = action.replace("{i}", str(index))
        if action.startswith("send:"):
            steps.append(do_send(sock, action[5:]))
        elif action == "shutwr":
            sock.shutdown(socket.SHUT_WR)
        elif action == "recv":
            steps.append(do_recv(sock, echo=False))
        elif action == "echo":
            steps.append(do_recv(sock, echo=True))
        else:
            raise ValueError(f"bad action {action!r}")
    return steps


def error_record(exc: BaseException) -> dict[str, Any]:
    """Describe an exception for the JSON output."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return {"error": name, "errno": exc.errno, "message": str(exc)}
    if isinstance(exc, TimeoutError):
        return {"error": "timeout", "message": str(exc)}
    return {"error": type(exc).__name__, "message": str(exc)}


def handle(sock: socket.socket, actions: list[str], index: int, timeout: float) -> bool:
    """Run one connection and print its result; return True on success."""
    record: dict[str, Any] = {"index": index}
    ok = False
    try:
        sock.settimeout(timeout)
        record["peer"] = "{}:{}".format(*sock.getpeername()[:2])
        record["local"] = "{}:{}".format(*sock.getsockname()[:2])
        record["steps"] = run_actions(sock, actions, index)
        record["error"] = None
        ok = True
    except Exception as exc:
        record.update(error_record(exc))
    finally:
        sock.close()
    emit(record)
    return ok


def serve(args: argparse.Namespace, actions: list[str]) -> int:
    """Accept ``--count`` connections, each in its own thread."""
    host, port = parse_hostport(args.listen)
    lsock = socket.socket(family(host), socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(128)
    print(f"LISTEN {lsock.getsockname()[1]}", flush=True)
    deadline = time.monotonic() + args.timeout
    threads: list[threading.Thread] = []
    for index in range(args.count):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        lsock.settimeout(remaining)
        try:
            conn, _ = lsock.accept()
        except TimeoutError:
            emit({"index": index, "error": "accept timeout"})
            break
        thread = threading.Thread(
            target=handle, args=(conn, actions, index, args.timeout), daemon=True
        )
        thread.start()
        threads.append(thread)
    lsock.close()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return 0


def connect_one(args: argparse.Namespace, actions: list[str], index: int) -> bool:
    """Open one client connection and run the actions on it."""
    host, port = parse_hostport(args.connect)
    sock = socket.socket(family(host), socket.SOCK_STREAM)
    sock.settimeout(args.timeout)
    try:
        sock.connect((host, port))
    except Exception as exc:
        sock.close()
        emit({"index": index, **error_record(exc)})
        return False
    return handle(sock, actions, index, args.timeout)


def client(args: argparse.Namespace, actions: list[str]) -> int:
    """Run ``--parallel`` client connections at once."""
    if args.parallel == 1:
        return 0 if connect_one(args, actions, 0) else 2
    results: list[bool] = [False] * args.parallel
    barrier = threading.Barrier(args.parallel, timeout=args.timeout)

    def worker(index: int) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        results[index] = connect_one(args, actions, index)

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True)
        for i in range(args.parallel)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + args.timeout * 2
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return 0 if all(results) else 2


def main() -> int:
    """Parse the command line and run as server or client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--listen", metavar="HOST:PORT")
    mode.add_argument("--connect", metavar="HOST:PORT")
    parser.add_argument("--actions", required=True)
    parser.add_argument("--count", type=int, default=1, help="server: connections")
    parser.add_argument("--parallel", type=int, default=1, help="client: connections")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    actions = [a for a in args.actions.split(",") if a]
    if args.listen:
        return serve(args, actions)
    return client(args, actions)


if __name__ == "__main__":
    sys.exit(main())
