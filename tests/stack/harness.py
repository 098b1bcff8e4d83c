# SPDX-License-Identifier: GPL-2.0-or-later
"""A test bench around one ``Stack``, and a hand-driven guest TCP peer.

``Harness`` owns a stack, a virtual clock and the virtio-net setting; every
frame the stack hands out passes ``checks.check_any`` (well-formed, from a
``52:55:`` MAC, checksums right) before a test sees it. ``Peer`` is the guest
end of one TCP connection, driven segment by segment: it remembers both
sequence spaces so that tests only say what is special about a segment.
``tcp_in_state`` brings a fresh connection to a given state through the
frames a guest would send, so the state fixtures build on the code under test
only through its public API.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from checks import ANY, check_any, check_ipv4, check_tcp
from frames import GUEST_IP, GW_IP, VNET_ZERO, tcp
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from slirpy.stack.config import Limits, StackConfig
from slirpy.stack.events import Event, TCPConnectRequest
from slirpy.stack.stack import Stack
from slirpy.stack.tcp.connection import TCPConnection
from slirpy.stack.tcp.state import TCPState

MAX_TIMER_STEPS = 10_000


class Harness:
    """One stack, its clock, and checked access to what it sends."""

    def __init__(self, *, vnet: bool = False, seed: int = 7, **limits: Any) -> None:
        config_fields = {f.name for f in dataclasses.fields(StackConfig)}
        config_kw = {k: v for k, v in limits.items() if k in config_fields}
        limit_kw = {k: v for k, v in limits.items() if k not in config_fields}
        # ACKs go out at once unless a test asks for the delayed ACK.
        limit_kw.setdefault("tcp_delayed_ack", 0.0)
        self.config = StackConfig(vnet_hdr=vnet, limits=Limits(**limit_kw), **config_kw)
        self.stack = Stack(self.config, random.Random(seed))
        self.vnet = vnet
        self.now = 0.0

    # -------------------------------------------------------------- traffic

    def send(self, frame: bytes) -> None:
        """Feed one guest frame (built without the virtio-net header)."""
        self.stack.receive_frame(VNET_ZERO + frame if self.vnet else frame, self.now)

    def frames(self) -> list[bytes]:
        out = self.stack.frames_to_send()
        for f in out:
            check_any(f, vnet=self.vnet)
        return out

    def one_frame(self) -> bytes:
        out = self.frames()
        assert len(out) == 1, (
            f"expected one frame, got {[self.summary(f) for f in out]}"
        )
        return out[0]

    def no_frames(self) -> None:
        out = self.frames()
        assert out == [], f"unexpected frames: {[self.summary(f) for f in out]}"

    def events(self) -> list[Event]:
        return self.stack.pop_events()

    def dissect(self, frame: bytes) -> Packet:
        return Ether(frame[10:] if self.vnet else frame)

    def summary(self, frame: bytes) -> str:
        pkt = self.dissect(frame)
        if TCP in pkt:
            t = pkt[TCP]
            return (
                f"TCP {t.flags} seq={t.seq} ack={t.ack} win={t.window}"
                f" len={len(t.payload)}"
            )
        return str(pkt.summary())

    # ----------------------------------------------------------------- time

    def advance(self, seconds: float) -> None:
        """Move the clock on and run the timers that are due."""
        self.now += seconds
        deadline = self.stack.next_timer()
        if deadline is not None and deadline <= self.now:
            self.stack.handle_timer(self.now)

    def run_until_timer(self) -> float:
        """Jump to the next deadline (which must exist) and run it."""
        deadline = self.stack.next_timer()
        assert deadline is not None, "no timer armed"
        self.now = max(self.now, deadline)
        self.stack.handle_timer(self.now)
        return self.now

    def flows_empty(self) -> bool:
        f = self.stack.flows
        return not (
            f.tcp_by_id or f.tcp_by_key or f.half_open or f.udp_by_id or f.udp_by_key
        )


class Peer:
    """The guest's end of one TCP connection, driven by hand."""

    def __init__(
        self,
        h: Harness,
        *,
        sport: int = 40000,
        dst: str = GW_IP,
        dport: int = 8080,
        isn: int = 1_000_000,
        mss: int | None = 1460,
        wscale: int | None = 7,
        window: int = 65535,
    ) -> None:
        self.h = h
        self.sport = sport
        self.dst = dst
        self.dport = dport
        self.isn = isn
        self.mss = mss
        self.wscale = wscale
        self.window = window
        self.snd_nxt = isn
        """The guest's next sequence number."""
        self.rcv_nxt = 0
        """What the guest acknowledges: the stack's next sequence number."""
        self.stack_iss = 0
        self.flow = 0

    @property
    def conn(self) -> TCPConnection:
        return self.h.stack.flows.tcp_by_id[self.flow]

    @property
    def state(self) -> TCPState | None:
        conn = self.h.stack.flows.tcp_by_id.get(self.flow)
        return None if conn is None else conn.state

    def segment(
        self,
        flags: str = "A",
        payload: bytes = b"",
        *,
        seq: int | None = None,
        ack: int | None = None,
        window: int | None = None,
        options: list[tuple[str, object]] | None = None,
        **tcp_fields: Any,
    ) -> bytes:
        return tcp(
            sport=self.sport,
            dport=self.dport,
            dst=self.dst,
            seq=self.snd_nxt if seq is None else seq,
            ack=self.rcv_nxt if ack is None else ack,
            flags=flags,
            window=self.window if window is None else window,
            options=options,
            payload=payload,
            **tcp_fields,
        )

    def send(
        self,
        flags: str = "A",
        payload: bytes = b"",
        *,
        seq: int | None = None,
        **kw: Any,
    ) -> None:
        """Send a segment; without an explicit ``seq`` it advances ``snd_nxt``."""
        self.h.send(self.segment(flags, payload, seq=seq, **kw))
        if seq is None:
            used = len(payload) + ("S" in flags) + ("F" in flags)
            self.snd_nxt = (self.snd_nxt + used) & 0xFFFFFFFF

    def syn_options(self) -> list[tuple[str, object]]:
        opts: list[tuple[str, object]] = []
        if self.mss is not None:
            opts.append(("MSS", self.mss))
        if self.wscale is not None:
            opts.append(("WScale", self.wscale))
        return opts

    def connect(self) -> TCPConnectRequest:
        """Send the SYN and return the stack's connect request."""
        self.send("S", options=self.syn_options(), ack=0)
        events = self.h.events()
        assert len(events) == 1, events
        request = events[0]
        assert isinstance(request, TCPConnectRequest), request
        self.flow = request.flow
        return request

    def check(self, frame: bytes, **expected: Any) -> Packet:
        """``frame`` is a TCP segment of this connection with ``expected`` fields."""
        expected.setdefault("sport", self.dport)
        expected.setdefault("dport", self.sport)
        return check_ipv4(
            frame,
            vnet=self.h.vnet,
            src=self.dst,
            dst=GUEST_IP,
            ttl=64,
            tcp=check_tcp(**expected),
        )

    def expect(self, **expected: Any) -> Packet:
        """The stack sends exactly one segment, with ``expected`` fields."""
        return self.check(self.h.one_frame(), **expected)

    def expect_ack(self, **expected: Any) -> Packet:
        """Exactly one pure ACK acknowledging everything the guest sent."""
        expected.setdefault("ack", self.snd_nxt)
        expected.setdefault("payload", b"")
        return self.expect(flags="A", **expected)

    def take(self, pkt: Packet) -> bytes:
        """Account for a segment from the stack as received in order."""
        t = pkt[TCP]
        data = bytes(t.payload)
        assert t.seq == self.rcv_nxt, f"seq {t.seq} != expected {self.rcv_nxt}"
        used = len(data) + ("S" in str(t.flags)) + ("F" in str(t.flags))
        self.rcv_nxt = (self.rcv_nxt + used) & 0xFFFFFFFF
        return data


