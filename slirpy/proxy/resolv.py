# SPDX-License-Identifier: GPL-2.0-or-later
"""The upstream DNS servers: the first IPv4 and the first IPv6 ``nameserver``
of the host's resolv.conf.

``parse_nameserver`` is pure; ``ResolvWatcher`` re-reads the file when its
inode, size or modification time changes, as libslirp does once a second.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Final

RESOLV_CONF: Final = "/etc/resolv.conf"


def parse_nameserver(text: str) -> ipaddress.IPv4Address | None:
    """The first ``nameserver`` line holding an IPv4 address, or None."""
    for addr in _nameservers(text):
        if isinstance(addr, ipaddress.IPv4Address):
            return addr
    return None


def parse_nameserver6(text: str) -> ipaddress.IPv6Address | None:
    """The first ``nameserver`` line holding an IPv6 address (a ``%iface``
    suffix is dropped), or None."""
    for addr in _nameservers(text):
        if isinstance(addr, ipaddress.IPv6Address):
            return addr
    return None


def _nameservers(text: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                found.append(ipaddress.ip_address(fields[1].split("%", 1)[0]))
            except ValueError:
                continue
    return found


class ResolvWatcher:
    """Caches the nameserver of one resolv.conf and notices when it changes."""

    def __init__(self, path: str = RESOLV_CONF) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self.nameserver: ipaddress.IPv4Address | None = None
        self.nameserver6: ipaddress.IPv6Address | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed; True if a nameserver changed."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        if stamp == self._stamp and stamp is not None:
            return False
        self._stamp = stamp
        old = (self.nameserver, self.nameserver6)
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        self.nameserver = parse_nameserver(text)
        self.nameserver6 = parse_nameserver6(text)
        return (self.nameserver, self.nameserver6) != old
