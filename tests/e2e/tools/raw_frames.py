# SPDX-License-Identifier: GPL-2.0-or-later
"""Hand-made Ethernet frames onto a TAP device from a raw packet socket.

Runs in the container's network namespace, where ``tap0`` is the daemon's
TAP: every frame sent here from an ``AF_PACKET`` socket is read by the daemon
exactly as the guest's kernel would have sent it, so a test can feed it bytes
no well-behaved kernel would ever produce.

``send --file PATH``
    send the frames of PATH (one frame in hex per line; empty lines and lines
    starting with ``#`` are skipped), in order.  With ``--capture SECONDS``,
    frames arriving on the interface from the daemon are collected for that
    long after the last send (at most ``--max-capture`` of them) and printed
    in hex, so a test can check the daemon's answers.
``flood --kind syn|udp|icmp --count N``
    send N generated frames from ``--src`` to ``--dst`` (the gateway's MAC by
    default): TCP SYNs from seeded random source ports to ``--dport``, UDP
    datagrams from N consecutive source ports from ``--first-port`` to
    ``--dport``, or ICMP echo requests with N consecutive identifiers.
``session --src IP --dst IP --dport P --script PATH``
    a TCP connection played by hand from an address the container does not
    own (so its kernel stays out of it): the three-way handshake, then the
    segments of the JSON script PATH, then a FIN, while acknowledging what
    the daemon sends.  A script step is ``{"flags": "PAU", "data": "text",
    "seq": OFFSET, "urgent": N, "advance": BOOL}`` (``seq`` is relative to the
    next sequence number; ``advance`` moves it past the data, default true
    without ``seq``) or ``{"sleep": SECONDS}``.  The tool reports how the
    handshake went, every segment the daemon sent (flags, seq and ack
    relative to the initial sequence numbers, length) and whether both FINs
    were acknowledged.
``answer --ip IP --port P --isn N --data TEXT``
    the other way round: play a guest address the container does not own
    for a port forward's connection.  ARP requests for IP are answered with
    the interface's MAC; a SYN to IP:P gets a SYN-ACK with initial sequence
    number N (so a test picks the guest's ISN); then TEXT and a FIN are sent
    and the daemon's ACKs collected.  Reports every window the daemon
    advertised and whether TEXT and the FIN were acknowledged.

The kernel refuses some frames (shorter than the Ethernet header, longer than
the MTU): each refusal is counted by errno name, never fatal.  A TAP whose
reader falls behind drops frames silently (the interface's transmit ``drop``
counter in ``/proc/net/dev``): frames are sent in bursts, and after a burst
that lost frames the tool pauses and shrinks the burst, so ``flood`` keeps
generating frames until ``--count`` of them reached the daemon, and ``send``
resends a burst until none of it was lost.  The tool prints one JSON line:
frames delivered, frames lost and resent, refusals, seconds taken and, with
``--capture``, the captured frames.
"""

from __future__ import annotations

import argparse
import errno
import json
import random
import select
import socket
import struct
import sys
import time
from typing import Any

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
GATEWAY_MAC = bytes.fromhex("52550a000202")
_PAUSE = 0.0005
_MIN_BURST = 16
_MAX_BURST = 512


def checksum(data: bytes, initial: int = 0) -> int:
    """The Internet checksum of ``data`` (RFC 1071)."""
    if len(data) & 1:
        data += b"\x00"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_header(
    src: bytes, dst: bytes, proto: int, payload_len: int, ident: int
) -> bytes:
    """A 20-byte IPv4 header (DF set) with its checksum."""
    head = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + payload_len,
        ident,
        0x4000,
        64,
        proto,
        0,
        src,
        dst,
    )
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:]


def l4_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    pseudo = struct.pack("!4s4sBBH", src, dst, 0, proto, len(segment))
    return checksum(pseudo + segment)


def syn_frame(
    eth: bytes, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ident: int
) -> bytes:
    """A TCP SYN with an MSS option."""
    seg = struct.pack(
        "!HHIIBBHHHBBH", sport, dport, seq, 0, 6 << 4, 0x02, 64240, 0, 0, 2, 4, 1460
    )
    seg = seg[:16] + struct.pack("!H", l4_checksum(src, dst, 6, seg)) + seg[18:]
    return eth + ipv4_header(src, dst, 6, len(seg), ident) + seg


