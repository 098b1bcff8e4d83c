# SPDX-License-Identifier: GPL-2.0-or-later
"""The catalogue of bad inputs (``shared/design/security.md`` §6) as guest frames.

Each :class:`Case` is one Ethernet frame a hostile guest could put on the TAP
and the drop counters of ``slirpy.stack.stats.Stats`` it must move, exactly,
in a fresh stack (every counter not named must stay put, ``rx_frames`` and
``tx_frames`` aside).  The frames are built here byte by byte, with no code
from slirpy, so a length the stack gets wrong cannot cancel itself out.

The same cases feed three consumers: ``tests/stack/test_hostile.py`` (the
sans-IO core, exact counters), ``tests/e2e/test_e2e_hostile.py`` (the real
TAP, from a raw packet socket in the container: the counters must grow by at
least as much) and the seed corpus of ``fuzz_receive_frame.py``.

``profile`` says which daemon a case needs: ``default``; ``ipv6`` (``-6``);
``noloop`` (``--disable-host-loopback -6``, the policy cases).  ``tap`` is
False for frames the kernel will not send from a packet socket (shorter than
the Ethernet header).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

GW_MAC = bytes.fromhex("52550a000202")
DNS_MAC = bytes.fromhex("52550a000203")
ROUTER_MAC = bytes.fromhex("525600000002")
BROADCAST = b"\xff" * 6
DEFAULT_GUEST_MAC = bytes.fromhex("02aabbccddee")

GUEST = "10.0.2.100"
GATEWAY = "10.0.2.2"
DNS = "10.0.2.3"
GUEST6 = "fd00::100"
ROUTER_LL = "fe80::2"
HOST6 = "fd00::2"
DNS6 = "fd00::3"
REMOTE = "198.18.0.2"
"""An ordinary outside address (the e2e lab's remote host)."""

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
ETH_NCSI = 0x88F8

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG = 1, 2, 4, 8, 16, 32


# ------------------------------------------------------------------ bytes


def addr(text: str) -> bytes:
    """A literal IPv4 or IPv6 address, packed."""
    return ipaddress.ip_address(text).packed


def checksum(data: bytes) -> int:
    """RFC 1071, written out plainly."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 16:
        return src + dst + struct.pack("!IxxxB", length, proto)
    return src + dst + struct.pack("!xBH", proto, length)


def eth(etype: int, payload: bytes, *, src: bytes, dst: bytes = GW_MAC) -> bytes:
    return dst + src + struct.pack("!H", etype) + payload


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    ihl: int = 5,
    tot_len: int | None = None,
    version: int = 4,
    frag: int = 0x4000,
    ident: int = 1,
    options: bytes = b"",
) -> bytes:
    """An IPv4 packet; every length field can lie."""
    options = options.ljust(max(0, ihl - 5) * 4, b"\x00")
    length = 20 + len(options) + len(payload) if tot_len is None else tot_len
    head = struct.pack(
        "!BBHHHBBH4s4s",
        (version << 4) | (ihl & 0x0F),
        0,
        length & 0xFFFF,
        ident,
        frag,
        64,
        proto,
        0,
        addr(src),
        addr(dst),
    )
    head = head[:10] + struct.pack("!H", checksum(head + options)) + head[12:]
    return head + options + payload


def ipv6(
    src: str,
    dst: str,
    nh: int,
    payload: bytes,
    *,
    payload_len: int | None = None,
    version: int = 6,
    hop_limit: int = 64,
) -> bytes:
    length = len(payload) if payload_len is None else payload_len
    head = struct.pack(
        "!IHBB16s16s", version << 28, length, nh, hop_limit, addr(src), addr(dst)
    )
    return head + payload


def udp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes,
    *,
    length: int | None = None,
) -> bytes:
    """A UDP header and payload with a correct checksum unless ``length`` lies."""
    n = 8 + len(payload) if length is None else length
    seg = struct.pack("!HHHH", sport, dport, n & 0xFFFF, 0) + payload
    if length is None:
        csum = checksum(pseudo(addr(src), addr(dst), 17, len(seg)) + seg) or 0xFFFF
        seg = seg[:6] + struct.pack("!H", csum) + seg[8:]
    return seg


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    *,
    seq: int = 1000,
    ack: int = 0,
    flags: int = TCP_SYN,
    window: int = 64240,
    options: bytes = b"",
    offset: int | None = None,
    urgent: int = 0,
    payload: bytes = b"",
) -> bytes:
    """A TCP segment; ``options`` are padded to 4 bytes unless ``offset`` is given."""
    if offset is None:
        options = options + b"\x00" * (-len(options) % 4)
        offset = 5 + len(options) // 4
    seg = (
        struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            (offset & 0x0F) << 4,
            flags,
            window,
            0,
            urgent,
        )
        + options
        + payload
    )
    csum = checksum(pseudo(addr(src), addr(dst), 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def mss(value: int) -> bytes:
    return struct.pack("!BBH", 2, 4, value)


def wscale(value: int) -> bytes:
    return struct.pack("!BBBB", 1, 3, 3, value)


def icmp_echo(ident: int, seq: int, payload: bytes, *, typ: int = 8) -> bytes:
    msg = struct.pack("!BBHHH", typ, 0, 0, ident, seq) + payload
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


def icmpv6(src: str, dst: str, typ: int, body: bytes, code: int = 0) -> bytes:
    msg = struct.pack("!BBH", typ, code, 0) + body
    csum = checksum(pseudo(addr(src), addr(dst), 58, len(msg)) + msg)
    return msg[:2] + struct.pack("!H", csum) + msg[4:]


def dhcp(
    mac: bytes,
    options: bytes,
    *,
    op: int = 1,
    hlen: int = 6,
    magic: bytes = b"\x63\x82\x53\x63",
) -> bytes:
    """A BOOTP message with ``options`` after the magic cookie, as they are."""
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op,
        1,
        hlen,
        0,
        0x1234ABCD,
        0,
        0x8000,
        b"\x00" * 4,
        b"\x00" * 4,
        b"\x00" * 4,
        b"\x00" * 4,
        mac.ljust(16, b"\x00"),
        b"",
        b"",
    )
    return head + magic + options


def dhcp_frame(
    mac: bytes,
    options: bytes,
    *,
    op: int = 1,
    hlen: int = 6,
    magic: bytes = b"\x63\x82\x53\x63",
    chaddr: bytes | None = None,
) -> bytes:
    """A DHCP request from ``mac`` (``chaddr`` too unless given), broadcast."""
    msg = dhcp(
        mac if chaddr is None else chaddr, options, op=op, hlen=hlen, magic=magic
    )
    payload = udp("0.0.0.0", "255.255.255.255", 68, 67, msg)
    return eth(
        ETH_IPV4,
        ipv4("0.0.0.0", "255.255.255.255", 17, payload),
        src=mac,
        dst=BROADCAST,
    )


DISCOVER = b"\x35\x01\x01"
"""Option 53 (message type) = DISCOVER."""


# ------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Case:
    """One hostile frame and what the stack must count for it."""

    cls: str
    name: str
    frame: bytes
    counters: dict[str, int]
    profile: str = "default"
    tap: bool = True
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.cls}/{self.name}"


def catalogue(mac: bytes = DEFAULT_GUEST_MAC, port: int = 7777) -> list[Case]:
    """Every case, for a guest whose MAC is ``mac``; ``port`` is the host-side
    port the policy cases aim at (a test listens there on host loopback)."""
    cases: list[Case] = []

    def add(
        cls: str,
        name: str,
        frame: bytes,
        profile: str = "default",
        tap: bool = True,
        **counters: int,
    ) -> None:
        cases.append(Case(cls, name, frame, counters, profile, tap))

    def v4(payload: bytes, *, dst_mac: bytes = GW_MAC) -> bytes:
        return eth(ETH_IPV4, payload, src=mac, dst=dst_mac)

    def v6(payload: bytes, *, dst_mac: bytes = ROUTER_MAC) -> bytes:
        return eth(ETH_IPV6, payload, src=mac, dst=dst_mac)

    def tcp4(dst: str, dport: int, **kw: object) -> bytes:
        seg = tcp(GUEST, dst, 40000, dport, **kw)  # type: ignore[arg-type]
        return ipv4(GUEST, dst, 6, seg)

    def udp4(dst: str, dport: int, payload: bytes = b"hostile", **kw: int) -> bytes:
        return ipv4(GUEST, dst, 17, udp(GUEST, dst, 40000, dport, payload, **kw))

    # -- Ethernet: short frames, unknown ethertypes (CVE-2020-29129/29130)
    add("ethernet", "empty", b"", tap=False, rx_truncated=1)
    add("ethernet", "13-bytes", (GW_MAC + mac)[:13], tap=False, rx_truncated=1)
    add("ethernet", "ipv4-header-only", eth(ETH_IPV4, b"", src=mac), rx_truncated=1)
    add(
        "ethernet",
        "ncsi-short",
        eth(ETH_NCSI, b"\x01", src=mac),
        rx_unknown_ethertype=1,
    )
    add(
        "ethernet",
        "ncsi-long",
        eth(ETH_NCSI, bytes(range(64)), src=mac, dst=BROADCAST),
        rx_unknown_ethertype=1,
    )
    add(
        "ethernet",
        "vlan",
        eth(0x8100, b"\x00\x05\x08\x00" + bytes(40), src=mac),
        rx_unknown_ethertype=1,
    )
    add("ethernet", "ethertype-0", eth(0, bytes(46), src=mac), rx_unknown_ethertype=1)
    add(
        "ethernet",
        "group-source-mac",
        eth(ETH_IPV4, icmp_echo(1, 1, b"x"), src=b"\x01" + mac[1:]),
        rx_malformed=1,
    )
    add("ethernet", "ipv6-without-6", v6(bytes(60)), rx_ipv6=1)
    add(
        "ethernet",
        "ipv4-not-for-us",
        v4(udp4(REMOTE, 9), dst_mac=bytes.fromhex("020000000001")),
        rx_not_for_us=1,
    )

    # -- ARP shorter than its 28 bytes, or not IPv4 over Ethernet
    arp_ok = struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, addr(GUEST), bytes(6), addr(GATEWAY)
    )
    add("arp", "empty", eth(ETH_ARP, b"", src=mac, dst=BROADCAST), rx_truncated=1)
    add(
        "arp",
        "27-bytes",
        eth(ETH_ARP, arp_ok[:27], src=mac, dst=BROADCAST),
        rx_truncated=1,
    )
    add(
        "arp",
        "8-bytes",
        eth(ETH_ARP, arp_ok[:8], src=mac, dst=BROADCAST),
        rx_truncated=1,
    )
    add(
        "arp",
        "hlen-16",
        eth(ETH_ARP, arp_ok[:4] + b"\x10" + arp_ok[5:], src=mac, dst=BROADCAST),
        rx_malformed=1,
    )
    add(
        "arp",
        "ptype-ipv6",
        eth(ETH_ARP, arp_ok[:2] + b"\x86\xdd" + arp_ok[4:], src=mac, dst=BROADCAST),
        rx_malformed=1,
    )

    # -- IPv4 length fields (IHL, total length, version)
    ping = icmp_echo(0x4242, 1, b"abcdefgh")
    add("ipv4", "10-bytes", v4(ipv4(GUEST, GATEWAY, 1, ping)[:10]), rx_truncated=1)
    add("ipv4", "ihl-4", v4(ipv4(GUEST, GATEWAY, 1, ping, ihl=4)), rx_malformed=1)
    add("ipv4", "ihl-0", v4(ipv4(GUEST, GATEWAY, 1, ping, ihl=0)), rx_malformed=1)
    add(
        "ipv4",
        "ihl-15-beyond-frame",
        v4(ipv4(GUEST, GATEWAY, 1, b"", ihl=15)[:40]),
        rx_truncated=1,
    )
    add(
        "ipv4",
        "ihl-15-tot-len-short",
        v4(ipv4(GUEST, GATEWAY, 1, ping, ihl=15, tot_len=40)),
        rx_malformed=1,
    )
    add(
        "ipv4",
        "tot-len-beyond-frame",
        v4(ipv4(GUEST, GATEWAY, 1, ping, tot_len=1400)),
        rx_truncated=1,
    )
    add(
        "ipv4",
        "tot-len-65535",
        v4(ipv4(GUEST, GATEWAY, 1, ping, tot_len=65535)),
        rx_truncated=1,
    )
    add(
        "ipv4",
        "tot-len-below-header",
        v4(ipv4(GUEST, GATEWAY, 1, ping, tot_len=19)),
        rx_malformed=1,
    )
    add(
        "ipv4",
        "version-6",
        v4(ipv4(GUEST, GATEWAY, 1, ping, version=6)),
        rx_malformed=1,
    )
    add(
        "ipv4",
        "unknown-protocol",
        v4(ipv4(GUEST, REMOTE, 47, bytes(24))),
        rx_unknown_protocol=1,
    )

    # -- ICMP shorter than its header
    add("icmp", "4-bytes", v4(ipv4(GUEST, GATEWAY, 1, ping[:4])), rx_truncated=1)
    add("icmp", "0-bytes", v4(ipv4(GUEST, GATEWAY, 1, b"")), rx_truncated=1)

    # -- UDP length ≠ IP payload (CVE-2021-3593/3594)
    add(
        "udp",
        "4-bytes",
        v4(ipv4(GUEST, REMOTE, 17, b"\x9c\x40\x00\x09")),
        rx_truncated=1,
    )
    add("udp", "length-beyond-payload", v4(udp4(REMOTE, 9, length=400)), rx_truncated=1)
    add("udp", "length-65535", v4(udp4(REMOTE, 9, length=65535)), rx_truncated=1)
    add("udp", "length-below-8", v4(udp4(REMOTE, 9, length=7)), rx_malformed=1)
    add("udp", "length-0", v4(udp4(REMOTE, 9, length=0)), rx_malformed=1)
    add(
        "udp",
        "source-port-0",
        v4(ipv4(GUEST, REMOTE, 17, udp(GUEST, REMOTE, 0, 9, b"x"))),
        udp_unsupported_port=1,
    )
    add("udp", "to-dhcp-client-port", v4(udp4(REMOTE, 68)), udp_unsupported_port=1)

    # -- TCP data offset and options (parse loops must advance)
    add(
        "tcp-header",
        "12-bytes",
        v4(ipv4(GUEST, REMOTE, 6, tcp(GUEST, REMOTE, 1, 2)[:12])),
        rx_truncated=1,
    )
    add("tcp-header", "offset-4", v4(tcp4(REMOTE, 80, offset=4)), rx_malformed=1)
    add("tcp-header", "offset-0", v4(tcp4(REMOTE, 80, offset=0)), rx_malformed=1)
    add(
        "tcp-header",
        "offset-beyond-segment",
        v4(tcp4(REMOTE, 80, offset=15)),
        rx_truncated=1,
    )
    add(
        "tcp-header",
        "syn-to-port-0",
        v4(tcp4(REMOTE, 0)),
        tcp_segments=1,
        rx_malformed=1,
    )
    for name, opts in (
        ("option-length-0", b"\x02\x00\x05\xb4"),
        ("option-length-1", b"\x08\x01\x00\x00"),
        ("option-overruns", b"\x02\x04\x05\xb4\x08\x28\x00\x00"),
        ("option-no-length-byte", b"\x01\x01\x01\x02"),
        ("unknown-option-overruns", b"\xfe\xff\x00\x00"),
    ):
        add("tcp-options", name, v4(tcp4(REMOTE, 80, options=opts)), rx_malformed=1)
    # Accepted but sanitised (window scale clamped to 14, MSS 0 ignored): the
    # SYN becomes a connection request.
    add(
        "tcp-options",
        "wscale-200",
        v4(tcp4(REMOTE, 80, options=mss(1460) + wscale(200))),
        tcp_segments=1,
    )
    add(
        "tcp-options",
        "wscale-15",
        v4(tcp4(REMOTE, 80, options=wscale(15))),
        tcp_segments=1,
    )
    add("tcp-options", "mss-0", v4(tcp4(REMOTE, 80, options=mss(0))), tcp_segments=1)
    add(
        "tcp-options",
        "eol-then-garbage",
        v4(tcp4(REMOTE, 80, options=b"\x00\xff\xff\xff")),
        tcp_segments=1,
    )

    # -- TCP flag combinations on no connection: answered with an RST
    add(
        "tcp-flags",
        "syn-fin",
        v4(tcp4(REMOTE, 80, flags=TCP_SYN | TCP_FIN)),
        tcp_segments=1,
        tcp_rst_sent=1,
    )
    add(
        "tcp-flags",
        "syn-with-payload",
        v4(tcp4(REMOTE, 80, payload=b"data in the SYN")),
        tcp_segments=1,
    )
    add(
        "tcp-flags",
        "rst-unknown",
        v4(tcp4(REMOTE, 80, flags=TCP_RST, seq=12345)),
        tcp_segments=1,
    )
    add(
        "tcp-flags",
        "null-flags",
        v4(tcp4(REMOTE, 80, flags=0)),
        tcp_segments=1,
        tcp_rst_sent=1,
    )
    add("tcp-flags", "all-flags", v4(tcp4(REMOTE, 80, flags=0xFF)), tcp_segments=1)
    add(
        "tcp-flags",
        "syn-ack-unknown",
        v4(tcp4(REMOTE, 80, flags=TCP_SYN | TCP_ACK, ack=5)),
        tcp_segments=1,
        tcp_rst_sent=1,
    )
    # -- TCP urgent pointer (CVE-2026-9539) on no connection
    add(
        "tcp-urgent",
        "urg-past-segment",
        v4(tcp4(REMOTE, 80, flags=TCP_ACK | TCP_URG, urgent=0xFFFF, payload=b"abc")),
        tcp_segments=1,
        tcp_rst_sent=1,
    )
    add(
        "tcp-urgent",
        "urg-no-data",
        v4(tcp4(REMOTE, 80, flags=TCP_ACK | TCP_URG, urgent=1)),
        tcp_segments=1,
        tcp_rst_sent=1,
    )

    # -- IPv4 fragments: dropped, whatever their shape (CVE-2019-14378 & co.)
    data = udp(GUEST, REMOTE, 40000, 9, bytes(1000))
    add(
        "fragments",
        "first",
        v4(ipv4(GUEST, REMOTE, 17, data[:504], frag=0x2000)),
        rx_fragments=1,
    )
    add(
        "fragments",
        "last",
        v4(ipv4(GUEST, REMOTE, 17, data[504:], frag=63)),
        rx_fragments=1,
    )
    add(
        "fragments",
        "overlapping",
        v4(ipv4(GUEST, REMOTE, 17, data[8:512], frag=0x2001)),
        rx_fragments=1,
    )
    add(
        "fragments",
        "duplicate-first",
        v4(ipv4(GUEST, REMOTE, 17, data[:504], frag=0x2000)),
        rx_fragments=1,
    )
    add(
        "fragments",
        "offset-past-65535",
        v4(ipv4(GUEST, REMOTE, 17, bytes(800), frag=0x1FFF)),
        rx_fragments=1,
    )
    add(
        "fragments",
        "df-and-mf",
        v4(ipv4(GUEST, REMOTE, 17, data[:504], frag=0x6000)),
        rx_fragments=1,
    )
    add(
        "fragments",
        "tcp-first",
        v4(ipv4(GUEST, REMOTE, 6, tcp(GUEST, REMOTE, 40000, 80), frag=0x2000)),
        rx_fragments=1,
    )
    add(
        "fragments",
        "icmp-tiny",
        v4(ipv4(GUEST, GATEWAY, 1, ping[:8], frag=0x2000)),
        rx_fragments=1,
    )

    # -- DHCP/BOOTP (CVE-2021-3592)
    add(
        "dhcp",
        "shorter-than-bootp",
        eth(
            ETH_IPV4,
            ipv4(
                "0.0.0.0",
                "255.255.255.255",
                17,
                udp("0.0.0.0", "255.255.255.255", 68, 67, bytes(100)),
            ),
            src=mac,
            dst=BROADCAST,
        ),
        rx_truncated=1,
    )
    add(
        "dhcp",
        "option-overruns",
        dhcp_frame(mac, DISCOVER + b"\x0c\xff" + b"host"),
        rx_truncated=1,
    )
    add(
        "dhcp",
        "option-without-length",
        dhcp_frame(mac, DISCOVER + b"\x0c"),
        rx_malformed=1,
    )
    add(
        "dhcp",
        "vendor-area-truncated",
        dhcp_frame(mac, DISCOVER + b"\x2b\x40" + bytes(10)),
        rx_truncated=1,
    )
    add(
        "dhcp",
        "bad-magic",
        dhcp_frame(mac, DISCOVER + b"\xff", magic=b"\x00" * 4),
        rx_malformed=1,
    )
    add("dhcp", "hlen-16", dhcp_frame(mac, DISCOVER + b"\xff", hlen=16), rx_malformed=1)
    add(
        "dhcp",
        "no-end-option",
        dhcp_frame(mac, DISCOVER + b"\x0c\x04host"),
        dhcp_replies=1,
    )
    add(
        "dhcp",
        "giant-option-55",
        dhcp_frame(mac, DISCOVER + b"\x37\xff" + bytes(range(255)) + b"\xff"),
        dhcp_replies=1,
    )
    add("dhcp", "pad-only", dhcp_frame(mac, bytes(300)))

    # -- IPv6 lengths (CVE-2020-10756), fragments, extension headers (-6)
    echo6 = icmpv6(GUEST6, HOST6, 128, struct.pack("!HH", 7, 1) + b"ping6")
    add(
        "ipv6",
        "30-bytes",
        v6(ipv6(GUEST6, HOST6, 58, echo6)[:30]),
        "ipv6",
        rx_truncated=1,
    )
    add(
        "ipv6",
        "payload-len-beyond-frame",
        v6(ipv6(GUEST6, HOST6, 58, echo6, payload_len=1000)),
        "ipv6",
        rx_truncated=1,
    )
    add(
        "ipv6",
        "payload-len-65535",
        v6(ipv6(GUEST6, HOST6, 58, echo6, payload_len=65535)),
        "ipv6",
        rx_truncated=1,
    )
    add(
        "ipv6",
        "version-4",
        v6(ipv6(GUEST6, HOST6, 58, echo6, version=4)),
        "ipv6",
        rx_malformed=1,
    )
    add(
        "ipv6",
        "echo-body-2-bytes",
        v6(ipv6(GUEST6, HOST6, 58, icmpv6(GUEST6, HOST6, 128, b"\x00\x07"))),
        "ipv6",
        rx_truncated=1,
    )
    add(
        "ipv6",
        "icmpv6-2-bytes",
        v6(ipv6(GUEST6, HOST6, 58, b"\x80\x00")),
        "ipv6",
        rx_truncated=1,
    )
    add(
        "ipv6",
        "fragment-header",
        v6(
            ipv6(
                GUEST6,
                "2001:db8::1",
                44,
                struct.pack("!BBHI", 17, 0, 1, 99) + bytes(64),
            )
        ),
        "ipv6",
        rx_fragments=1,
    )
    add(
        "ipv6",
        "hop-by-hop",
        v6(ipv6(GUEST6, "2001:db8::1", 0, bytes(16))),
        "ipv6",
        rx_unknown_protocol=1,
    )
    add(
        "ipv6",
        "udp-length-beyond",
        v6(
            ipv6(
                GUEST6,
                "2001:db8::1",
                17,
                udp(GUEST6, "2001:db8::1", 40000, 9, b"x", length=300),
            )
        ),
        "ipv6",
        rx_truncated=1,
    )
    add(
        "ipv6",
        "tcp-offset-beyond",
        v6(
            ipv6(
                GUEST6,
                "2001:db8::1",
                6,
                tcp(GUEST6, "2001:db8::1", 40000, 80, offset=15),
            )
        ),
        "ipv6",
        rx_truncated=1,
    )
    add(
        "ipv6",
        "not-for-us",
        v6(ipv6(GUEST6, HOST6, 58, echo6), dst_mac=bytes.fromhex("020000000009")),
        "ipv6",
        rx_not_for_us=1,
    )

    # -- NDP options of length 0 (a loop risk) or running past the message
    def nd(typ: int, body: bytes, src: str = "fe80::100") -> bytes:
        dst = "ff02::2" if typ == 133 else ROUTER_LL
        dst_mac = b"\x33\x33\x00\x00\x00\x02" if typ == 133 else ROUTER_MAC
        msg = icmpv6(src, dst, typ, body)
        return v6(ipv6(src, dst, 58, msg, hop_limit=255), dst_mac=dst_mac)

    target = addr(ROUTER_LL)
    add(
        "ndp",
        "rs-option-length-0",
        nd(133, bytes(4) + b"\x01\x00" + mac),
        "ipv6",
        rx_malformed=1,
    )
    add(
        "ndp",
        "rs-option-overruns",
        nd(133, bytes(4) + b"\x01\x04" + mac),
        "ipv6",
        rx_truncated=1,
    )
    add(
        "ndp",
        "rs-option-half-header",
        nd(133, bytes(4) + b"\x01"),
        "ipv6",
        rx_truncated=1,
    )
    add("ndp", "rs-2-bytes", nd(133, b"\x00\x00"), "ipv6", rx_truncated=1)
    add(
        "ndp",
        "ns-option-length-0",
        nd(135, bytes(4) + target + b"\x01\x00" + mac),
        "ipv6",
        rx_malformed=1,
    )
    add(
        "ndp",
        "ns-option-overruns",
        nd(135, bytes(4) + target + b"\x01\xff" + mac),
        "ipv6",
        rx_truncated=1,
    )
    add("ndp", "ns-target-cut", nd(135, bytes(4) + target[:8]), "ipv6", rx_truncated=1)
    add(
        "ndp",
        "na-option-length-0",
        nd(136, b"\x60" + bytes(3) + addr(GUEST6) + b"\x02\x00" + mac),
        "ipv6",
        rx_malformed=1,
    )
    add(
        "ndp",
        "na-option-overruns",
        nd(136, b"\x60" + bytes(3) + addr(GUEST6) + b"\x02\x02" + mac),
        "ipv6",
        rx_truncated=1,
    )

    # -- Policy with --disable-host-loopback (and -6): never host loopback
    for name, frame, extra in (
        ("tcp-gateway", v4(tcp4(GATEWAY, port)), {"icmp_unreachable_sent": 1}),
        ("udp-gateway", v4(udp4(GATEWAY, port)), {"icmp_unreachable_sent": 1}),
        (
            "udp-limited-broadcast",
            v4(udp4("255.255.255.255", port), dst_mac=BROADCAST),
            {"icmp_unreachable_sent": 1},
        ),
        (
            "tcp-limited-broadcast",
            v4(tcp4("255.255.255.255", port), dst_mac=BROADCAST),
            {"icmp_unreachable_sent": 1},
        ),
        ("tcp-this-host", v4(tcp4("0.0.0.0", port)), {}),
        ("udp-this-host", v4(udp4("0.0.0.0", port)), {}),
        ("tcp-loopback-via-gateway", v4(tcp4("127.0.0.1", port)), {}),
        ("udp-loopback-via-gateway", v4(udp4("127.0.0.1", port)), {}),
        ("udp-loopback-net", v4(udp4("127.1.2.3", port)), {}),
        (
            "tcp-dns-other-port",
            v4(tcp4(DNS, port), dst_mac=DNS_MAC),
            {"icmp_unreachable_sent": 1},
        ),
        (
            "udp-dns-other-port",
            v4(udp4(DNS, port), dst_mac=DNS_MAC),
            {"icmp_unreachable_sent": 1},
        ),
        ("udp-subnet-broadcast", v4(udp4("10.0.2.255", port), dst_mac=BROADCAST), {}),
        (
            "udp-other-guest-address",
            v4(udp4("10.0.2.7", port)),
            {"icmp_unreachable_sent": 1},
        ),
        ("udp-multicast", v4(udp4("224.0.0.251", port)), {}),
    ):
        tcp_seen = {"tcp_segments": 1} if name.startswith("tcp") else {}
        add("policy", name, frame, "noloop", rx_policy_drop=1, **extra, **tcp_seen)
    add(
        "policy",
        "ping-loopback",
        v4(ipv4(GUEST, "127.0.0.1", 1, ping)),
        "noloop",
        icmp_echo_dropped=1,
    )
    add(
        "policy",
        "ping-this-host",
        v4(ipv4(GUEST, "0.0.0.0", 1, ping)),
        "noloop",
        icmp_echo_dropped=1,
    )

    def tcp6(dst: str) -> bytes:
        return v6(ipv6(GUEST6, dst, 6, tcp(GUEST6, dst, 40000, port)))

    def udp6(dst: str) -> bytes:
        return v6(ipv6(GUEST6, dst, 17, udp(GUEST6, dst, 40000, port, b"hostile")))

    for name, frame, unreachable in (
        ("tcp6-host", tcp6(HOST6), True),
        ("udp6-host", udp6(HOST6), True),
        ("udp6-prefix-other", udp6("fd00::5"), True),
        ("tcp6-prefix-other", tcp6("fd00::dead:beef"), True),
        ("udp6-dns-other-port", udp6(DNS6), True),
        ("udp6-loopback", udp6("::1"), False),
        ("tcp6-loopback", tcp6("::1"), False),
        ("udp6-unspecified", udp6("::"), False),
        ("udp6-v4-mapped-loopback", udp6("::ffff:127.0.0.1"), False),
        ("udp6-link-local", udp6("fe80::1"), False),
        ("udp6-multicast", udp6("ff02::1"), False),
    ):
        extra = {"icmp_unreachable_sent": 1} if unreachable else {}
        if name.startswith("tcp"):
            extra["tcp_segments"] = 1
        add("policy", name, frame, "noloop", rx_policy_drop=1, **extra)
    return cases


def by_class(cases: list[Case]) -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for case in cases:
        out.setdefault(case.cls, []).append(case)
    return out


def fragment_chains(mac: bytes, chains: int, *, dst: str = REMOTE) -> list[bytes]:
    """First fragments of ``chains`` datagrams that never complete (distinct
    IP identifications), as a flood of half-reassembled state would need."""
    data = udp(GUEST, dst, 40000, 9, bytes(1200))
    return [
        eth(ETH_IPV4, ipv4(GUEST, dst, 17, data[:1008], frag=0x2000, ident=i), src=mac)
        for i in range(chains)
    ]


def huge_fragment(mac: bytes, size: int, *, dst: str = REMOTE) -> bytes:
    """A first fragment of ``size`` IP payload bytes (beyond any preallocated
    buffer, CVE-2019-14378), rounded down to a multiple of 8."""
    size -= size % 8
    data = udp(GUEST, dst, 40000, 9, bytes(size))
    return eth(ETH_IPV4, ipv4(GUEST, dst, 17, data[:size], frag=0x2000), src=mac)
