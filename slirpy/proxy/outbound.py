# SPDX-License-Identifier: GPL-2.0-or-later
"""The source address of outbound host sockets (``--outbound-addr[6]``).

The option names an address or an interface; an interface stands for its
first address of the family (IPv4 by ``SIOCGIFADDR``, IPv6 from
``/proc/net/if_inet6``, global scope first), looked up in the daemon's own
network namespace, where the host sockets live.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from typing import Final

_SIOCGIFADDR: Final = 0x8915
_IFNAMSIZ: Final = 16
_IF_INET6: Final = "/proc/net/if_inet6"
_SCOPE_GLOBAL: Final = 0x00


def interface_ipv4(name: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of interface ``name``, or None."""
    if not name or len(name.encode()) >= _IFNAMSIZ:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            ifreq = fcntl.ioctl(
                sock.fileno(), _SIOCGIFADDR, struct.pack("16s16x", name.encode())
            )
        except OSError:
            return None
    return ipaddress.IPv4Address(ifreq[20:24])


def interface_ipv6(name: str, table: str | None = None) -> ipaddress.IPv6Address | None:
    """The first IPv6 address of interface ``name`` (global scope first), or None.

    ``table`` is the text of ``/proc/net/if_inet6`` (read when None)."""
    if table is None:
        try:
            with open(_IF_INET6, encoding="ascii") as f:
                table = f.read()
        except OSError:
            return None
    found: list[tuple[int, ipaddress.IPv6Address]] = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[5] != name:
            continue
        scope = int(fields[3], 16)
        found.append(
            (
                0 if scope == _SCOPE_GLOBAL else 1,
                ipaddress.IPv6Address(bytes.fromhex(fields[0])),
            )
        )
    if not found:
        return None
    return min(found, key=lambda item: item[0])[1]


def resolve_ipv4(value: str) -> ipaddress.IPv4Address | None:
    """``--outbound-addr``: an IPv4 literal or an interface name."""
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return interface_ipv4(value)


def resolve_ipv6(value: str) -> ipaddress.IPv6Address | None:
    """``--outbound-addr6``: an IPv6 literal or an interface name."""
    try:
        return ipaddress.IPv6Address(value)
    except ValueError:
        return interface_ipv6(value)