def udp_frame(
    eth: bytes, src: bytes, dst: bytes, sport: int, dport: int, ident: int
) -> bytes:
    """A UDP datagram carrying its source port as text."""
    payload = f"flood {sport}".encode()
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    csum = l4_checksum(src, dst, 17, seg) or 0xFFFF
    seg = seg[:6] + struct.pack("!H", csum) + seg[8:]
    return eth + ipv4_header(src, dst, 17, len(seg), ident) + seg


def echo_frame(eth: bytes, src: bytes, dst: bytes, ident: int) -> bytes:
    """An ICMP echo request with identifier ``ident``."""
    msg = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"flood payload"
    msg = msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]
    return eth + ipv4_header(src, dst, 1, len(msg), ident) + msg


def open_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, ETH_P_ALL))
    return sock


def interface_mac(sock: socket.socket) -> bytes:
    return bytes(sock.getsockname()[4][:6])


def tx_dropped(ifname: str) -> int:
    """The interface's transmit drop counter (``/proc/net/dev``, this netns)."""
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, counters = line.partition(":")
            if name.strip() == ifname:
                return int(counters.split()[11])
    raise LookupError(f"no interface {ifname}")


class Sender:
    """Sends bursts of frames; learns from the drop counter what was lost."""

    def __init__(self, sock: socket.socket, ifname: str, deadline: float) -> None:
        self.sock = sock
        self.ifname = ifname
        self.deadline = deadline
        self.delivered = 0
        self.lost = 0
        self.refused: dict[str, int] = {}
        self.burst = _MIN_BURST

    def _send_one(self, frame: bytes) -> bool:
        while True:
            try:
                self.sock.send(frame)
            except OSError as exc:
                if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                    self._check_deadline()
                    time.sleep(_PAUSE)
                    continue
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                self.refused[name] = self.refused.get(name, 0) + 1
                return False
            return True

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError("the daemon did not keep up before the deadline")

    def send_burst(self, frames: list[bytes]) -> int:
        """Send ``frames``; how many of the accepted ones the TAP dropped."""
        before = tx_dropped(self.ifname)
        accepted = sum(self._send_one(frame) for frame in frames)
        lost = min(accepted, tx_dropped(self.ifname) - before)
        self.delivered += accepted - lost
        self.lost += lost
        if lost:
            self._check_deadline()
            self.burst = max(_MIN_BURST, self.burst // 2)
            time.sleep(_PAUSE * 10)
        else:
            self.burst = min(_MAX_BURST, self.burst * 2)
        return lost

    def record(self, start: float) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "lost": self.lost,
            "refused": self.refused,
            "seconds": round(time.monotonic() - start, 3),
        }


def read_frames(path: str) -> list[bytes]:
    frames = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                frames.append(bytes.fromhex(line))
    return frames


def capture(sock: socket.socket, seconds: float, limit: int) -> list[str]:
    """Frames from the daemon (not our own outgoing ones) for ``seconds``."""
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while len(out) < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([sock], [], [], remaining)
        if not ready:
            break
        data, addr = sock.recvfrom(65536)
        if addr[2] != PACKET_OUTGOING:
            out.append(data.hex())
    return out


def cmd_send(args: argparse.Namespace) -> int:
    frames = read_frames(args.file)
    start = time.monotonic()
    with open_socket(args.ifname) as sock:
        listener = open_socket(args.ifname) if args.capture else None
        try:
            sender = Sender(sock, args.ifname, start + args.timeout)
            i = 0
            while i < len(frames):
                burst = frames[i : i + sender.burst]
                if not sender.send_burst(burst):
                    i += len(burst)
            record = sender.record(start)
            if listener is not None:
                record["captured"] = capture(listener, args.capture, args.max_capture)
        finally:
            if listener is not None:
                listener.close()
    print(json.dumps(record), flush=True)
    return 0