def accept(peer: Peer) -> Packet:
    """Accept the pending connection and take the SYN-ACK."""
    h = peer.h
    assert h.stack.accept(peer.flow, h.now)
    synack = peer.expect(flags="SA", ack=peer.snd_nxt, seq=ANY)
    peer.stack_iss = synack[TCP].seq
    peer.rcv_nxt = (peer.stack_iss + 1) & 0xFFFFFFFF
    return synack


def tcp_in_state(h: Harness, state: TCPState, **peer_kw: Any) -> Peer:
    """A fresh connection brought to ``state`` (``SYN_RECEIVED`` means not yet
    accepted), with nothing left to send and no events pending."""
    peer = Peer(h, **peer_kw)
    peer.connect()
    h.no_frames()
    if state is TCPState.SYN_RECEIVED:
        return _settled(peer, state)
    accept(peer)
    peer.send("A")
    h.no_frames()
    assert h.events() == []
    if state is TCPState.ESTABLISHED:
        return _settled(peer, state)
    if state in (TCPState.CLOSE_WAIT, TCPState.LAST_ACK):
        peer.send("FA")
        peer.expect_ack()
        h.events()
        if state is TCPState.LAST_ACK:
            h.stack.tcp_shutdown(peer.flow, h.now)
            peer.take(peer.expect(flags="FA", ack=peer.snd_nxt))
        return _settled(peer, state)
    h.stack.tcp_shutdown(peer.flow, h.now)
    fin = peer.expect(flags="FA", ack=peer.snd_nxt)
    fin_seq = fin[TCP].seq
    peer.take(fin)
    if state is TCPState.FIN_WAIT_1:
        return _settled(peer, state)
    if state is TCPState.CLOSING:
        # The guest's FIN crosses ours: it does not acknowledge our FIN yet.
        peer.send("FA", ack=fin_seq)
        peer.expect_ack()
        h.events()
        return _settled(peer, state)
    peer.send("A")
    h.no_frames()
    if state is TCPState.FIN_WAIT_2:
        return _settled(peer, state)
    assert state is TCPState.TIME_WAIT, state
    peer.send("FA")
    peer.expect_ack()
    h.no_frames()
    h.events()
    return _settled(peer, state)


def _settled(peer: Peer, state: TCPState) -> Peer:
    assert peer.state is state, f"reached {peer.state}, wanted {state}"
    assert peer.h.events() == []
    return peer
