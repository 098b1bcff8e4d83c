# SPDX-License-Identifier: GPL-2.0-or-later
"""The sans-IO core's cost per frame, without namespaces, sockets or loops.

``python -m bench.micro`` drives one ``Stack`` through an established TCP
connection and a UDP flow with frames built here byte by byte, and prints
microseconds per operation:

``tcp_rr``
    a 64-byte guest segment in, its data event out, 64 bytes of host answer
    queued and the frame toward the guest drained: the stack's share of one
    request/response round trip;
``tcp_ack``
    a pure ACK from the guest for data in flight;
``tcp_bulk_in``
    a 64 KiB GSO frame from the guest and its ACK;
``tcp_bulk_out``
    64 KiB of host data out as one frame and the guest's ACK for it;
``udp_rr``
    a 64-byte datagram in, its event out, a 64-byte answer drained;
``tcp_crr``
    a whole connection: SYN, accept, ACK, 1 byte each way, FIN both ways.

These are the figures the driver's per-frame work adds to; ``--profile NAME``
prints a cProfile of one operation.  The stack runs with the virtio-net
header, as the daemon does.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import struct
import time
from collections.abc import Callable

from slirpy.stack.config import StackConfig
from slirpy.stack.events import TCPConnectRequest, UDPDatagram
from slirpy.stack.stack import Stack

GUEST_MAC = bytes.fromhex("02aabbccddee")
GW_MAC = StackConfig().gateway_mac
GUEST_IP = bytes((10, 0, 2, 100))
GW_IP = bytes((10, 0, 2, 2))
VNET = bytes(10)
ACK, PSH, SYN, FIN = 0x10, 0x08, 0x02, 0x01


def _ipv4(proto: int, payload: bytes) -> bytes:
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
        GUEST_IP, GW_IP,
    )  # fmt: skip
    return VNET + GW_MAC + GUEST_MAC + b"\x08\x00" + head + payload


def _tcp(sport: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
    opts = b""
    if flags & SYN:
        opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07"  # MSS 1460, wscale 7
    off = (20 + len(opts)) // 4 << 4
    head = struct.pack("!HHIIBBHHH", sport, 80, seq, ack, off, flags, 0xFFFF, 0, 0)
    return _ipv4(6, head + opts + data)


def _udp(sport: int, data: bytes) -> bytes:
    return _ipv4(17, struct.pack("!HHHH", sport, 53000, 8 + len(data), 0) + data)


class _Guest:
    """The guest end of one connection: its sequence numbers, and ours."""

    def __init__(self, stack: Stack, sport: int, now: float) -> None:
        self.stack = stack
        self.sport = sport
        self.seq = 1000
        stack.receive_frame(_tcp(sport, self.seq, 0, SYN), now)
        (request,) = stack.pop_events()
        assert isinstance(request, TCPConnectRequest)
        self.flow = request.flow
        stack.accept(self.flow, now)
        stack.drain_frames()
        conn = stack.flows.tcp_by_id[self.flow]
        self.seq += 1
        self.ack = conn.snd_nxt
        stack.receive_frame(_tcp(sport, self.seq, self.ack, ACK), now)
        stack.pop_events()
        stack.drain_frames()

    def segment(self, flags: int, data: bytes = b"") -> bytes:
        frame = _tcp(self.sport, self.seq, self.ack, flags, data)
        self.seq = (self.seq + len(data) + (1 if flags & FIN else 0)) & 0xFFFFFFFF
        return frame


def _setup() -> tuple[Stack, list[float]]:
    stack = Stack(StackConfig(vnet_hdr=True), random.Random(1))
    return stack, [0.0]


def op_tcp_rr() -> Callable[[], None]:
    stack, clock = _setup()
    guest = _Guest(stack, 40000, 0.0)
    answer = bytes(64)

    def run() -> None:
        clock[0] += 1e-4
        now = clock[0]
        stack.receive_frame(guest.segment(ACK | PSH, answer), now)
        stack.pop_events()
        stack.tcp_send(guest.flow, answer, now)
        stack.pop_events()
        stack.drain_frames()
        guest.ack = (guest.ack + 64) & 0xFFFFFFFF

    return run


def op_tcp_ack() -> Callable[[], None]:
    stack, clock = _setup()
    guest = _Guest(stack, 40001, 0.0)
    stack.tcp_send(guest.flow, bytes(1 << 20), 0.0)
    stack.drain_frames()

    def run() -> None:
        clock[0] += 1e-4
        guest.ack = (guest.ack + 1) & 0xFFFFFFFF
        stack.receive_frame(guest.segment(ACK), clock[0])
        stack.drain_frames()

    return run


def op_tcp_bulk_in() -> Callable[[], None]:
    stack, clock = _setup()
    guest = _Guest(stack, 40002, 0.0)
    data = bytes(65000)

    def run() -> None:
        clock[0] += 1e-4
        stack.receive_frame(guest.segment(ACK, data), clock[0])
        stack.pop_events()
        stack.drain_frames()

    return run


def op_tcp_bulk_out() -> Callable[[], None]:
    stack, clock = _setup()
    guest = _Guest(stack, 40003, 0.0)
    data = bytes(64000)

    def run() -> None:
        clock[0] += 1e-4
        stack.tcp_send(guest.flow, data, clock[0])
        stack.drain_frames()
        guest.ack = (guest.ack + len(data)) & 0xFFFFFFFF
        stack.receive_frame(guest.segment(ACK), clock[0])
        stack.pop_events()
        stack.drain_frames()

    return run


def op_udp_rr() -> Callable[[], None]:
    stack, clock = _setup()
    request = _udp(41000, bytes(64))
    stack.receive_frame(request, 0.0)
    (event,) = stack.pop_events()
    assert isinstance(event, UDPDatagram)
    flow, host, port = event.flow, event.dst_addr, event.dst_port
    answer = bytes(64)

    def run() -> None:
        clock[0] += 1e-4
        stack.receive_frame(request, clock[0])
        stack.pop_events()
        stack.udp_send(flow, host, port, answer, clock[0])
        stack.drain_frames()

    return run


def op_tcp_crr() -> Callable[[], None]:
    stack, clock = _setup()
    ports = iter(range(10000, 60000))

    def run() -> None:
        clock[0] += 3.0  # past TIME-WAIT of the previous ones
        now = clock[0]
        stack.handle_timer(now)
        guest = _Guest(stack, next(ports), now)
        stack.receive_frame(guest.segment(ACK | PSH, b"x"), now)
        stack.pop_events()
        stack.tcp_send(guest.flow, b"y", now)
        stack.tcp_shutdown(guest.flow, now)
        stack.drain_frames()
        guest.ack = (guest.ack + 2) & 0xFFFFFFFF
        stack.receive_frame(guest.segment(ACK | FIN), now)
        stack.pop_events()
        stack.drain_frames()

    return run


OPS: dict[str, Callable[[], Callable[[], None]]] = {
    "tcp_rr": op_tcp_rr,
    "tcp_ack": op_tcp_ack,
    "tcp_bulk_in": op_tcp_bulk_in,
    "tcp_bulk_out": op_tcp_bulk_out,
    "udp_rr": op_udp_rr,
    "tcp_crr": op_tcp_crr,
}


def measure(name: str, seconds: float) -> float:
    """Microseconds per operation: the best of five runs of ``seconds / 5``."""
    run = OPS[name]()
    for _ in range(200):
        run()
    best = float("inf")
    for _ in range(5):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds / 5
        while True:
            for _ in range(100):
                run()
            count += 100
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / 5 or time.perf_counter() > deadline:
                break
        best = min(best, elapsed / count * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="per operation")
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated")
    parser.add_argument("--profile", metavar="NAME", help="cProfile one operation")
    args = parser.parse_args()
    if args.profile:
        run = OPS[args.profile]()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(20000):
            run()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    for name in args.ops.split(","):
        print(f"{name:14s} {measure(name, args.seconds):8.2f} µs")


if __name__ == "__main__":
    main()
