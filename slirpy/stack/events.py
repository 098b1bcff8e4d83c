# SPDX-License-Identifier: GPL-2.0-or-later
"""What the stack tells its driver: one frozen dataclass per kind of event.

Flows are named by an integer ``flow`` id that stays unique for the life of
the stack. Addresses in events are host-side ones, already translated by the
NAT rules (the gateway becomes ``127.0.0.1``, the DNS address the upstream
resolver), as packed 4-byte ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TCPConnectRequest:
    """The guest sent a SYN: connect to ``dst_addr:dst_port`` on the host, then
    call ``Stack.accept(flow)``, or ``Stack.reject(flow, reason)`` on failure."""

    flow: int
    dst_addr: bytes
    dst_port: int
    src_addr: bytes
    """The guest's address (guest side)."""
    src_port: int


@dataclass(frozen=True, slots=True)
class TCPConnected:
    """The guest accepted a connection slirpy opened (a port forward): start
    relaying the host client's bytes."""

    flow: int


@dataclass(frozen=True, slots=True)
class TCPData:
    """In-order bytes the guest sent on ``flow``, to be written to the host socket."""

    flow: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class TCPEof:
    """The guest closed its sending side (FIN): shut the host socket's write side."""

    flow: int


@dataclass(frozen=True, slots=True)
class TCPReset:
    """The connection was reset (by the guest, or the stack gave up on it):
    abort the host socket. ``FlowClosed`` follows."""

    flow: int


@dataclass(frozen=True, slots=True)
class TCPWritable:
    """The guest acknowledged data: ``Stack.tcp_send`` has room again."""

    flow: int


@dataclass(frozen=True, slots=True)
class UDPDatagram:
    """The guest sent a datagram on ``flow`` (one flow per guest address and
    port) to ``dst_addr:dst_port`` on the host side."""

    flow: int
    dst_addr: bytes
    dst_port: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PingRequest:
    """The guest sent an ICMP echo request on ``flow`` (one flow per guest
    address and echo identifier) to ``dst_addr`` on the host side."""

    flow: int
    dst_addr: bytes
    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FlowClosed:
    """The stack forgot ``flow``: release whatever host socket backs it."""

    flow: int


Event = (
    TCPConnectRequest
    | TCPConnected
    | TCPData
    | TCPEof
    | TCPReset
    | TCPWritable
    | UDPDatagram
    | PingRequest
    | FlowClosed
)
