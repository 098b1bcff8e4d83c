# SPDX-License-Identifier: GPL-2.0-or-later
"""The upstream DNS server: the first IPv4 ``nameserver`` of the host's resolv.conf.

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
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                return ipaddress.IPv4Address(fields[1])
            except ValueError:
                continue
    return None


class ResolvWatcher:
    """Caches the nameserver of one resolv.conf and notices when it changes."""

    def __init__(self, path: str = RESOLV_CONF) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self.nameserver: ipaddress.IPv4Address | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed; True if the nameserver changed."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        if stamp == self._stamp and stamp is not None:
            return False
        self._stamp = stamp
        old = self.nameserver
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                self.nameserver = parse_nameserver(f.read())
        except OSError:
            self.nameserver = None
        return self.nameserver != old