def cmd_flood(args: argparse.Namespace) -> int:
    src = socket.inet_aton(args.src)
    dst = socket.inet_aton(args.dst)
    rng = random.Random(args.seed)
    start = time.monotonic()
    with open_socket(args.ifname) as sock:
        dst_mac = bytes.fromhex(args.dst_mac.replace(":", ""))
        eth = dst_mac + interface_mac(sock) + b"\x08\x00"
        sender = Sender(sock, args.ifname, start + args.timeout)
        made = 0
        while sender.delivered < args.count:
            burst = []
            for _ in range(min(sender.burst, args.count - sender.delivered)):
                ident = made & 0xFFFF
                port = args.first_port + made
                if args.kind == "syn":
                    sport = rng.randrange(1024, 65536)
                    seq = rng.getrandbits(32)
                    frame = syn_frame(eth, src, dst, sport, args.dport, seq, ident)
                elif args.kind == "udp":
                    frame = udp_frame(eth, src, dst, port & 0xFFFF, args.dport, ident)
                else:
                    frame = echo_frame(eth, src, dst, port & 0xFFFF)
                burst.append(frame)
                made += 1
            sender.send_burst(burst)
        record = sender.record(start)
        record["generated"] = made
    print(json.dumps(record), flush=True)
    return 0


TCP_FLAGS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32}


def tcp_frame(
    eth: bytes,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    urgent: int = 0,
    options: bytes = b"",
) -> bytes:
    offset = (20 + len(options)) // 4
    seg = (
        struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            offset << 4,
            flags,
            65535,
            0,
            urgent,
        )
        + options
        + payload
    )
    seg = seg[:16] + struct.pack("!H", l4_checksum(src, dst, 6, seg)) + seg[18:]
    return eth + ipv4_header(src, dst, 6, len(seg), 1) + seg


def _seq_ge(a: int, b: int) -> bool:
    return (a - b) & 0xFFFFFFFF < 0x80000000


