# SPDX-License-Identifier: GPL-2.0-or-later
"""The flow table: every TCP connection and UDP flow the stack knows, by key and id.

Theory of operation
===================

A flow is named twice: by its *key*, the addresses and ports as they appear
in the guest's packets, used to find the flow a frame belongs to; and by its
*id*, a small integer the driver uses for the host socket that backs it. Ids
are handed out in increasing order and never reused while the stack lives,
so a late callback about a forgotten flow can never hit a new one.

Lifecycle of a TCP flow: created by a guest SYN (``SYN-RECEIVED``, counted as
*half-open* until the driver accepts or rejects it), then synchronised, then
closing; it leaves the table when its connection reports ``finished``.
Lifecycle of a UDP flow (one per guest address and port, as libslirp keeps
one host socket per guest socket): created by the first datagram, refreshed
by every datagram either way, removed when idle past its timeout or evicted
(oldest activity first) when the table is full.

Timers: the table keeps one heap of ``(deadline, flow id)``. Entries are never
removed early; a popped entry whose flow is gone or whose deadline moved is
skipped or pushed again with the real deadline, so re-arming a timer on every
ACK costs nothing unless it moves earlier. When stale entries outnumber the
live ones the heap is rebuilt, so its size stays proportional to the flows.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

from slirpy.stack.tcp.connection import TCPConnection

TCPKey = tuple[bytes, int, bytes, int]
"""(guest address, guest port, remote address as the guest sees it, remote port)."""
UDPKey = tuple[bytes, int] | tuple[bytes, int, bytes, int] | tuple[bytes, int, str]
"""(guest address, guest port) for a UDP flow the guest opened; (guest address,
guest port, client address as the guest sees it, client port) for a UDP flow
of a port forward; (guest address, echo identifier, ``"icmp"``) for pings."""

_MAX_UDP_PEERS = 64
_HEAP_SLACK = 1024


def endpoint(addr: bytes, port: int) -> str:
    """``10.0.2.100:45678`` or ``[fd00::1]:443``: the one way flows are printed."""
    ip = ipaddress.ip_address(addr)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


@dataclass(slots=True, eq=False)
class UDPFlow:
    """One guest UDP socket (or echo identifier) and the host-side peers it has
    talked to."""

    flow: int
    key: UDPKey
    guest_ip: bytes
    guest_port: int
    guest_mac: bytes
    last_active: float
    timeout: float
    peers: OrderedDict[tuple[bytes, int], bytes] = field(default_factory=OrderedDict)
    """Host-side (address, port) → the guest-side address it stands for."""

    def remember_peer(self, host: tuple[bytes, int], guest_side: bytes) -> None:
        peers = self.peers
        if host in peers:
            peers.move_to_end(host)
        else:
            peers[host] = guest_side
            if len(peers) > _MAX_UDP_PEERS:
                peers.popitem(last=False)

    @property
    def expires_at(self) -> float:
        return self.last_active + self.timeout


class FlowTable:
    """TCP and UDP flows by key and by id, the half-open set and the timer heap."""

    __slots__ = (
        "_heap",
        "_ids",
        "_scheduled",
        "half_open",
        "tcp_by_id",
        "tcp_by_key",
        "udp_by_id",
        "udp_by_key",
    )

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.tcp_by_key: dict[TCPKey, TCPConnection] = {}
        self.tcp_by_id: dict[int, TCPConnection] = {}
        self.udp_by_key: OrderedDict[UDPKey, UDPFlow] = OrderedDict()
        self.udp_by_id: dict[int, UDPFlow] = {}
        self.half_open: dict[int, None] = {}
        """Guest connections not yet established (connecting to the host, or
        SYN-ACK sent), oldest first."""
        self._heap: list[tuple[float, int]] = []
        self._scheduled: dict[int, float] = {}

    def new_id(self) -> int:
        return next(self._ids)

    # ------------------------------------------------------------------- TCP

    def add_tcp(self, key: TCPKey, conn: TCPConnection, *, half_open: bool) -> None:
        self.tcp_by_key[key] = conn
        self.tcp_by_id[conn.flow] = conn
        if half_open:
            self.half_open[conn.flow] = None

    def remove_tcp(self, conn: TCPConnection) -> None:
        key = (conn.guest_ip, conn.guest_port, conn.remote_ip, conn.remote_port)
        if self.tcp_by_key.get(key) is conn:
            del self.tcp_by_key[key]
        self.tcp_by_id.pop(conn.flow, None)
        self.half_open.pop(conn.flow, None)
        self._scheduled.pop(conn.flow, None)

    # ------------------------------------------------------------------- UDP

    def add_udp(self, flow: UDPFlow) -> None:
        self.udp_by_key[flow.key] = flow
        self.udp_by_id[flow.flow] = flow
        self.schedule(flow.flow, flow.expires_at)

    def touch_udp(self, flow: UDPFlow, now: float) -> None:
        flow.last_active = now
        self.udp_by_key.move_to_end(flow.key)

    def oldest_udp(self) -> UDPFlow | None:
        for flow in self.udp_by_key.values():
            return flow
        return None

    def remove_udp(self, flow: UDPFlow) -> None:
        if self.udp_by_key.get(flow.key) is flow:
            del self.udp_by_key[flow.key]
        self.udp_by_id.pop(flow.flow, None)
        self._scheduled.pop(flow.flow, None)

    # ------------------------------------------------------------- reporting

    def describe(self) -> list[dict[str, object]]:
        """Every flow as a JSON object: id, protocol, both ends, state."""
        found: list[dict[str, object]] = [
            {
                "id": conn.flow,
                "proto": "tcp",
                "guest": endpoint(conn.guest_ip, conn.guest_port),
                "remote": endpoint(conn.remote_ip, conn.remote_port),
                "state": conn.state.value,
                "inbound": conn.inbound,
            }
            for conn in self.tcp_by_id.values()
        ]
        for flow in self.udp_by_id.values():
            key = flow.key
            proto = "icmp" if len(key) == 3 else "udp"
            item: dict[str, object] = {
                "id": flow.flow,
                "proto": proto,
                "guest": endpoint(flow.guest_ip, flow.guest_port),
                "inbound": len(key) == 4,
            }
            if len(key) == 4:
                item["remote"] = endpoint(key[2], key[3])
            found.append(item)
        return sorted(found, key=lambda item: int(str(item["id"])))

    # ----------------------------------------------------------------- timers

    def schedule(self, flow: int, at: float) -> None:
        """Make sure the heap wakes up for ``flow`` no later than ``at``."""
        current = self._scheduled.get(flow)
        if current is not None and current <= at:
            return
        self._scheduled[flow] = at
        heap = self._heap
        heapq.heappush(heap, (at, flow))
        if len(heap) > 2 * len(self._scheduled) + _HEAP_SLACK:
            # Entries of forgotten flows linger until their deadline; a guest
            # churning through flows must not grow the heap with them.
            heap[:] = [(when, fid) for fid, when in self._scheduled.items()]
            heapq.heapify(heap)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and self._scheduled.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[int]:
        """Flow ids whose scheduled wake-up is at or before ``now``."""
        due: list[int] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, flow = heapq.heappop(heap)
            if self._scheduled.get(flow) == at:
                del self._scheduled[flow]
                due.append(flow)
        return due
