# SPDX-License-Identifier: GPL-2.0-or-later
"""The one asyncio driver of the sans-IO stack: TAP in, events out, one timer.

Each time the TAP is readable the driver drains it (up to a batch of frames,
until ``EAGAIN``) into ``Stack.receive_frame``; then, and after every host
socket callback (batched into one ``call_soon`` per loop iteration), it
*processes*: acts on the stack's events by opening, writing, half-closing or
closing host sockets, writes the stack's frames to the TAP, and re-arms the
single ``call_at`` timer at ``Stack.next_timer()``.

With ``--pcap`` a ``FrameCapture`` gets a copy of every frame read from and
written to the TAP; without it the only cost is one attribute check per batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from typing import Protocol

from slirpy.proxy.forward import HostForwarder, SocketFactory
from slirpy.proxy.tcp import HostTCP, connect, tune_allocator
from slirpy.proxy.udp import HostPing, HostUDP
from slirpy.stack.events import (
    Event,
    FlowClosed,
    PingRequest,
    TCPConnected,
    TCPConnectRequest,
    TCPData,
    TCPEof,
    TCPReset,
    TCPWritable,
    UDPDatagram,
)
from slirpy.stack.framing import Frame
from slirpy.stack.stack import Stack

log = logging.getLogger(__name__)

_READ_BATCH = 256
_READ_SIZE = 65536 + 256
_TIMER_SLACK = 0.001
"""Added to every deadline: uvloop's clock and timers count whole
milliseconds, and a deadline less than half of one ahead would run at once,
before ``loop.time()`` reaches it, and find nothing due: the timer would spin
until the millisecond turned."""


class FrameCapture(Protocol):
    """Gets a copy of every frame on the TAP (``slirpy.tap.pcap.PcapWriter``)."""

    def write_frames(self, frames: Sequence[bytes | memoryview]) -> None: ...


class Driver:
    """Feeds one ``Stack`` from one TAP file descriptor on one event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stack: Stack,
        tap_fd: int,
        *,
        outbound_addr: str | None = None,
        outbound_addr6: str | None = None,
        ns_sockets: SocketFactory | None = None,
        capture: FrameCapture | None = None,
    ) -> None:
        """``outbound_addr``/``outbound_addr6``: the source addresses of
        outbound IPv4/IPv6 host sockets;
        ``capture``: where copies of the TAP's frames go (``--pcap``)."""
        self.loop = loop
        self.stack = stack
        self.tap_fd = tap_fd
        self.tx_dropped = 0
        self.capture = capture
        self._source = outbound_addr
        self._source6 = outbound_addr6

        self._tcp: dict[int, HostTCP] = {}
        """Host sockets of TCP flows, connecting ones included."""
        self._udp: dict[int, HostUDP] = {}
        """Host sockets of UDP and ping flows."""
        self._ping_refused = False
        self._processing = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.forwarder = HostForwarder(loop, stack, self.kick, self._tcp, ns_sockets)

    def start(self) -> None:
        tune_allocator()
        os.set_blocking(self.tap_fd, False)
        self.loop.add_reader(self.tap_fd, self._tap_readable)

    def stop(self) -> None:
        """Stop reading the TAP and close every host socket."""
        self.loop.remove_reader(self.tap_fd)
        if self._timer is not None:
            self._timer.cancel()
        for proto in self._tcp.values():
            proto.abort()
        for host in self._udp.values():
            host.close()
        self.forwarder.close()
        self._tcp.clear()
        self._udp.clear()

    # ---------------------------------------------------------------- the TAP

    def _tap_readable(self) -> None:
        fd = self.tap_fd
        receive = self.stack.receive_frame
        if self.capture is not None:
            receive = self._receive_captured
        now = self.loop.time()
        for _ in range(_READ_BATCH):
            try:
                frame = os.read(fd, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("reading the TAP failed: %s", exc)
                break
            if not frame:
                break
            receive(frame, now)
        self.process()

    def _receive_captured(self, frame: bytes | memoryview, now: float) -> None:
        if self.capture is not None:
            self.capture.write_frames((frame,))
        self.stack.receive_frame(frame, now)

    def _write_frames(self, frames: list[Frame]) -> None:
        fd = self.tap_fd
        if self.capture is not None:
            self.capture.write_frames(
                [f if isinstance(f, bytes) else b"".join(f) for f in frames]
            )
        write, writev = os.write, os.writev
        for frame in frames:
            try:
                if isinstance(frame, bytes):
                    write(fd, frame)
                else:
                    writev(fd, frame)
            except (BlockingIOError, InterruptedError):
                self.tx_dropped += 1
            except OSError as exc:
                self.tx_dropped += 1
                if self._debug:
                    log.debug("writing the TAP failed: %s", exc)

    # ------------------------------------------------------------ processing

    def kick(self) -> None:
        """Process now: a host socket's data reaches the TAP in the same loop
        iteration. A kick while processing is picked up by that processing."""
        self.process()

    def process(self) -> None:
        if self._processing:
            return
        self._processing = True
        stack = self.stack
        try:
            while True:
                while events := stack.pop_events():
                    for event in events:
                        self._dispatch(event)
                frames = stack.drain_frames()
                if not frames:
                    break
                self._write_frames(frames)
        finally:
            self._processing = False
        self._arm_timer()

    def _arm_timer(self) -> None:
        at = self.stack.next_timer()
        current = self._timer_at
        if current is not None and (at is None or current <= at):
            # An early wake-up costs less than re-arming on every ACK: the
            # stack's deadlines mostly move later.
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self.loop.call_at(at + _TIMER_SLACK, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.stack.handle_timer(self.loop.time())
        self.process()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, TCPData):
            proto = self._tcp.get(event.flow)
            if proto is not None:
                proto.write(event.data)
        elif isinstance(event, UDPDatagram):
            self._udp_datagram(event)
        elif isinstance(event, TCPWritable):
            proto = self._tcp.get(event.flow)
            if proto is not None:
                proto.resume_reading()
        elif isinstance(event, TCPConnectRequest):
            self._tcp_connect(event)
        elif isinstance(event, TCPConnected):
            proto = self._tcp.get(event.flow)
            if proto is not None:
                proto.resume_reading()
        elif isinstance(event, TCPEof):
            proto = self._tcp.get(event.flow)
            if proto is not None:
                proto.write_eof()
        elif isinstance(event, TCPReset):
            proto = self._tcp.pop(event.flow, None)
            if proto is not None:
                proto.abort()
        elif isinstance(event, PingRequest):
            self._ping(event)
        elif isinstance(event, FlowClosed):
            self._flow_closed(event.flow)

    # ------------------------------------------------------------------- TCP

    def _tcp_connect(self, event: TCPConnectRequest) -> None:
        flow = event.flow
        if self._debug:
            log.debug(
                "tcp %s:%d -> %s:%d #%d",
                _ntop(event.src_addr),
                event.src_port,
                _ntop(event.dst_addr),
                event.dst_port,
                flow,
            )
        proto = connect(
            self.stack,
            flow,
            event.dst_addr,
            event.dst_port,
            self.loop,
            self.kick,
            *self._source_for(event.dst_addr),
        )
        if proto is not None:
            self._tcp[flow] = proto

    def _flow_closed(self, flow: int) -> None:
        proto = self._tcp.pop(flow, None)
        if proto is not None:
            proto.close()
        host = self._udp.pop(flow, None)
        if host is not None:
            host.close()
        self.forwarder.flow_closed(flow)

    # ------------------------------------------------------------------- UDP

    def _udp_datagram(self, event: UDPDatagram) -> None:
        if self.forwarder.udp_reply(event.flow, event.data):
            return
        host = self._udp.get(event.flow) or self._open_datagram(
            HostUDP, event.flow, event.dst_addr
        )
        if host is not None:
            host.send(event.data, event.dst_addr, event.dst_port)

    def _ping(self, event: PingRequest) -> None:
        host = self._udp.get(event.flow)
        if not isinstance(host, HostPing):
            host = self._open_datagram(HostPing, event.flow, event.dst_addr)
        if isinstance(host, HostPing):
            host.send_echo(event.dst_addr, event.seq, event.data)

    def _open_datagram(
        self, kind: type[HostUDP], flow: int, dst_addr: bytes
    ) -> HostUDP | None:
        """The host socket for a new UDP or ping flow; None (and the flow
        forgotten) when it cannot be opened."""
        try:
            host = kind(
                self.stack,
                flow,
                self.loop,
                self.kick,
                *self._source_for(dst_addr),
                family=_family(dst_addr),
            )
        except OSError as exc:
            if kind is not HostPing:
                log.warning("cannot open a UDP socket: %s", exc)
            elif not self._ping_refused:
                self._ping_refused = True
                log.warning(
                    "cannot open a ping socket (%s): echo requests to other "
                    "hosts are dropped; net.ipv4.ping_group_range must include "
                    "this process's group",
                    exc,
                )
            self.stack.close_flow(flow)
            return None
        self._udp[flow] = host
        return host

    def _source_for(self, addr: bytes) -> tuple[str, ...]:
        """The source address to bind an outbound socket to, if any."""
        source = self._source6 if len(addr) == 16 else self._source
        return () if source is None else (source,)


def _family(addr: bytes) -> int:
    return socket.AF_INET6 if len(addr) == 16 else socket.AF_INET


def _ntop(addr: bytes) -> str:
    return socket.inet_ntop(_family(addr), addr)
