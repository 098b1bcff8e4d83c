# SPDX-License-Identifier: GPL-2.0-or-later
"""Many connections at once, endless senders and idle readers, for load tests.

``echo-server --listen HOST:PORT [--udp]``
    echoes every TCP connection (and, with ``--udp``, every datagram on the
    same port) with one ``selectors`` loop, however many connections there
    are; prints ``LISTEN <port>``, then a JSON summary on exit (connections
    served, bytes echoed) at ``--timeout``.
``clients --connect HOST:PORT --count N --bytes B``
    opens N connections at once, sends each B seeded bytes (different per
    connection), half-closes, reads the echo to EOF and checks it byte for
    byte; prints one JSON summary: connections ok, failed (with the first
    errors), seconds.  ``--hold S`` keeps every connection open S seconds
    after it was set up, so a test can look at the daemon meanwhile; the tool
    prints ``HOLDING`` then.
``blast-server --listen HOST:PORT``
    sends to its first client as fast as it can and prints
    ``{"sent": BYTES}`` every ``--every`` seconds: when the reader stops
    reading, the number stops growing (the sender is blocked).
``idle-client --connect HOST:PORT --seconds S``
    connects with a small receive buffer and never reads, for S seconds.
``soak --tcp HOST:PORT [--udp HOST:PORT] [--udp-churn HOST:PORT] --seconds S``
    mixed traffic for S seconds: short TCP connections of assorted sizes with
    a data check, in ``--workers`` threads; UDP echoes from one socket per
    ``--udp`` target, and from a socket replaced every ``--churn`` datagrams
    (a new flow each time) per ``--udp-churn`` target; prints a JSON summary
    (connections and datagrams checked, errors).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import random
import selectors
import socket
import sys
import threading
import time
from typing import Any

CHUNK = 65536


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def payload(index: int, size: int) -> bytes:
    return random.Random(index).randbytes(size)


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, sort_keys=True), flush=True)


def error_name(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


# ------------------------------------------------------------- echo server


def echo_server(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.listen)
    lsock = socket.socket(family(host), socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(4096)
    lsock.setblocking(False)
    port = lsock.getsockname()[1]
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, "listen")
    if args.udp:
        usock = socket.socket(family(host), socket.SOCK_DGRAM)
        usock.bind((host, port))
        usock.setblocking(False)
        sel.register(usock, selectors.EVENT_READ, "udp")
    print(f"LISTEN {port}", flush=True)
    pending: dict[socket.socket, bytearray] = {}
    eof: set[socket.socket] = set()
    served = echoed = datagrams = 0
    deadline = time.monotonic() + args.timeout

    def close(conn: socket.socket) -> None:
        sel.unregister(conn)
        pending.pop(conn, None)
        eof.discard(conn)
        conn.close()

    def flush(conn: socket.socket) -> None:
        nonlocal echoed
        buf = pending[conn]
        try:
            n = conn.send(buf) if buf else 0
        except BlockingIOError:
            n = 0
        except OSError:
            close(conn)
            return
        del buf[:n]
        echoed += n
        if buf:
            sel.modify(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, "conn")
        elif conn in eof:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            close(conn)
        else:
            sel.modify(conn, selectors.EVENT_READ, "conn")

    while (remaining := deadline - time.monotonic()) > 0:
        for key, mask in sel.select(min(remaining, 1.0)):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "listen":
                for _ in range(256):
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    pending[conn] = bytearray()
                    sel.register(conn, selectors.EVENT_READ, "conn")
                    served += 1
            elif key.data == "udp":
                for _ in range(64):
                    try:
                        data, peer = sock.recvfrom(65536)
                    except BlockingIOError:
                        break
                    datagrams += 1
                    with contextlib.suppress(OSError):
                        sock.sendto(data, peer)
            else:
                if mask & selectors.EVENT_READ and sock not in eof:
                    try:
                        data = sock.recv(CHUNK)
                    except BlockingIOError:
                        data = None
                    except OSError:
                        close(sock)
                        continue
                    if data == b"":
                        eof.add(sock)
                    elif data:
                        pending[sock] += data
                flush(sock)
    emit({"served": served, "echoed": echoed, "datagrams": datagrams})
    return 0


# ----------------------------------------------------------------- clients


class Client:
    __slots__ = ("digest", "error", "expect", "got", "index", "sent", "sock")

    def __init__(self, index: int, sock: socket.socket, size: int) -> None:
        self.index = index
        self.sock = sock
        self.expect = payload(index, size)
        self.sent = 0
        self.got = 0
        self.digest = hashlib.sha256()
        self.error: str | None = None


def clients(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.connect)
    start = time.monotonic()
    deadline = start + args.timeout
    sel = selectors.DefaultSelector()
    live: list[Client] = []
    failed: list[str] = []
    for index in range(args.count):
        sock = socket.socket(family(host), socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            failed.append(errno.errorcode.get(err, str(err)))
            sock.close()
            continue
        client = Client(index, sock, args.bytes)
        live.append(client)
        sel.register(sock, selectors.EVENT_WRITE, client)
    if args.hold:
        # Wait until every connection is up, say so, and hold them.
        up: set[int] = set()
        while len(up) + len(failed) < args.count and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                client = key.data
                err = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    client.error = errno.errorcode.get(err, str(err))
                    failed.append(client.error)
                    sel.unregister(client.sock)
                    client.sock.close()
                else:
                    up.add(client.index)
                    sel.modify(client.sock, selectors.EVENT_READ, client)
        print(f"HOLDING {len(up)}", flush=True)
        time.sleep(args.hold)
        for client in live:
            if client.error is None:
                sel.modify(client.sock, selectors.EVENT_WRITE, client)
    ok = 0
    while sel.get_map() and time.monotonic() < deadline:
        for key, mask in sel.select(1.0):
            client = key.data
            sock = client.sock
            try:
                if mask & selectors.EVENT_WRITE:
                    if client.sent < len(client.expect):
                        n = sock.send(client.expect[client.sent : client.sent + CHUNK])
                        client.sent += n
                    if client.sent >= len(client.expect):
                        sock.shutdown(socket.SHUT_WR)
                        sel.modify(sock, selectors.EVENT_READ, client)
                    else:
                        sel.modify(
                            sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client
                        )
                    continue
                data = sock.recv(CHUNK)
                if data:
                    expect = client.expect[client.got : client.got + len(data)]
                    if data != expect:
                        raise ValueError("echo differs")
                    client.got += len(data)
                    continue
                if client.got != len(client.expect):
                    raise ValueError(f"EOF after {client.got} bytes")
                ok += 1
            except BlockingIOError:
                continue
            except (OSError, ValueError) as exc:
                client.error = error_name(exc) if isinstance(exc, OSError) else str(exc)
                failed.append(client.error)
            sel.unregister(sock)
            sock.close()
    for key in list(sel.get_map().values()):
        failed.append("timeout")
        key.fileobj.close()  # type: ignore[union-attr]
    emit(
        {
            "ok": ok,
            "failed": len(failed),
            "errors": sorted(set(failed))[:10],
            "seconds": round(time.monotonic() - start, 2),
        }
    )
    return 0 if ok == args.count else 1


# ------------------------------------------------------ blast and idle


def blast_server(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.listen)
    lsock = socket.socket(family(host), socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(1)
    print(f"LISTEN {lsock.getsockname()[1]}", flush=True)
    lsock.settimeout(args.timeout)
    conn, _ = lsock.accept()
    conn.settimeout(args.every)
    chunk = bytes(CHUNK)
    sent = 0
    deadline = time.monotonic() + args.timeout
    last = time.monotonic()
    error = None
    while time.monotonic() < deadline:
        try:
            sent += conn.send(chunk)
        except TimeoutError:
            pass
        except OSError as exc:
            error = error_name(exc)
            break
        if time.monotonic() - last >= args.every:
            last = time.monotonic()
            emit({"sent": sent})
    emit({"sent": sent, "error": error, "final": True})
    return 0


def idle_client(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.connect)
    sock = socket.socket(family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((host, port))
    print("CONNECTED", flush=True)
    time.sleep(args.seconds)
    sock.close()
    return 0


# -------------------------------------------------------------------- soak


def soak(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.seconds
    lock = threading.Lock()
    totals = {"tcp": 0, "udp": 0, "errors": 0}
    errors: list[str] = []

    def note(kind: str, error: str | None = None) -> None:
        with lock:
            if error is None:
                totals[kind] += 1
            else:
                totals["errors"] += 1
                if len(errors) < 10:
                    errors.append(f"{kind}: {error}")

    def tcp_loop(worker: int) -> None:
        host, port = parse_hostport(args.tcp)
        rng = random.Random(worker)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            size = rng.choice([1, 100, 1460, 20000, 300000])
            data = payload(worker * 1_000_003 + n, size)
            phase = "connect"
            got = bytearray()
            local = 0
            try:
                with socket.create_connection((host, port), timeout=10) as sock:
                    local = sock.getsockname()[1]
                    phase = "send"
                    sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)
                    phase = "recv"
                    while chunk := sock.recv(CHUNK):
                        got += chunk
                if got != data:
                    note("tcp", f"echo differs ({len(got)} of {size})")
                else:
                    note("tcp")
            except OSError as exc:
                note(
                    "tcp",
                    f"{error_name(exc)} in {phase}, {len(got)} of {size} "
                    f"(local port {local})",
                )

    def udp_loop(target: str, churn: int) -> None:
        """Echo datagrams off ``target``; a new source port (a new flow in
        the daemon) every ``churn`` datagrams, or never if 0."""
        host, port = parse_hostport(target)
        sock = socket.socket(family(host), socket.SOCK_DGRAM)
        sock.settimeout(1.0)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            data = payload(n, 1 + n % 1400)
            try:
                sock.sendto(data, (host, port))
                got, _ = sock.recvfrom(65536)
                if got == data:
                    note("udp")
                else:
                    note("udp", "echo differs")
            except TimeoutError:
                note("udp", "timeout")
            except OSError as exc:
                note("udp", error_name(exc))
            if churn and n % churn == 0:
                sock.close()
                sock = socket.socket(family(host), socket.SOCK_DGRAM)
                sock.settimeout(1.0)
        sock.close()

    threads = [
        threading.Thread(target=tcp_loop, args=(w,), daemon=True)
        for w in range(args.workers)
    ]
    threads += [
        threading.Thread(target=udp_loop, args=(target, 0), daemon=True)
        for target in args.udp
    ]
    threads += [
        threading.Thread(target=udp_loop, args=(target, args.churn), daemon=True)
        for target in args.udp_churn
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.seconds + 30)
    emit({**totals, "first_errors": errors})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--timeout", type=float, default=120.0)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("echo-server", parents=[common])
    p.add_argument("--listen", required=True)
    p.add_argument("--udp", action="store_true")
    p = sub.add_parser("clients", parents=[common])
    p.add_argument("--connect", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--bytes", type=int, default=10000)
    p.add_argument("--hold", type=float, default=0.0)
    p = sub.add_parser("blast-server", parents=[common])
    p.add_argument("--listen", required=True)
    p.add_argument("--every", type=float, default=0.5)
    p = sub.add_parser("idle-client", parents=[common])
    p.add_argument("--connect", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p = sub.add_parser("soak", parents=[common])
    p.add_argument("--tcp", required=True)
    p.add_argument("--udp", action="append", default=[])
    p.add_argument("--udp-churn", action="append", default=[])
    p.add_argument("--churn", type=int, default=50)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    handler = {
        "echo-server": echo_server,
        "clients": clients,
        "blast-server": blast_server,
        "idle-client": idle_client,
        "soak": soak,
    }[args.cmd]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
