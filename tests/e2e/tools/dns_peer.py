# SPDX-License-Identifier: GPL-2.0-or-later
"""A tiny DNS responder and query client for the end-to-end tests.

``--listen HOST:PORT`` serves UDP and TCP on the same port: every A query is
answered with ``UDP_ANSWER`` over UDP and ``TCP_ANSWER`` over TCP, so a test
can tell which transport reached it.  Each query handled is printed as a JSON
line (transport, name, peer).  ``LISTEN <port>`` is printed once both sockets
are bound.

``--query NAME --server HOST:PORT [--tcp]`` sends one A query and prints the
answer's addresses as JSON; exit status 0 only for a well-formed answer with
the query's id and question.
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import socket
import struct
import sys
import time
from typing import Any

UDP_ANSWER = "192.0.2.53"
TCP_ANSWER = "192.0.2.54"
TYPE_A = 1
CLASS_IN = 1


def family(host: str) -> socket.AddressFamily:
    """The socket family for a literal address."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT``."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def encode_name(name: str) -> bytes:
    """Encode a dotted name as DNS labels."""
    out = b""
    for label in name.strip(".").split("."):
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def decode_name(msg: bytes, off: int) -> tuple[str, int]:
    """Decode an uncompressed name at ``off``; return it and the next offset."""
    labels: list[str] = []
    for _ in range(128):
        length = msg[off]
        off += 1
        if length == 0:
            return ".".join(labels), off
        if length & 0xC0:
            raise ValueError("compressed name in question")
        labels.append(msg[off : off + length].decode("ascii"))
        off += length
    raise ValueError("name too long")


def build_query(qid: int, name: str) -> bytes:
    """An A/IN query with recursion desired."""
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", TYPE_A, CLASS_IN)


def build_answer(query: bytes, address: str) -> tuple[bytes, str]:
    """Answer ``query`` with one A record; return the reply and the name."""
    qid, _flags, qdcount = struct.unpack_from("!HHH", query)
    if qdcount != 1:
        raise ValueError("expected one question")
    name, off = decode_name(query, 12)
    question = query[12 : off + 4]
    header = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0)
    record = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 60, 4)
    return header + question + record + socket.inet_aton(address), name


def log(transport: str, name: str, peer: tuple[str, int]) -> None:
    """Print one handled query."""
    line = {"transport": transport, "name": name, "peer": f"{peer[0]}:{peer[1]}"}
    print(json.dumps(line, sort_keys=True), flush=True)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes or raise on EOF."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("EOF in the middle of a DNS message")
        data += chunk
    return data


def serve(args: argparse.Namespace) -> int:
    """Answer queries on UDP and TCP until the deadline."""
    host, port = parse_hostport(args.listen)
    udp = socket.socket(family(host), socket.SOCK_DGRAM)
    udp.bind((host, port))
    port = udp.getsockname()[1]
    tcp = socket.socket(family(host), socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((host, port))
    tcp.listen(16)
    print(f"LISTEN {port}", flush=True)
    sel = selectors.DefaultSelector()
    sel.register(udp, selectors.EVENT_READ)
    sel.register(tcp, selectors.EVENT_READ)
    deadline = time.monotonic() + args.timeout
    while (remaining := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(remaining):
            if key.fileobj is udp:
                query, peer = udp.recvfrom(65535)
                try:
                    reply, name = build_answer(query, UDP_ANSWER)
                except (ValueError, IndexError, struct.error):
                    continue
                udp.sendto(reply, peer)
                log("udp", name, peer)
            else:
                conn, peer = tcp.accept()
                with conn:
                    conn.settimeout(10)
                    try:
                        (size,) = struct.unpack("!H", recv_exact(conn, 2))
                        reply, name = build_answer(recv_exact(conn, size), TCP_ANSWER)
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                    except (OSError, ValueError, IndexError, struct.error):
                        continue
                log("tcp", name, peer)
    return 0


def parse_answer(reply: bytes, qid: int, name: str) -> list[str]:
    """Check the reply against the query; return its A addresses."""
    rid, flags, qdcount, ancount = struct.unpack_from("!HHHH", reply)
    if rid != qid or not flags & 0x8000 or qdcount != 1:
        raise ValueError(f"bad header id={rid} flags={flags:#x} qd={qdcount}")
    qname, off = decode_name(reply, 12)
    if qname != name.strip("."):
        raise ValueError(f"question mismatch: {qname!r}")
    off += 4
    addresses: list[str] = []
    for _ in range(ancount):
        if reply[off] & 0xC0 == 0xC0:
            off += 2
        else:
            _, off = decode_name(reply, off)
        rtype, _rclass, _ttl, rdlen = struct.unpack_from("!HHIH", reply, off)
        off += 10
        if rtype == TYPE_A and rdlen == 4:
            addresses.append(socket.inet_ntoa(reply[off : off + 4]))
        off += rdlen
    return addresses


def query(args: argparse.Namespace) -> int:
    """Send one query over UDP or TCP and print the answer."""
    server = parse_hostport(args.server)
    qid = random.randrange(1, 0xFFFF)
    msg = build_query(qid, args.query)
    result: dict[str, Any] = {"transport": "tcp" if args.tcp else "udp"}
    try:
        if args.tcp:
            with socket.create_connection(server, timeout=args.timeout) as sock:
                sock.sendall(struct.pack("!H", len(msg)) + msg)
                (size,) = struct.unpack("!H", recv_exact(sock, 2))
                reply = recv_exact(sock, size)
        else:
            with socket.socket(family(server[0]), socket.SOCK_DGRAM) as sock:
                sock.connect(server)
                reply = b""
                for _ in range(args.tries):
                    sock.send(msg)
                    sock.settimeout(args.timeout / args.tries)
                    try:
                        reply = sock.recv(65535)
                        break
                    except TimeoutError:
                        continue
                if not reply:
                    raise TimeoutError("no UDP answer")
        result["addresses"] = parse_answer(reply, qid, args.query)
        result["error"] = None
    except (OSError, ValueError, IndexError, struct.error) as exc:
        result["error"] = type(exc).__name__
        result["message"] = str(exc)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["error"] is None else 2


def main() -> int:
    """Parse the command line and serve or query."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--listen", metavar="HOST:PORT")
    mode.add_argument("--query", metavar="NAME")
    parser.add_argument("--server", metavar="HOST:PORT", default="10.0.2.3:53")
    parser.add_argument("--tcp", action="store_true")
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    return serve(args) if args.listen else query(args)


if __name__ == "__main__":
    sys.exit(main())
