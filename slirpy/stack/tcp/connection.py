# SPDX-License-Identifier: GPL-2.0-or-later
"""One TCP connection between the guest and slirpy's end of it.

Theory of operation
===================

slirpy terminates every guest TCP connection in this class and relays the byte
stream to a host socket owned by the driver. The guest's kernel is a full TCP;
this end does only what a well-behaved peer on a lossless, low-latency virtual
link needs, in the spirit of passt:

* **Opening.** A guest SYN creates the connection in ``SYN-RECEIVED`` without
  answering it: the driver first connects the host socket, then calls
  ``accept`` (SYN-ACK with MSS and, if the guest offered it, window scaling)
  or the stack rejects the SYN (RST or ICMP) — so "connection refused" in the
  guest is the host's real answer. Retransmitted SYNs are ignored meanwhile.
  A port forward opens the other way: ``connect`` sends a SYN (``SYN-SENT``;
  held back until the guest's MAC is known), the guest's SYN-ACK raises
  ``TCPConnected`` and its RST ``TCPReset``.
* **Guest to host.** In-order data is handed out as ``TCPData`` at once. A
  segment that arrives early is held (up to ``_MAX_HELD`` of them, inside the
  window) and answered with a duplicate ACK, which makes the guest retransmit
  the missing one; when it comes, the held data follows it out. The advertised window is
  ``tcp_rcv_window`` bytes past what was handed out, except while the driver
  has paused receiving (the host socket is full): then the right edge stops
  moving and the window closes as data arrives, which is the backpressure.
  ACKs are coalesced: one per connection per batch of frames, and for less
  than two full segments one waits up to ``Limits.tcp_delayed_ack`` for the
  host's answer to carry it.
* **Host to guest.** ``send`` appends to a buffer that holds everything from
  the oldest unacknowledged byte on. Segments are cut from it as the guest's
  (scaled) window allows — no congestion control, no Nagle; with the
  virtio-net header a segment may be up to 64 KiB and the kernel splits it
  into guest-MSS pieces. ``send`` reports whether the buffer is below
  ``tcp_snd_buffer``; when it has drained below again ``TCPWritable`` tells
  the driver to read from the host socket again.
* **Loss.** One timer per connection. With data or a FIN in flight it is the
  retransmission timer (RFC 6298 estimator, Karn's rule, exponential
  back-off); on expiry everything unacknowledged is sent again (go-back-N).
  Three duplicate ACKs resend the first unacknowledged segment at once. With
  data waiting behind a zero window it is the persist timer, whose probe is an
  ACK one below ``snd_una`` that makes the guest restate its window. In
  ``TIME-WAIT`` it counts down the (short) quiet time.
* **Closing.** A guest FIN in order becomes ``TCPEof``; ``shutdown`` queues our
  FIN behind the buffered data. Once both FINs are sent and the connection
  has nothing left for the driver, ``FlowClosed`` is raised exactly once; a
  connection that entered ``TIME-WAIT`` lingers only to re-acknowledge a
  retransmitted FIN. A guest RST in window raises ``TCPReset`` then
  ``FlowClosed``; ``abort`` sends an RST to the guest.

Sequence checks follow RFC 9293 §3.10.7.4, with the RFC 5961 §3.2/§4.2
challenge ACK for RSTs and SYNs that are in window but not exact. The urgent
pointer is ignored: urgent data is ordinary inline data.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final

from slirpy.stack.config import Limits
from slirpy.stack.errors import ProtocolStateError
from slirpy.stack.events import (
    Event,
    FlowClosed,
    TCPConnected,
    TCPData,
    TCPEof,
    TCPReset,
    TCPWritable,
)
from slirpy.stack.framing import Frame, Framer, TCPTemplate
from slirpy.stack.stats import Stats
from slirpy.stack.tcp.buffers import SendBuffer
from slirpy.stack.tcp.seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt
from slirpy.stack.tcp.state import TCPState
from slirpy.stack.wire import tcp as tcpwire
from slirpy.stack.wire.tcp import ACK, FIN, PSH, RST, SYN, TCPHeader

INITIAL_RTO: Final = 1.0
MIN_RTO: Final = 0.2
MAX_RTO: Final = 60.0
MAX_RETRIES: Final = 12
MAX_SYN_RETRIES: Final = 5
TIME_WAIT_SECONDS: Final = 2.0
_MAX_HELD: Final = 1024
"""Out-of-order segments kept per connection (all within the window, so what
they hold is bounded by it)."""
DEFAULT_PEER_MSS: Final = 536
_MAX_IP_PAYLOAD: Final = 65535 - 20
_DUPACK_THRESHOLD: Final = 3


class _Timer(enum.Enum):
    NONE = 0
    RETRANSMIT = 1
    PERSIST = 2
    TIME_WAIT = 3


def _window_scale_for(window: int) -> int:
    scale = 0
    while (window >> scale) > 0xFFFF and scale < tcpwire.MAX_WSCALE:
        scale += 1
    return scale


class TCPConnection:
    """The state of one guest TCP connection; see the module docstring."""

    __slots__ = (
        "_ack_pending",
        "_acked_upto",
        "_dupacks",
        "_emit",
        "_events",
        "_fin_queued",
        "_fin_sent",
        "_fin_seq",
        "_framer",
        "_limits",
        "_mark_dirty",
        "_notified_closed",
        "_ooo",
        "_retries",
        "_rto",
        "_rtt_seq",
        "_rtt_start",
        "_rttvar",
        "_send_blocked",
        "_srtt",
        "_stats",
        "_timer",
        "_tmpl",
        "accepted",
        "accepted_at",
        "ack_deadline",
        "flow",
        "guest_ip",
        "guest_mac",
        "guest_port",
        "inbound",
        "irs",
        "iss",
        "local_mss",
        "peer_mss",
        "rcv_adv",
        "rcv_nxt",
        "rcv_paused",
        "rcv_wscale",
        "remote_ip",
        "remote_port",
        "snd_buf",
        "snd_max",
        "snd_nxt",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "state",
        "syn_quote",
        "timer_at",
    )

    def __init__(
        self,
        *,
        flow: int,
        guest_mac: bytes,
        guest_ip: bytes,
        guest_port: int,
        remote_ip: bytes,
        remote_port: int,
        framer: Framer,
        limits: Limits,
        mtu: int,
        iss: int,
        events: list[Event],
        emit: Callable[[Frame], None],
        mark_dirty: Callable[[TCPConnection], None],
        stats: Stats,
    ) -> None:
        self.flow = flow
        self.guest_mac = guest_mac
        self.guest_ip = guest_ip
        self.guest_port = guest_port
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self._framer = framer
        self._limits = limits
        self._events = events
        self._emit = emit
        self._mark_dirty = mark_dirty
        self._stats = stats
        ip_header = 20 if len(guest_ip) == 4 else 40
        self.local_mss = min(mtu - ip_header - 20, _MAX_IP_PAYLOAD - 20)
        self.state = TCPState.CLOSED
        self.accepted = False
        self.accepted_at = 0.0
        """When the SYN-ACK first went out."""
        self.inbound = False
        """Opened by slirpy toward the guest (a port forward)."""
        self.syn_quote = b""
        self.iss = iss
        self.irs = 0
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.peer_mss = DEFAULT_PEER_MSS
        self.snd_buf = SendBuffer()
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_paused = False
        self._fin_queued = False
        self._fin_sent = False
        self._fin_seq: int | None = None
        """Sequence number of our FIN, once it has been sent."""
        self._ack_pending = False
        self._ooo: dict[int, memoryview] = {}
        """Out-of-order segments from the guest, by sequence number."""
        self.ack_deadline: float | None = None
        """When the delayed ACK for small segments is due, if one is owed."""
        self._acked_upto = 0
        """``rcv_nxt`` as last acknowledged to the guest."""
        self._dupacks = 0
        self._send_blocked = False
        self._notified_closed = False
        self._rto = INITIAL_RTO
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._rtt_seq: int | None = None
        self._rtt_start = 0.0
        self._retries = 0
        self._timer = _Timer.NONE
        self.timer_at: float | None = None
        self._tmpl: TCPTemplate | None = None
        """Pre-packed headers of our segments (with the virtio-net header)."""

    # ------------------------------------------------------------------ opening

    def syn_received(self, hdr: TCPHeader, quote: bytes) -> None:
        """Take the guest's SYN; nothing is sent until ``accept``."""
        self.state = TCPState.SYN_RECEIVED
        self.irs = hdr.seq
        self.rcv_nxt = seq_add(hdr.seq, 1)
        self._acked_upto = self.rcv_nxt
        self.peer_mss = hdr.mss if hdr.mss else DEFAULT_PEER_MSS
        if hdr.wscale is not None:
            self.snd_wscale = hdr.wscale
            self.rcv_wscale = _window_scale_for(self._limits.tcp_rcv_window)
        self.snd_wnd = hdr.window
        self.snd_wl1 = hdr.seq
        self.syn_quote = quote

    def accept(self, now: float) -> None:
        """The host side is connected: answer the SYN."""
        if self.state is not TCPState.SYN_RECEIVED or self.accepted:
            raise ProtocolStateError(f"accept in state {self.state.value}")
        self.accepted = True
        self.accepted_at = now
        self.syn_quote = b""
        self.snd_nxt = seq_add(self.iss, 1)
        self.snd_max = self.snd_nxt
        self._send_synack()
        self._arm(_Timer.RETRANSMIT, now + self._rto)

    def _send_synack(self) -> None:
        window = min(self._limits.tcp_rcv_window, 0xFFFF)
        self.rcv_adv = seq_add(self.rcv_nxt, window)
        wscale = self.rcv_wscale if self.snd_wscale or self.rcv_wscale else None
        opts = tcpwire.options(mss=self.local_mss, wscale=wscale)
        self._segment(self.iss, SYN | ACK, b"", opts=opts, window=window)

    def connect(self, now: float) -> None:
        """Open the connection toward the guest (a port forward): send a SYN.

        With ``guest_mac`` still unknown the SYN waits for ``neighbour_known``.
        """
        self.state = TCPState.SYN_SENT
        self.accepted = True
        self.inbound = True
        self.snd_nxt = seq_add(self.iss, 1)
        self.snd_max = self.snd_nxt
        self.rcv_wscale = _window_scale_for(self._limits.tcp_rcv_window)
        if self.guest_mac:
            self._send_syn()
        self._arm(_Timer.RETRANSMIT, now + self._rto)

    def neighbour_known(self, mac: bytes) -> None:
        """The guest's MAC was learned: send what was waiting for it."""
        self.guest_mac = mac
        self._tmpl = None
        if self.state is TCPState.SYN_SENT:
            self._send_syn()

    def _send_syn(self) -> None:
        window = min(self._limits.tcp_rcv_window, 0xFFFF)
        opts = tcpwire.options(mss=self.local_mss, wscale=self.rcv_wscale)
        self._segment(self.iss, SYN, b"", opts=opts, window=window, ack=0)

    def _on_syn_sent(self, hdr: TCPHeader, now: float) -> None:
        """RFC 9293 §3.10.7.3, without simultaneous open."""
        flags = hdr.flags
        if flags & ACK and hdr.ack != self.snd_nxt:
            if not flags & RST:
                self._send_rst(hdr.ack)
            return
        if flags & RST:
            if flags & ACK:
                self._events.append(TCPReset(self.flow))
                self._close(notify=True)
            return
        if not flags & SYN or not flags & ACK:
            return
        self.irs = hdr.seq
        self.rcv_nxt = seq_add(hdr.seq, 1)
        self.rcv_adv = seq_add(self.rcv_nxt, min(self._limits.tcp_rcv_window, 0xFFFF))
        self._acked_upto = self.rcv_nxt
        self.peer_mss = hdr.mss if hdr.mss else DEFAULT_PEER_MSS
        if hdr.wscale is None:
            self.rcv_wscale = 0
        else:
            self.snd_wscale = hdr.wscale
        self.snd_una = hdr.ack
        self.snd_wnd = hdr.window
        self.snd_wl1 = hdr.seq
        self.snd_wl2 = hdr.ack
        self.state = TCPState.ESTABLISHED
        self._retries = 0
        self._rto = INITIAL_RTO
        self._disarm()
        self._events.append(TCPConnected(self.flow))
        self._send_ack()
        self._transmit(now)

    def reset_syn(self) -> None:
        """Refuse the pending SYN with an RST (the host refused the connection)."""
        self._emit_rst(0, self.rcv_nxt, RST | ACK)
        self._close(notify=True)

    def _emit_rst(self, seq: int, ack: int, flags: int) -> None:
        hdr = tcpwire.emit(self.remote_port, self.guest_port, seq, ack, flags, 0)
        self._stats.tcp_rst_sent += 1
        self._emit(
            self._framer.tcp(
                self.guest_mac, self.remote_ip, self.guest_ip, hdr, b"", 0xFFFF
            )
        )

    # ------------------------------------------------------------ API: sending

    def send(
        self, data: bytes | bytearray | memoryview, now: float, fin: bool = False
    ) -> bool:
        """Queue ``data`` for the guest, and with ``fin`` a FIN after it (on
        the same segment when it fits); False once the buffer is over its
        limit."""
        if self._fin_queued or not (
            self.state.sends_data
            or self.state in (TCPState.SYN_RECEIVED, TCPState.SYN_SENT)
        ):
            raise ProtocolStateError(f"send in state {self.state.value}")
        self.snd_buf.append(data)
        if fin:
            self._fin_queued = True
        if self.state.is_synchronized:
            self._transmit(now)
        room = len(self.snd_buf) < self._limits.tcp_snd_buffer
        if not room:
            self._send_blocked = True
        return room

    def shutdown(self, now: float) -> None:
        """The host side has no more data: send a FIN after what is queued."""
        if self._fin_queued or self.state is TCPState.CLOSED:
            return
        self._fin_queued = True
        if self.state.is_synchronized:
            self._transmit(now)

    def abort(self) -> None:
        """Reset the connection toward the guest and forget it."""
        if self.state is TCPState.CLOSED:
            return
        if self.state is TCPState.SYN_RECEIVED and not self.accepted:
            self.reset_syn()
            return
        if self.state is TCPState.SYN_SENT:
            # The guest has not answered: there is nothing for it to reset.
            self._close(notify=True)
            return
        self._emit_rst(self.snd_nxt, self.rcv_nxt, RST | ACK)
        self._close(notify=True)

    def abort_silently(self) -> None:
        """Forget the connection without telling the guest."""
        self._close(notify=True)

    def set_receive_paused(self, paused: bool, now: float) -> None:
        """Stop (or restart) opening the receive window: the host socket is full."""
        if paused == self.rcv_paused:
            return
        self.rcv_paused = paused
        if not paused and self.state.receives_data:
            # The window update goes out with the next flush.
            self._ack_pending = True
            self._mark_dirty(self)

    # -------------------------------------------------------- segments arriving

    def segment_arrived(self, hdr: TCPHeader, payload: memoryview, now: float) -> None:
        """Process one segment from the guest (RFC 9293 §3.10.7)."""
        flags = hdr.flags
        state = self.state
        if state is TCPState.SYN_RECEIVED and not self.accepted:
            if flags & RST:
                self._close(notify=True)
            return
        if state is TCPState.CLOSED:
            return
        if state is TCPState.SYN_SENT:
            self._on_syn_sent(hdr, now)
            return
        if flags & SYN and state is TCPState.SYN_RECEIVED:
            if hdr.seq == self.irs and not flags & ACK:
                self._send_synack()
            else:
                self._challenge_ack()
            return
        if not self._acceptable(hdr, len(payload)):
            if not flags & RST:
                self._send_ack()
            return
        if flags & RST:
            if hdr.seq == self.rcv_nxt:
                self._reset_event()
                self._close(notify=True)
            else:
                self._challenge_ack()
            return
        if flags & SYN:
            self._challenge_ack()
            return
        if not flags & ACK:
            return
        if state is TCPState.SYN_RECEIVED:
            if hdr.ack != self.snd_nxt:
                self._send_rst(hdr.ack)
                return
            self.state = TCPState.ESTABLISHED
            self.snd_una = hdr.ack
            self.snd_wnd = hdr.window << self.snd_wscale
            self.snd_wl1 = hdr.seq
            self.snd_wl2 = hdr.ack
            self._retries = 0
            self._rto = INITIAL_RTO
            self._disarm()
            self._transmit(now)
        elif not self._process_ack(hdr, len(payload), now):
            return
        if self.state is TCPState.CLOSED:
            return
        if payload and self.state.receives_data:
            self._receive_data(hdr.seq, payload, now)
        if flags & FIN:
            self._receive_fin(seq_add(hdr.seq, len(payload)), now)

    def _acceptable(self, hdr: TCPHeader, data_len: int) -> bool:
        seg_len = data_len + (1 if hdr.flags & FIN else 0)
        wnd = max(0, seq_diff(self.rcv_adv, self.rcv_nxt))
        seq = hdr.seq
        rel = seq_diff(seq, self.rcv_nxt)
        if seg_len == 0:
            return rel == 0 if wnd == 0 else 0 <= rel < wnd
        if wnd == 0:
            # RFC 9293: no data fits, but ACKs and RSTs are still processed.
            return rel == 0
        end_rel = rel + seg_len - 1
        return (0 <= rel < wnd) or (0 <= end_rel < wnd)

    def _process_ack(self, hdr: TCPHeader, data_len: int, now: float) -> bool:
        """Handle the ACK field; False if the segment must be dropped."""
        ack = hdr.ack
        if seq_gt(ack, self.snd_max):
            self._send_ack()
            return False
        if seq_gt(ack, self.snd_nxt):
            # Acknowledges data sent before a retransmission timeout rewound.
            self.snd_nxt = ack
        if seq_lt(ack, self.snd_una):
            return True  # an old duplicate: its data may still be new
        acked = seq_diff(ack, self.snd_una)
        window = hdr.window << self.snd_wscale
        if seq_lt(self.snd_wl1, hdr.seq) or (
            self.snd_wl1 == hdr.seq and seq_le(self.snd_wl2, ack)
        ):
            window_changed = window != self.snd_wnd
            self.snd_wnd = window
            self.snd_wl1 = hdr.seq
            self.snd_wl2 = ack
        else:
            window_changed = False
        if acked == 0:
            if (
                data_len == 0
                and not window_changed
                and not hdr.flags & FIN
                and self.snd_nxt != self.snd_una
            ):
                self._dupacks += 1
                if self._dupacks == _DUPACK_THRESHOLD:
                    self._fast_retransmit()
            if window_changed:
                self._transmit(now)
            return True
        self._dupacks = 0
        self._take_ack(ack, acked, now)
        return self.state is not TCPState.CLOSED

    def _take_ack(self, ack: int, acked: int, now: float) -> None:
        data_acked = min(acked, len(self.snd_buf))
        if data_acked:
            self.snd_buf.consume(data_acked)
        self.snd_una = ack
        if self._rtt_seq is not None and seq_ge(ack, self._rtt_seq):
            self._rtt_sample(now - self._rtt_start)
            self._rtt_seq = None
        self._retries = 0
        fin_seq = self._fin_seq
        fin_acked = fin_seq is not None and seq_ge(ack, seq_add(fin_seq, 1))
        if fin_acked:
            self._fin_sent = True
        if fin_acked:
            if self.state is TCPState.FIN_WAIT_1:
                self.state = TCPState.FIN_WAIT_2
            elif self.state is TCPState.CLOSING:
                self._enter_time_wait(now)
                return
            elif self.state is TCPState.LAST_ACK:
                self._close(notify=True)
                return
        if self.snd_una == self.snd_nxt:
            self._disarm()
        else:
            self._arm(_Timer.RETRANSMIT, now + self._rto)
        if self._send_blocked and len(self.snd_buf) < self._limits.tcp_snd_buffer:
            self._send_blocked = False
            self._events.append(TCPWritable(self.flow))
        self._transmit(now)

    def _receive_data(self, seq: int, payload: memoryview, now: float) -> None:
        offset = seq_diff(self.rcv_nxt, seq)
        room = max(0, seq_diff(self.rcv_adv, self.rcv_nxt))
        if offset < 0:
            # Out of order: keep it (within the window and the queue's bounds)
            # and ask for what is missing with a duplicate ACK.
            self._hold(seq, payload[: max(0, room + offset)])
            self._send_ack()
            return
        if offset:
            payload = payload[offset:]
        if len(payload) > room:
            payload = payload[:room]
        if not payload:
            # A probe of a closed window (RFC 9293 §3.8.6.1): say it is still shut.
            self._ack_pending = True
            self._mark_dirty(self)
            return
        self.rcv_nxt = seq_add(self.rcv_nxt, len(payload))
        self._events.append(TCPData(self.flow, payload))
        if self._ooo:
            self._release_held()
        delay = self._limits.tcp_delayed_ack
        if delay <= 0 or seq_diff(self.rcv_nxt, self._acked_upto) >= 2 * self.local_mss:
            self._ack_pending = True
            self._mark_dirty(self)
        elif self.ack_deadline is None:
            # Delayed ACK (RFC 9293 §3.8.6.3): the host's answer usually
            # comes first and carries it.
            self.ack_deadline = now + delay

    def _hold(self, seq: int, payload: memoryview) -> None:
        """Keep an out-of-order segment (a view of its frame, not a copy)."""
        if not payload or seq in self._ooo or len(self._ooo) >= _MAX_HELD:
            return
        self._ooo[seq] = payload

    def _release_held(self) -> None:
        """Deliver the held segments that the new in-order data reached."""
        held = self._ooo
        base = self.rcv_nxt
        for seq in sorted(held, key=lambda s: seq_diff(s, base)):
            start = seq_diff(self.rcv_nxt, seq)
            if start < 0:
                break  # another gap
            payload = held.pop(seq)
            if start < len(payload):
                rest = payload[start:]
                self.rcv_nxt = seq_add(self.rcv_nxt, len(rest))
                self._events.append(TCPData(self.flow, rest))
        # Whatever was held is now acknowledged at once, filling the guest's hole.
        self._ack_pending = True
        self._mark_dirty(self)

    def _receive_fin(self, fin_seq: int, now: float) -> None:
        if fin_seq != self.rcv_nxt:
            self._send_ack()  # data before the FIN is missing
            return
        state = self.state
        if not state.receives_data:
            return  # a retransmitted FIN; the ACK below answers it
        self.rcv_nxt = seq_add(self.rcv_nxt, 1)
        self._events.append(TCPEof(self.flow))
        if state is TCPState.ESTABLISHED:
            self.state = TCPState.CLOSE_WAIT
        elif state is TCPState.FIN_WAIT_1:
            self.state = TCPState.CLOSING
        else:
            self._enter_time_wait(now)
        self._send_ack()

    # ----------------------------------------------------------- transmitting

    def _segment_limit(self) -> int:
        mss = min(self.peer_mss, self.local_mss)
        if not self._framer.vnet_hdr:
            return mss
        return max(mss, ((_MAX_IP_PAYLOAD - 20) // mss) * mss)

    def _transmit(self, now: float) -> None:
        """Send what the guest's window allows, then the FIN if it is due."""
        limit = self._segment_limit()
        gso = min(self.peer_mss, self.local_mss)
        while not self._fin_sent:  # nothing follows a FIN
            in_flight = seq_diff(self.snd_nxt, self.snd_una)
            unsent = len(self.snd_buf) - in_flight
            avail = self.snd_wnd - in_flight
            if unsent > 0 and avail > 0:
                n = min(unsent, avail, limit)
                payload = self.snd_buf.peek(in_flight, n)
                # The FIN rides on the segment with the last of the data.
                last = n == unsent and self._fin_queued
                flags = ACK | PSH | FIN if last else ACK | PSH
                self._segment(self.snd_nxt, flags, payload, gso=gso)
                if self._rtt_seq is None:
                    self._rtt_seq = seq_add(self.snd_nxt, n)
                    self._rtt_start = now
                self.snd_nxt = seq_add(self.snd_nxt, n)
                if last:
                    self._fin_out()
                self._note_sent()
                continue
            if unsent <= 0 and self._fin_queued and not self._fin_sent:
                self._segment(self.snd_nxt, ACK | FIN, b"")
                self._fin_out()
                self._note_sent()
            break
        if self.snd_nxt != self.snd_una:
            if self._timer is not _Timer.RETRANSMIT:
                self._arm(_Timer.RETRANSMIT, now + self._rto)
        elif self.snd_buf and self.snd_wnd == 0:
            if self._timer is not _Timer.PERSIST:
                self._arm(_Timer.PERSIST, now + self._rto)
        elif self._timer in (_Timer.RETRANSMIT, _Timer.PERSIST):
            self._disarm()

    def _fin_out(self) -> None:
        """The FIN went out at ``snd_nxt``."""
        self._fin_seq = self.snd_nxt
        self._fin_sent = True
        self.snd_nxt = seq_add(self.snd_nxt, 1)
        if self.state is TCPState.ESTABLISHED:
            self.state = TCPState.FIN_WAIT_1
        elif self.state is TCPState.CLOSE_WAIT:
            self.state = TCPState.LAST_ACK

    def _note_sent(self) -> None:
        if seq_gt(self.snd_nxt, self.snd_max):
            self.snd_max = self.snd_nxt

    def _fast_retransmit(self) -> None:
        fin_seq = self._fin_seq
        data_end = self.snd_max if fin_seq is None else fin_seq
        in_flight = seq_diff(data_end, self.snd_una)
        n = min(len(self.snd_buf), in_flight, self.snd_wnd, self._segment_limit())
        if n > 0:
            gso = min(self.peer_mss, self.local_mss)
            self._segment(self.snd_una, ACK, self.snd_buf.peek(0, n), gso=gso)
        elif fin_seq is not None and seq_le(self.snd_una, fin_seq):
            self._segment(fin_seq, ACK | FIN, b"")
        self._rtt_seq = None

    def _segment(
        self,
        seq: int,
        flags: int,
        payload: bytes | bytearray | memoryview,
        *,
        opts: bytes = b"",
        window: int | None = None,
        gso: int = 0xFFFF,
        ack: int | None = None,
    ) -> None:
        if window is None:
            window = self._window_field()
        if ack is None:
            ack = self.rcv_nxt
        tmpl = self._tmpl
        if tmpl is None and not opts and self._framer.vnet_hdr and self.guest_mac:
            tmpl = self._tmpl = TCPTemplate(
                self._framer,
                self.guest_mac,
                self.remote_ip,
                self.guest_ip,
                self.remote_port,
                self.guest_port,
            )
        if tmpl is not None and not opts:
            self._emit(tmpl.segment(seq, ack, flags, window, payload, gso))
        else:
            hdr = tcpwire.emit(
                self.remote_port, self.guest_port, seq, ack, flags, window, opts
            )
            self._emit(
                self._framer.tcp(
                    self.guest_mac, self.remote_ip, self.guest_ip, hdr, payload, gso
                )
            )
        if flags & ACK:
            self._acked_upto = self.rcv_nxt
            self.ack_deadline = None
        self._ack_pending = False

    def _window_field(self) -> int:
        if not self.rcv_paused and self.state.receives_data:
            edge = seq_add(self.rcv_nxt, self._limits.tcp_rcv_window)
            if seq_gt(edge, self.rcv_adv):
                self.rcv_adv = edge
        window = max(0, seq_diff(self.rcv_adv, self.rcv_nxt))
        return min(window >> self.rcv_wscale, 0xFFFF)

    def _send_ack(self) -> None:
        self._segment(self.snd_nxt, ACK, b"")

    def _challenge_ack(self) -> None:
        self._send_ack()

    def _send_rst(self, seq: int) -> None:
        self._emit_rst(seq, 0, RST)

    def flush(self) -> None:
        """Send the coalesced ACK, if one is still owed."""
        if self._ack_pending and self.state is not TCPState.CLOSED:
            self._send_ack()

    def flush_delayed_ack(self) -> None:
        """Send the delayed ACK now (its deadline passed)."""
        self.ack_deadline = None
        if self.state is not TCPState.CLOSED and self._acked_upto != self.rcv_nxt:
            self._send_ack()

    # ------------------------------------------------------------------ timers

    def _arm(self, kind: _Timer, at: float) -> None:
        self._timer = kind
        self.timer_at = at

    def _disarm(self) -> None:
        self._timer = _Timer.NONE
        self.timer_at = None

    def _rtt_sample(self, rtt: float) -> None:
        # RFC 6298 §2.
        if self._srtt is None:
            self._srtt = rtt
            self._rttvar = rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self._rto = min(MAX_RTO, max(MIN_RTO, self._srtt + 4 * self._rttvar))

    @property
    def wakeup_at(self) -> float | None:
        """The earlier of ``timer_at`` and the delayed ACK's deadline."""
        at, ack_at = self.timer_at, self.ack_deadline
        if at is None or (ack_at is not None and ack_at < at):
            return ack_at
        return at

    def on_timer(self, now: float) -> None:
        """Called by the stack when ``wakeup_at`` has passed."""
        if self.ack_deadline is not None and now >= self.ack_deadline:
            self.flush_delayed_ack()
        kind = self._timer
        if self.timer_at is None or now < self.timer_at:
            return
        if kind is _Timer.TIME_WAIT:
            self._disarm()
            self._close(notify=True)
            return
        if kind is _Timer.PERSIST:
            self._segment(seq_add(self.snd_una, -1), ACK, b"")
            self._rto = min(MAX_RTO, self._rto * 2)
            self._arm(_Timer.PERSIST, now + self._rto)
            return
        if kind is not _Timer.RETRANSMIT:
            return
        self._retries += 1
        handshake = self.state in (TCPState.SYN_RECEIVED, TCPState.SYN_SENT)
        limit = MAX_SYN_RETRIES if handshake else MAX_RETRIES
        if self._retries > limit:
            self._reset_event()
            self.abort()
            return
        self._rto = min(MAX_RTO, self._rto * 2)
        self._rtt_seq = None
        self._dupacks = 0
        if self.state is TCPState.SYN_RECEIVED:
            self._send_synack()
            self._arm(_Timer.RETRANSMIT, now + self._rto)
            return
        if self.state is TCPState.SYN_SENT:
            if self.guest_mac:
                self._send_syn()
            self._arm(_Timer.RETRANSMIT, now + self._rto)
            return
        # Go back N: everything unacknowledged goes out again.
        self.snd_nxt = self.snd_una
        self._fin_sent = False
        self._disarm()
        self._transmit(now)

    def _reset_event(self) -> None:
        """Tell the driver about a reset, unless it already forgot the flow."""
        if not self._notified_closed:
            self._events.append(TCPReset(self.flow))

    def _enter_time_wait(self, now: float) -> None:
        self.state = TCPState.TIME_WAIT
        self._arm(_Timer.TIME_WAIT, now + TIME_WAIT_SECONDS)
        self._notify_closed()

    def _notify_closed(self) -> None:
        if not self._notified_closed:
            self._notified_closed = True
            self._events.append(FlowClosed(self.flow))

    def _close(self, *, notify: bool) -> None:
        self.state = TCPState.CLOSED
        self._disarm()
        self.snd_buf.clear()
        self._ooo.clear()
        if notify:
            self._notify_closed()

    @property
    def finished(self) -> bool:
        """True once the stack may drop this connection from its table."""
        return self.state is TCPState.CLOSED
