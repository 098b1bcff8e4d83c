# SPDX-License-Identifier: GPL-2.0-or-later
"""``--pcap FILE``: every frame on the TAP, both directions, in a libpcap file.

This module owns ``PcapWriter``, a minimal writer of the classic libpcap
format that tcpdump, tshark and Wireshark read: a 24-byte file header
(``LINKTYPE_ETHERNET``, snaplen 65535, microsecond timestamps, written in the
host's byte order as libpcap does; readers tell the order by the magic
number), then for each frame a 16-byte record header (seconds, microseconds,
captured length, original length) and the frame itself.

The driver hands frames over exactly as they cross the TAP. When the TAP
carries the ``virtio_net_hdr`` (``slirpy.tap.vnet``) those 10 bytes are
stripped, so the file holds plain Ethernet frames. A super-frame that the
kernel segments on its way to the guest (or coalesced on its way out) is
written as the one big frame, as a capture on the TAP inside the namespace
would show it, and its TCP checksum is the partial one the kernel completes.

Each call writes its records with one ``writev``, unbuffered: nothing is lost
when the daemon is killed, and the file can be read while it grows. A write
error (a full disk) is logged once and ends the capture; it never stops the
daemon.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Sequence
from typing import Final

from slirpy.tap.vnet import VNET_HDR_LEN

log = logging.getLogger(__name__)

MAGIC: Final = 0xA1B2C3D4
"""Microsecond timestamps (``0xA1B23C4D`` would mean nanoseconds)."""
VERSION: Final = (2, 4)
SNAPLEN: Final = 65535
LINKTYPE_ETHERNET: Final = 1

FILE_HEADER: Final = struct.Struct("=IHHiIII")
"""``magic, version_major, version_minor, thiszone, sigfigs, snaplen, network``."""
RECORD_HEADER: Final = struct.Struct("=IIII")
"""``ts_sec, ts_usec, incl_len, orig_len``."""

_IOV_MAX: Final = 1024
"""Buffers per ``writev`` (Linux's ``UIO_MAXIOV``); a record takes two."""


class PcapWriter:
    """An open capture file; ``write_frames`` appends records to it."""

    __slots__ = ("_fd", "_strip", "frames")

    def __init__(self, fd: int, *, vnet_hdr: bool = False) -> None:
        """Take over ``fd`` (open for writing) and write the file header.

        ``vnet_hdr``: every frame starts with the 10-byte ``virtio_net_hdr``,
        which is left out of the file. Raises ``OSError`` if the header cannot
        be written.
        """
        self._fd = fd
        self._strip = VNET_HDR_LEN if vnet_hdr else 0
        self.frames = 0
        """Records written so far."""
        header = FILE_HEADER.pack(MAGIC, *VERSION, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)
        _write_all(fd, [header])

    @classmethod
    def create(cls, path: str, *, vnet_hdr: bool = False) -> PcapWriter:
        """Create (or truncate) ``path``, mode 0600, and write the file header."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            return cls(fd, vnet_hdr=vnet_hdr)
        except BaseException:
            os.close(fd)
            raise

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write_frame(self, frame: bytes | bytearray | memoryview) -> None:
        """Append one frame, stamped now."""
        self.write_frames((frame,))

    def write_frames(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append ``frames``, all stamped with the current time."""
        if self._fd < 0:
            return
        stamp = time.time()
        sec = int(stamp)
        usec = min(int((stamp - sec) * 1_000_000), 999_999)
        strip = self._strip
        pack = RECORD_HEADER.pack
        buffers: list[bytes | memoryview] = []
        for frame in frames:
            data = memoryview(frame)[strip:]
            size = len(data)
            if size > SNAPLEN:
                data = data[:SNAPLEN]
            buffers.append(pack(sec, usec, len(data), size))
            buffers.append(data)
        try:
            _write_all(self._fd, buffers)
        except OSError as exc:
            log.warning("writing the capture file failed, capture stopped: %s", exc)
            self.close()
            return
        self.frames += len(buffers) // 2

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def _write_all(fd: int, buffers: Sequence[bytes | memoryview]) -> None:
    """``writev`` every byte of ``buffers``, resuming after short writes."""
    pending = [memoryview(buf).cast("B") for buf in buffers]
    start = 0
    while start < len(pending):
        chunk = pending[start : start + _IOV_MAX]
        try:
            written = os.writev(fd, chunk)
        except InterruptedError:
            continue
        for buf in chunk:
            if written < len(buf):
                pending[start] = buf[written:]
                break
            written -= len(buf)
            start += 1