class Session:
    """One hand-played TCP connection through the daemon."""

    def __init__(self, sock: socket.socket, args: argparse.Namespace) -> None:
        self.sock = sock
        self.src = socket.inet_aton(args.src)
        self.dst = socket.inet_aton(args.dst)
        self.sport = args.sport
        self.dport = args.dport
        self.eth = GATEWAY_MAC + interface_mac(sock) + b"\x08\x00"
        self.isn = 0x10000000
        self.snd_nxt = self.isn
        self.irs: int | None = None
        self.rcv_nxt = 0
        self.segments: list[dict[str, Any]] = []
        self.peer_fin = False
        self.fin_seq: int | None = None
        self.fin_acked = False
        self.received = b""

    def send(
        self,
        flags: int,
        payload: bytes = b"",
        seq: int | None = None,
        urgent: int = 0,
        options: bytes = b"",
    ) -> None:
        frame = tcp_frame(
            self.eth,
            self.src,
            self.dst,
            self.sport,
            self.dport,
            self.snd_nxt if seq is None else seq,
            self.rcv_nxt if flags & TCP_FLAGS["A"] else 0,
            flags,
            payload,
            urgent,
            options,
        )
        self.sock.send(frame)

    def poll(self, seconds: float) -> None:
        """Take the daemon's segments for ``seconds``, acknowledging data."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return
            data, sockaddr = self.sock.recvfrom(65536)
            if sockaddr[2] == PACKET_OUTGOING or len(data) < 54:
                continue
            if data[12:14] != b"\x08\x00" or data[23] != 6:
                continue
            ihl = (data[14] & 0x0F) * 4
            if data[26:30] != self.dst or data[30:34] != self.src:
                continue
            tcp = data[14 + ihl :]
            sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", tcp)
            if (sport, dport) != (self.dport, self.sport):
                continue
            total = struct.unpack_from("!H", data, 16)[0]
            payload = tcp[(off >> 4) * 4 : total - ihl]
            self._take(seq, ack, flags, payload)

    def _take(self, seq: int, ack: int, flags: int, payload: bytes) -> None:
        if flags & TCP_FLAGS["S"] and self.irs is None:
            self.irs = seq
            self.rcv_nxt = (seq + 1) & 0xFFFFFFFF
        base = self.irs or 0
        self.segments.append(
            {
                "flags": "".join(k for k, v in TCP_FLAGS.items() if flags & v),
                "seq": (seq - base) & 0xFFFFFFFF,
                "ack": (ack - self.isn) & 0xFFFFFFFF,
                "len": len(payload),
            }
        )
        fin = self.fin_seq
        if fin is not None and flags & TCP_FLAGS["A"] and _seq_ge(ack, fin + 1):
            self.fin_acked = True
        if self.irs is None or flags & TCP_FLAGS["S"]:
            return
        if payload and seq == self.rcv_nxt:
            self.received += payload
            self.rcv_nxt = (self.rcv_nxt + len(payload)) & 0xFFFFFFFF
        if flags & TCP_FLAGS["F"] and (seq + len(payload)) & 0xFFFFFFFF == self.rcv_nxt:
            self.rcv_nxt = (self.rcv_nxt + 1) & 0xFFFFFFFF
            self.peer_fin = True
        if payload or flags & TCP_FLAGS["F"]:
            self.send(TCP_FLAGS["A"])

    def step(self, step: dict[str, Any]) -> None:
        if "sleep" in step:
            self.poll(float(step["sleep"]))
            return
        flags = sum(TCP_FLAGS[c] for c in step.get("flags", "A"))
        payload = str(step.get("data", "")).encode()
        seq = None
        if "seq" in step:
            seq = (self.snd_nxt + int(step["seq"])) & 0xFFFFFFFF
        self.send(flags, payload, seq, int(step.get("urgent", 0)))
        if step.get("advance", "seq" not in step):
            used = len(payload) + (1 if flags & TCP_FLAGS["F"] else 0)
            self.snd_nxt = (self.snd_nxt + used) & 0xFFFFFFFF
        self.poll(float(step.get("wait", 0.05)))


def cmd_session(args: argparse.Namespace) -> int:
    with open(args.script) as f:
        script = json.load(f)
    record: dict[str, Any] = {}
    with open_socket(args.ifname) as sock:
        session = Session(sock, args)
        session.send(TCP_FLAGS["S"], options=struct.pack("!BBH", 2, 4, 1460))
        session.snd_nxt += 1
        deadline = time.monotonic() + args.timeout
        while session.irs is None and time.monotonic() < deadline:
            session.poll(0.2)
        record["handshake"] = session.irs is not None
        if session.irs is not None:
            session.send(TCP_FLAGS["A"])
            for step in script:
                session.step(step)
            session.fin_seq = session.snd_nxt
            session.send(TCP_FLAGS["F"] | TCP_FLAGS["A"])
            session.snd_nxt += 1
            while time.monotonic() < deadline and not (
                session.fin_acked and session.peer_fin
            ):
                session.poll(0.1)
        record.update(
            fin_acked=session.fin_acked,
            peer_fin=session.peer_fin,
            received=session.received.decode(errors="replace"),
            segments=session.segments,
        )
    print(json.dumps(record), flush=True)
    return 0


def cmd_answer(args: argparse.Namespace) -> int:
    ip = socket.inet_aton(args.ip)
    record: dict[str, Any] = {"arp_replies": 0, "syn": False, "windows": []}
    deadline = time.monotonic() + args.timeout
    with open_socket(args.ifname) as sock:
        mac = interface_mac(sock)
        isn = args.isn & 0xFFFFFFFF
        data = args.data.encode()
        peer: tuple[bytes, bytes, int, int] | None = None
        sent_at: float | None = None
        fin_seq = (isn + 1 + len(data)) & 0xFFFFFFFF
        print("READY", flush=True)
        while time.monotonic() < deadline and not record.get("fin_acked"):
            ready, _, _ = select.select([sock], [], [], 0.1)
            if not ready:
                if sent_at is not None and time.monotonic() - sent_at > 0.5:
                    assert peer is not None
                    send_data(sock, mac, ip, args.port, peer, isn, data)
                    sent_at = time.monotonic()
                continue
            frame, addr = sock.recvfrom(65536)
            if addr[2] == PACKET_OUTGOING or len(frame) < 42:
                continue
            if frame[12:14] == b"\x08\x06" and frame[38:42] == ip and frame[21] == 1:
                reply = (
                    frame[6:12] + mac + b"\x08\x06"
                    + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
                    + mac + ip + frame[22:28] + frame[28:32]
                )  # fmt: skip
                sock.send(reply)
                record["arp_replies"] += 1
                continue
            if frame[12:14] != b"\x08\x00" or frame[23] != 6 or frame[30:34] != ip:
                continue
            ihl = (frame[14] & 0x0F) * 4
            tcp = frame[14 + ihl :]
            sport, dport, seq, ack, _off, flags, window = struct.unpack_from(
                "!HHIIBBH", tcp
            )
            if dport != args.port:
                continue
            if flags & TCP_FLAGS["S"] and not flags & TCP_FLAGS["A"]:
                peer = (frame[6:12], frame[26:30], sport, (seq + 1) & 0xFFFFFFFF)
                record["syn"] = True
                opts = struct.pack("!BBHBBBB", 2, 4, 1460, 1, 3, 3, 7)
                sock.send(
                    tcp_frame(
                        peer[0] + mac + b"\x08\x00", ip, peer[1], args.port, sport,
                        isn, peer[3], TCP_FLAGS["S"] | TCP_FLAGS["A"], options=opts,
                    )
                )  # fmt: skip
                continue
            if peer is None or not flags & TCP_FLAGS["A"]:
                continue
            record["windows"].append(window)
            if sent_at is None:
                send_data(sock, mac, ip, args.port, peer, isn, data)
                sent_at = time.monotonic()
            if _seq_ge(ack, isn + 1 + len(data)):
                record["data_acked"] = True
            if _seq_ge(ack, fin_seq + 1):
                record["fin_acked"] = True
    print(json.dumps(record), flush=True)
    return 0


def send_data(
    sock: socket.socket,
    mac: bytes,
    ip: bytes,
    port: int,
    peer: tuple[bytes, bytes, int, int],
    isn: int,
    data: bytes,
) -> None:
    """The answering guest's data and FIN, (re)sent in one segment."""
    eth = peer[0] + mac + b"\x08\x00"
    flags = TCP_FLAGS["A"] | TCP_FLAGS["P"] | TCP_FLAGS["F"]
    frame = tcp_frame(eth, ip, peer[1], port, peer[2], isn + 1, peer[3], flags, data)
    sock.send(frame)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ifname", default="tap0")
    common.add_argument("--timeout", type=float, default=60.0)
    sub = parser.add_subparsers(dest="cmd", required=True)
    send = sub.add_parser("send", parents=[common])
    send.add_argument("--file", required=True)
    send.add_argument("--capture", type=float, default=0.0)
    send.add_argument("--max-capture", type=int, default=1000)
    flood = sub.add_parser("flood", parents=[common])
    flood.add_argument("--kind", choices=("syn", "udp", "icmp"), required=True)
    flood.add_argument("--count", type=int, required=True)
    flood.add_argument("--src", required=True)
    flood.add_argument("--dst", required=True)
    flood.add_argument("--dport", type=int, default=0)
    flood.add_argument("--first-port", type=int, default=20000)
    flood.add_argument("--dst-mac", default=GATEWAY_MAC.hex(":"))
    flood.add_argument("--seed", type=int, default=1)
    session = sub.add_parser("session", parents=[common])
    session.add_argument("--src", required=True)
    session.add_argument("--dst", required=True)
    session.add_argument("--sport", type=int, default=45678)
    session.add_argument("--dport", type=int, required=True)
    session.add_argument("--script", required=True)
    answer = sub.add_parser("answer", parents=[common])
    answer.add_argument("--ip", required=True)
    answer.add_argument("--port", type=int, required=True)
    answer.add_argument("--isn", type=int, required=True)
    answer.add_argument("--data", default="hello from the guest")
    args = parser.parse_args()
    if args.cmd == "answer":
        return cmd_answer(args)
    if args.cmd == "send":
        return cmd_send(args)
    if args.cmd == "session":
        return cmd_session(args)
    return cmd_flood(args)


if __name__ == "__main__":
    sys.exit(main())
