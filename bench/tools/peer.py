# SPDX-License-Identifier: GPL-2.0-or-later
"""Small request/response peers for the benchmark: server or client.

Modes (``--mode``):

``tcp-rr``
    one TCP connection (``TCP_NODELAY``); the client sends ``--size`` bytes,
    the server echoes them, the client waits for all of them: one round trip;
``tcp-crr``
    per transaction a new TCP connection: connect, send 1 byte, the server
    answers 1 byte and closes, the client reads it and the EOF, closes;
``udp-rr``
    the client sends a ``--size``-byte datagram (with a sequence number), the
    server echoes it; a reply that does not come within ``--loss-timeout``
    counts as lost.

A server prints ``LISTEN <port>`` and serves until it is killed.  A client
runs for ``--duration`` seconds and prints one JSON line: ``count``, ``rate``
(per second), ``p50_us``/``p99_us`` of the transaction times, ``errors`` and
``lost``, or ``error`` when it could not run at all.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import selectors
import socket
import struct
import sys
import time
from typing import Any


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT``."""
    host, _, port = text.rpartition(":")
    return host, int(port)


# --------------------------------------------------------------------------
# Servers


def serve_tcp(listener: socket.socket, mode: str) -> None:
    """Echo (``tcp-rr``) or answer-one-byte-and-close (``tcp-crr``) forever."""
    sel = selectors.DefaultSelector()
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                while True:
                    try:
                        conn, _addr = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, mode)
                continue
            sock = key.fileobj
            if not isinstance(sock, socket.socket):
                continue
            conn = sock
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
                continue
            try:
                if mode == "tcp-crr":
                    conn.send(data[:1])
                    sel.unregister(conn)
                    conn.close()
                else:
                    conn.setblocking(True)
                    conn.sendall(data)
                    conn.setblocking(False)
            except OSError:
                with contextlib.suppress(KeyError, ValueError):
                    sel.unregister(conn)
                conn.close()


def serve_udp(sock: socket.socket) -> None:
    """Echo every datagram to its sender forever."""
    while True:
        data, addr = sock.recvfrom(65536)
        with contextlib.suppress(OSError):
            sock.sendto(data, addr)


def run_server(args: argparse.Namespace) -> int:
    """Bind, print ``LISTEN <port>``, serve."""
    host, port = parse_hostport(args.listen)
    if args.mode == "udp-rr":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((host, port))
        print(f"LISTEN {sock.getsockname()[1]}", flush=True)
        serve_udp(sock)
        return 0
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1024)
    print(f"LISTEN {listener.getsockname()[1]}", flush=True)
    serve_tcp(listener, args.mode)
    return 0


# --------------------------------------------------------------------------
# Clients


def percentile(sorted_ns: list[int], q: float) -> float:
    """The ``q`` quantile of sorted nanosecond samples, in microseconds."""
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, round(q * (len(sorted_ns) - 1)))
    return sorted_ns[index] / 1000


def recv_exact(sock: socket.socket, size: int) -> None:
    """Read exactly ``size`` bytes or raise on EOF."""
    got = 0
    while got < size:
        chunk = sock.recv(size - got)
        if not chunk:
            raise ConnectionError("EOF in the middle of a reply")
        got += len(chunk)


