# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon's settings: where the network namespace is, which TAP, which fds.

``DaemonConfig`` is what the command line turns into; it embeds the
``StackConfig`` that the sans-IO stack runs with.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from slirpy.stack.config import StackConfig


class NetnsType(enum.Enum):
    """How the first positional argument names the network namespace."""

    PID = "pid"
    """A process id: ``/proc/PID/ns/net`` (and ``/proc/PID/ns/user``)."""
    PATH = "path"
    """A path to a network namespace file, e.g. ``/run/user/1000/netns/X``."""
    TAPFD = "tapfd"
    """An inherited, already open ``/dev/net/tun`` file descriptor."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """One ``-p/--publish [IP:]HOST:GUEST[/udp]`` of ``slirpy -- COMMAND``."""

    proto: Literal["tcp", "udp"]
    host_addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    host_port: int
    guest_port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    """Everything the daemon needs to start; built by ``slirpy.cli``."""

    netns_type: NetnsType
    target: str
    """The PID, the namespace path, or the TAP fd number, as given."""
    tap_name: str | None
    userns_path: str | None = None
    configure: bool = False
    macaddress: bytes | None = None
    """The TAP's MAC address, set by ``configure`` (``--macaddress``)."""
    ready_fd: int | None = None
    exit_fd: int | None = None
    api_socket: str | None = None
    port_splice: bool = False
    """Port forwards splice loopback clients by default (``--port-splice``)."""
    outbound_addr: ipaddress.IPv4Address | None = None
    """Source address of every outbound IPv4 host socket (``--outbound-addr``)."""
    outbound_addr6: ipaddress.IPv6Address | None = None
    """Source address of every outbound IPv6 host socket (``--outbound-addr6``)."""
    enable_sandbox: bool = False
    """Confine the daemon once started (``--enable-sandbox``, ``slirpy.sandbox``)."""
    enable_seccomp: bool = False
    """Filter the daemon's system calls (``--enable-seccomp``, ``slirpy.seccomp``)."""
    debug: bool = False
    pcap: str | None = None
    """Write every frame on the TAP to this libpcap file (``--pcap``)."""
    command: tuple[str, ...] | None = None
    """``slirpy -- COMMAND``: run this in a namespace of its own (``slirpy.run``;
    empty: a shell); ``target`` is then filled in once that namespace exists."""
    publish: tuple[Publish, ...] = ()
    """Port forwards of ``slirpy -- COMMAND`` (``-p/--publish``)."""
    stack: StackConfig = field(default_factory=StackConfig)
