# SPDX-License-Identifier: GPL-2.0-or-later
"""DHCPv4 messages (RFC 2131, options RFC 2132): the BOOTP header and options.

``DHCPMessage.parse`` takes the UDP payload; the options walk always advances
(pad and end are one byte; every other option needs a length byte and must
fit the buffer) and stops at the end option.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Final, Self

from slirpy.stack.errors import MalformedError, TruncatedError

BOOTP_LEN: Final = 236
MAGIC_COOKIE: Final = b"\x63\x82\x53\x63"
_STRUCT: Final = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
BOOTREQUEST: Final = 1
BOOTREPLY: Final = 2
FLAG_BROADCAST: Final = 0x8000

OPT_PAD: Final = 0
OPT_SUBNET_MASK: Final = 1
OPT_ROUTER: Final = 3
OPT_DNS: Final = 6
OPT_REQUESTED_IP: Final = 50
OPT_LEASE_TIME: Final = 51
OPT_MESSAGE_TYPE: Final = 53
OPT_SERVER_ID: Final = 54
OPT_MESSAGE: Final = 56
OPT_END: Final = 255


class DHCPMessageType(enum.IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class DHCPMessage:
    op: int
    xid: int
    flags: int
    ciaddr: bytes
    chaddr: bytes
    """The client's hardware address (6 bytes)."""
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value and len(value) == 1 else None

    def option_ip(self, code: int) -> bytes | None:
        value = self.options.get(code)
        return value if value is not None and len(value) == 4 else None

    @classmethod
    def parse(cls, buf: memoryview) -> Self:
        if len(buf) < BOOTP_LEN + len(MAGIC_COOKIE):
            raise TruncatedError("DHCP message shorter than its fixed part")
        op, htype, hlen, _hops, xid, _secs, flags, ciaddr, _yi, _si, _gi, chaddr = (
            _STRUCT.unpack_from(buf)[:12]
        )
        if htype != 1 or hlen != 6:
            raise MalformedError("DHCP for something other than Ethernet")
        if bytes(buf[BOOTP_LEN : BOOTP_LEN + 4]) != MAGIC_COOKIE:
            raise MalformedError("DHCP magic cookie missing")
        return cls(
            op=op,
            xid=xid,
            flags=flags,
            ciaddr=ciaddr,
            chaddr=chaddr[:6],
            options=parse_options(buf[BOOTP_LEN + 4 :]),
        )


def parse_options(buf: memoryview) -> dict[int, bytes]:
    """The options up to the end option; the first occurrence of a code wins."""
    options: dict[int, bytes] = {}
    i = 0
    end = len(buf)
    while i < end:
        code = buf[i]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= end:
            raise MalformedError("DHCP option without a length byte")
        length = buf[i + 1]
        if i + 2 + length > end:
            raise TruncatedError("DHCP option runs past the message")
        options.setdefault(code, bytes(buf[i + 2 : i + 2 + length]))
        i += 2 + length
    return options


def emit_reply(
    *,
    xid: int,
    flags: int,
    yiaddr: bytes,
    siaddr: bytes,
    chaddr: bytes,
    options: list[tuple[int, bytes]],
) -> bytes:
    """A BOOTREPLY with the given options (message type first, then the rest)."""
    head = _STRUCT.pack(
        BOOTREPLY,
        1,
        6,
        0,
        xid,
        0,
        flags,
        b"\x00" * 4,
        yiaddr,
        siaddr,
        b"\x00" * 4,
        chaddr.ljust(16, b"\x00"),
        b"",
        b"",
    )
    body = b"".join(bytes((code, len(value))) + value for code, value in options)
    return head + MAGIC_COOKIE + body + bytes((OPT_END,))