def client_tcp_rr(addr: tuple[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """Round trips over one connection."""
    samples: list[int] = []
    sock = socket.create_connection(addr, timeout=args.io_timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # A kernel receive timeout instead of Python's (which polls before
    # every call): a stalled reply still ends the run.
    sock.settimeout(None)
    sock.setsockopt(
        socket.SOL_SOCKET,
        socket.SO_RCVTIMEO,
        struct.pack("ll", int(args.io_timeout), 0),
    )
    payload = b"x" * args.size
    clock = time.perf_counter_ns
    end = clock() + int(args.duration * 1e9)
    out: dict[str, Any] = {"errors": 0, "lost": 0}
    with sock:
        t = clock()
        try:
            while t < end:
                sock.sendall(payload)
                recv_exact(sock, args.size)
                now = clock()
                samples.append(now - t)
                t = now
        except OSError as exc:
            out["errors"] = 1
            out["first_error"] = f"{type(exc).__name__}: {exc}"
    out["samples"] = samples
    return out


def client_tcp_crr(addr: tuple[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """Connect, one byte each way, close; as many times as fit."""
    samples: list[int] = []
    errors = 0
    first_error = ""
    clock = time.perf_counter_ns
    end = clock() + int(args.duration * 1e9)
    t = clock()
    while t < end:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with sock:
                sock.settimeout(args.io_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(addr)
                sock.sendall(b"x")
                if sock.recv(1) != b"x":
                    raise ConnectionError("no answer byte")
                sock.recv(1)
            now = clock()
            samples.append(now - t)
        except OSError as exc:
            errors += 1
            first_error = first_error or (
                errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__
            )
            if errors > 50 and errors > len(samples):
                break
            now = clock()
        t = now
    out: dict[str, Any] = {"samples": samples, "errors": errors, "lost": 0}
    if first_error:
        out["first_error"] = first_error
    return out


def client_udp_rr(addr: tuple[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """Datagram round trips; a reply missing after the timeout is lost."""
    samples: list[int] = []
    lost = 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(addr)
    # A kernel receive timeout: Python's own would poll before every call.
    usec = int(args.loss_timeout * 1e6)
    sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", *divmod(usec, 10**6))
    )
    pad = b"x" * max(0, args.size - 8)
    clock = time.perf_counter_ns
    end = clock() + int(args.duration * 1e9)
    seq = 0
    with sock:
        t = clock()
        while t < end:
            seq += 1
            sock.send(struct.pack("!Q", seq) + pad)
            try:
                while True:
                    reply = sock.recv(65536)
                    if len(reply) >= 8 and struct.unpack_from("!Q", reply)[0] == seq:
                        break
            except (TimeoutError, BlockingIOError):
                lost += 1
                if lost > 20 and lost > len(samples):
                    break
                t = clock()
                continue
            except ConnectionRefusedError:
                lost += 1
                if lost > 20 and lost > len(samples):
                    break
                time.sleep(args.loss_timeout)
                t = clock()
                continue
            now = clock()
            samples.append(now - t)
            t = now
    return {"samples": samples, "errors": 0, "lost": lost}


def run_client(args: argparse.Namespace) -> int:
    """Run the client mode and print the summary line."""
    addr = parse_hostport(args.connect)
    clients = {
        "tcp-rr": client_tcp_rr,
        "tcp-crr": client_tcp_crr,
        "udp-rr": client_udp_rr,
    }
    started = time.perf_counter()
    try:
        raw = clients[args.mode](addr, args)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__
        print(json.dumps({"error": f"{name}: {exc}"}), flush=True)
        return 1
    elapsed = time.perf_counter() - started
    samples = sorted(raw.pop("samples"))
    out = {
        "count": len(samples),
        "seconds": elapsed,
        "rate": len(samples) / elapsed if elapsed > 0 else 0.0,
        "p50_us": percentile(samples, 0.5),
        "p99_us": percentile(samples, 0.99),
        **raw,
    }
    if not samples:
        out["error"] = f"no transaction completed ({raw})"
    print(json.dumps(out), flush=True)
    return 0 if samples else 1


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--mode", choices=("tcp-rr", "tcp-crr", "udp-rr"), required=True
    )
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--listen", metavar="HOST:PORT")
    role.add_argument("--connect", metavar="HOST:PORT")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--io-timeout", type=float, default=2.0)
    parser.add_argument("--loss-timeout", type=float, default=0.2)
    args = parser.parse_args()
    if args.listen:
        return run_server(args)
    return run_client(args)


if __name__ == "__main__":
    sys.exit(main())
