# SPDX-License-Identifier: GPL-2.0-or-later
"""``TCPTemplate`` builds exactly the frames ``Framer.tcp`` builds, and an
IPv4 one passes the checks (scapy, checksums completed as the kernel does)."""

from __future__ import annotations

from checks import check_any
from hypothesis import given
from hypothesis import strategies as st

from slirpy.stack.config import StackConfig
from slirpy.stack.framing import Frame, Framer, TCPTemplate
from slirpy.stack.wire import tcp as tcpwire

GW_MAC = StackConfig().gateway_mac
ROUTER_MAC = StackConfig().router_mac


def _whole(frame: Frame) -> bytes:
    return frame if isinstance(frame, bytes) else b"".join(frame)


@given(
    v6=st.booleans(),
    data=st.data(),
    ports=st.tuples(st.integers(1, 65535), st.integers(1, 65535)),
    seq=st.integers(0, 2**32 - 1),
    ack=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 255),
    window=st.integers(0, 65535),
    size=st.sampled_from([0, 1, 63, 1460, 1461, 9000, 65000]),
    gso=st.sampled_from([536, 1460, 65535]),
    ident=st.integers(0, 65535),
)
def test_template_matches_framer(
    v6: bool,
    data: st.DataObject,
    ports: tuple[int, int],
    seq: int,
    ack: int,
    flags: int,
    window: int,
    size: int,
    gso: int,
    ident: int,
) -> None:
    n = 16 if v6 else 4
    mac = bytes([2]) + data.draw(st.binary(min_size=5, max_size=5))
    src = data.draw(st.binary(min_size=n, max_size=n))
    dst = data.draw(st.binary(min_size=n, max_size=n))
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    framer = Framer(GW_MAC, vnet_hdr=True, src_mac6=ROUTER_MAC, ident=ident)
    reference = Framer(GW_MAC, vnet_hdr=True, src_mac6=ROUTER_MAC, ident=ident)
    header = tcpwire.emit(ports[0], ports[1], seq, ack, flags, window)
    expected = _whole(reference.tcp(mac, src, dst, header, payload, gso))
    template = TCPTemplate(framer, mac, src, dst, *ports)
    got = _whole(template.segment(seq, ack, flags, window, payload, gso))
    assert got == expected
    if not v6:
        check_any(got, vnet=True)
