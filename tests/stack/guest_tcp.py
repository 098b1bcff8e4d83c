# SPDX-License-Identifier: GPL-2.0-or-later
"""A small guest-side TCP endpoint, written for the tests, independent of slirpy.

``GuestTCP`` opens one connection through the stack and moves a byte string
each way: a go-back-N sender with cumulative ACKs, a retransmission timer
with exponential back-off, fast retransmit on three duplicate ACKs and
zero-window probes (an ACK below ``snd_una``); a receiver that keeps
out-of-order segments and delivers in order, acknowledging every segment at
once. It parses and builds
its frames with ``struct`` (never with slirpy's wire code), accepts GSO
frames from a virtio-net stack as the large segments they are, and is
strict: whatever a correct peer would never send (an exact RST, an ACK of data it
never sent, data or a second FIN past the stack's FIN, a bad checksum) is
recorded in ``violations``.

Closing is an ordinary close: ``close()`` queues a FIN behind the data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from checks import verify_checksums

ETH_IPV4 = b"\x08\x00"
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MOD = 1 << 32


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _csum(data: bytes) -> int:
    return ~_sum(data) & 0xFFFF


def _diff(a: int, b: int) -> int:
    d = (a - b) % MOD
    return d - MOD if d >= MOD // 2 else d


@dataclass
class Segment:
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    mss: int | None = None
    wscale: int | None = None


@dataclass
class GuestTCP:
    """The guest end of one connection (see the module docstring)."""

    mac: bytes
    ip: bytes
    port: int
    gw_mac: bytes
    remote_ip: bytes
    remote_port: int
    to_send: bytes
    isn: int = 0x9000_0000
    mss: int = 1460
    rcv_window: int = 65535
    wscale: int | None = None
    vnet: bool = False
    min_rto: float = 0.2
    ident: int = 0
    # Sender.
    snd_una: int = 0
    snd_nxt: int = 0
    snd_max: int = 0
    snd_wnd: int = 0
    peer_wscale: int = 0
    peer_mss: int = 536
    dupacks: int = 0
    rto: float = 0.2
    timer_at: float | None = None
    fin_queued: bool = False
    fin_acked: bool = False
    # Receiver.
    irs: int = 0
    rcv_nxt: int = 0
    received: bytearray = field(default_factory=bytearray)
    ooo: dict[int, bytes] = field(default_factory=dict)
    peer_fin_seq: int | None = None
    state: str = "CLOSED"
    out: list[bytes] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    retransmissions: int = 0
    ignored_rsts: int = 0

    # ------------------------------------------------------------ frames

    def _frame(self, seg: Segment) -> bytes:
        opts = b""
        if seg.mss is not None:
            opts += struct.pack("!BBH", 2, 4, seg.mss)
        if seg.wscale is not None:
            opts += struct.pack("!BBBB", 1, 3, 3, seg.wscale)
        tcp_len = 20 + len(opts) + len(seg.payload)
        header = struct.pack(
            "!HHIIBBHHH",
            self.port,
            self.remote_port,
            seg.seq % MOD,
            seg.ack % MOD,
            ((20 + len(opts)) // 4) << 4,
            seg.flags,
            seg.window,
            0,
            0,
        )
        segment = header + opts + seg.payload
        pseudo = self.ip + self.remote_ip + struct.pack("!BBH", 0, 6, tcp_len)
        csum = _csum(pseudo + segment)
        segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
        self.ident = (self.ident + 1) & 0xFFFF
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + tcp_len,
            self.ident,
            0x4000,
            64,
            6,
            0,
            self.ip,
            self.remote_ip,
        )
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        frame = self.gw_mac + self.mac + ETH_IPV4 + ip + segment
        return bytes(10) + frame if self.vnet else frame

    def _parse(self, frame: bytes) -> Segment | None:
        try:
            verify_checksums(frame, vnet=self.vnet, fast=True)
        except AssertionError as exc:
            self.violations.append(f"bad frame: {exc}")
            return None
        data = frame[10:] if self.vnet else frame
        if data[12:14] != ETH_IPV4 or data[14 + 9] != 6:
            return None
        ip = data[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[12:16] != self.remote_ip or ip[16:20] != self.ip:
            return None
        tcp = ip[ihl:]
        sport, dport, seq, ack, off, flags, window = struct.unpack_from("!HHIIBBH", tcp)
        if (sport, dport) != (self.remote_port, self.port):
            return None
        hlen = (off >> 4) * 4
        seg = Segment(seq, ack, flags, window, bytes(tcp[hlen:]))
        opts = tcp[20:hlen]
        i = 0
        while i < len(opts):
            kind = opts[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            length = opts[i + 1]
            if kind == 2 and length == 4:
                seg.mss = struct.unpack_from("!H", opts, i + 2)[0]
            elif kind == 3 and length == 3:
                seg.wscale = opts[i + 2]
            i += length
        return seg

    def _send(self, seq: int, flags: int, payload: bytes = b"", **opts: int) -> None:
        ack = self.rcv_nxt if flags & ACK else 0
        window = min(self.rcv_window >> (self.wscale or 0), 0xFFFF)
        if flags & SYN:
            window = min(self.rcv_window, 0xFFFF)
        self.out.append(self._frame(Segment(seq, ack, flags, window, payload, **opts)))

    def frames(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    # ------------------------------------------------------------ sending

    def connect(self, now: float) -> None:
        self.state = "SYN_SENT"
        self.snd_una = self.isn
        self.snd_nxt = self.snd_max = (self.isn + 1) % MOD
        self._send(self.isn, SYN, mss=self.mss, **self._ws())
        self.timer_at = now + 1.0

    def _ws(self) -> dict[str, int]:
        return {} if self.wscale is None else {"wscale": self.wscale}

    def close(self) -> None:
        self.fin_queued = True

    @property
    def _data_start(self) -> int:
        return (self.isn + 1) % MOD

    def _offset(self, seq: int) -> int:
        return _diff(seq, self._data_start)

    def _output(self, now: float) -> None:
        if self.state in ("SYN_SENT", "CLOSED"):
            return
        limit = min(self.mss, self.peer_mss)
        total = len(self.to_send)
        while True:
            off = self._offset(self.snd_nxt)
            in_flight = _diff(self.snd_nxt, self.snd_una)
            room = self.snd_wnd - in_flight
            if off < total:
                if room <= 0:
                    if in_flight == 0 and self.timer_at is None:
                        self.timer_at = now + self.rto  # persist
                    break
                n = min(limit, room, total - off)
                self._send(self.snd_nxt, ACK | PSH, self.to_send[off : off + n])
                self._advance(n)
            elif self.fin_queued and off == total:
                self._send(self.snd_nxt, ACK | FIN)
                self._advance(1)
                if self.state == "ESTABLISHED":
                    self.state = "FIN_WAIT_1"
                elif self.state == "CLOSE_WAIT":
                    self.state = "LAST_ACK"
            else:
                break
            if self.timer_at is None:
                self.timer_at = now + self.rto

    def _advance(self, n: int) -> None:
        self.snd_nxt = (self.snd_nxt + n) % MOD
        if _diff(self.snd_nxt, self.snd_max) > 0:
            self.snd_max = self.snd_nxt

    def on_timer(self, now: float) -> None:
        if self.timer_at is None or now < self.timer_at:
            return
        self.timer_at = None
        if self.state == "SYN_SENT":
            self._send(self.isn, SYN, mss=self.mss, **self._ws())
            self.timer_at = now + 1.0
            return
        if self.state in ("CLOSED", "TIME_WAIT"):
            return
        self.rto = min(self.rto * 2, 8.0)
        if self.snd_una == self.snd_nxt and self.snd_wnd == 0:
            # Zero-window probe: an old sequence number makes the peer restate
            # its window.
            self._send(self.snd_una - 1, ACK)
            self.timer_at = now + self.rto
            return
        if self.snd_una != self.snd_nxt:
            self.retransmissions += 1
            self.snd_nxt = self.snd_una
            self.dupacks = 0
            self.timer_at = now + self.rto
            self._output(now)

    # ---------------------------------------------------------- receiving

    def receive(self, frame: bytes, now: float) -> None:
        seg = self._parse(frame)
        if seg is None:
            return
        if seg.flags & RST:
            if self.state in ("TIME_WAIT", "CLOSED"):
                # The answer to a late duplicate of our last ACK once the stack
                # has forgotten the connection; RFC 1337: TIME-WAIT ignores it.
                self.ignored_rsts += 1
                return
            if self.state != "SYN_SENT" and seg.seq != self.rcv_nxt:
                # RFC 5961 §3.2: not exact, e.g. the answer to a late duplicate
                # after the stack forgot the connection. Ignore it.
                self.ignored_rsts += 1
                return
            self.violations.append(f"RST seq={seg.seq} in {self.state}")
            self.state = "CLOSED"
            return
        if self.state == "SYN_SENT":
            self._on_syn_sent(seg, now)
            return
        if self.state == "CLOSED":
            return
        if seg.flags & SYN:
            # A retransmitted SYN-ACK: our ACK got lost.
            self._send(self.snd_nxt, ACK)
            return
        if seg.flags & ACK:
            self._on_ack(seg, now)
        self._on_data(seg)
        self._output(now)

    def _on_syn_sent(self, seg: Segment, now: float) -> None:
        if seg.flags & (SYN | ACK) != SYN | ACK:
            return
        if seg.ack != self.snd_nxt:
            self.violations.append("SYN-ACK acknowledges the wrong sequence")
            return
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) % MOD
        self.peer_mss = seg.mss or 536
        self.peer_wscale = (
            seg.wscale if (seg.wscale is not None and self.wscale is not None) else 0
        )
        if self.wscale is not None and seg.wscale is None:
            self.wscale = None
        self.snd_una = seg.ack
        self.snd_wnd = seg.window
        self.state = "ESTABLISHED"
        self.timer_at = None
        self.rto = self.min_rto
        self._send(self.snd_nxt, ACK)
        self._output(now)

    def _on_ack(self, seg: Segment, now: float) -> None:
        acked = _diff(seg.ack, self.snd_una)
        if _diff(seg.ack, self.snd_max) > 0:
            self.violations.append(f"ACK {seg.ack} of data never sent ({self.snd_max})")
            return
        window = seg.window << self.peer_wscale
        if acked > 0:
            self.snd_una = seg.ack
            if _diff(self.snd_nxt, self.snd_una) < 0:
                self.snd_nxt = self.snd_una
            self.dupacks = 0
            self.rto = self.min_rto
            self.snd_wnd = window
            self.timer_at = None if self.snd_una == self.snd_max else now + self.rto
            fin_seq = (self._data_start + len(self.to_send)) % MOD
            if self.fin_queued and _diff(self.snd_una, fin_seq) > 0:
                self.fin_acked = True
                if self.state == "FIN_WAIT_1":
                    self.state = "FIN_WAIT_2"
                elif self.state == "CLOSING":
                    self.state = "TIME_WAIT"
                elif self.state == "LAST_ACK":
                    self.state = "CLOSED"
                    self.timer_at = None
            return
        if acked == 0 and not seg.payload and not seg.flags & FIN:
            if window == self.snd_wnd and self.snd_una != self.snd_max:
                self.dupacks += 1
                if self.dupacks == 3:
                    self.retransmissions += 1
                    off = self._offset(self.snd_una)
                    n = min(self.mss, self.peer_mss, len(self.to_send) - off)
                    if n > 0:
                        self._send(self.snd_una, ACK, self.to_send[off : off + n])
            self.snd_wnd = window

    def _on_data(self, seg: Segment) -> None:
        fin = bool(seg.flags & FIN)
        if not seg.payload and not fin:
            return
        rel = _diff(seg.seq, self.rcv_nxt)
        end = rel + len(seg.payload)
        if self.peer_fin_seq is not None:
            fin_rel = _diff(self.peer_fin_seq, seg.seq)
            fin_at = (seg.seq + len(seg.payload)) % MOD
            if len(seg.payload) > fin_rel or (fin and fin_at != self.peer_fin_seq):
                self.violations.append(
                    f"data or FIN past the FIN: seq={seg.seq} fin={self.peer_fin_seq}"
                )
        elif fin:
            self.peer_fin_seq = (seg.seq + len(seg.payload)) % MOD
        if rel > 0:
            if rel < self.rcv_window:
                self.ooo[seg.seq] = seg.payload
        elif end > 0:
            self.received += seg.payload[-rel:] if rel else seg.payload
            self.rcv_nxt = (self.rcv_nxt + end) % MOD
            self._drain_ooo()
        self._take_fin()
        self._send(self.snd_nxt, ACK)

    def _drain_ooo(self) -> None:
        progress = True
        while progress and self.ooo:
            progress = False
            for seq in list(self.ooo):
                payload = self.ooo[seq]
                rel = _diff(seq, self.rcv_nxt)
                end = rel + len(payload)
                if rel <= 0:
                    del self.ooo[seq]
                    if end > 0:
                        self.received += payload[-rel:] if rel else payload
                        self.rcv_nxt = (self.rcv_nxt + end) % MOD
                        progress = True

    def _take_fin(self) -> None:
        if self.peer_fin_seq is None or self.peer_fin_seq != self.rcv_nxt:
            return
        self.rcv_nxt = (self.rcv_nxt + 1) % MOD
        if self.state == "ESTABLISHED":
            self.state = "CLOSE_WAIT"
        elif self.state == "FIN_WAIT_1":
            self.state = "CLOSING"
        elif self.state == "FIN_WAIT_2":
            self.state = "TIME_WAIT"
            self.timer_at = None

    @property
    def done(self) -> bool:
        return self.state in ("TIME_WAIT", "CLOSED") and self.fin_acked

    def next_timer(self) -> float | None:
        return self.timer_at
