# SPDX-License-Identifier: GPL-2.0-or-later
"""TapDevice and the TAP ioctls, run in namespaces of the test's own.

Each test starts an nslab ``Host`` (fresh user, network, mount and PID
namespaces) and runs a script there that opens TAPs and reports what the
kernel says about them (``TUNGETIFF``, ``ip -d -j link``, ethtool's legacy
offload queries).
"""

from __future__ import annotations

import textwrap

import nslab
import pytest

_UNAVAILABLE = nslab.namespaces_unavailable()
pytestmark = pytest.mark.skipif(
    _UNAVAILABLE is not None, reason=f"namespaces unavailable: {_UNAVAILABLE}"
)

PRELUDE = """
import ctypes, fcntl, ipaddress, json, os, socket, struct, subprocess, sys
from nslab import emit
from slirpy.tap import device
from slirpy.tap.device import (
    TapError, configure_network, open_tap, set_txqueuelen, tap_from_fd, tun_get_iff
)

def sh(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

def ip(*args):
    return json.loads(sh("ip", "-j", *args) or "null")

def info(name):
    return ip("-d", "link", "show", name)[0]["linkinfo"]["info_data"]

def ethtool(name, cmd):
    # legacy ETHTOOL_G* queries through SIOCETHTOOL: 0x16 TX csum, 0x1e TSO
    val = ctypes.create_string_buffer(struct.pack("=II", cmd, 0), 8)
    ifr = struct.pack("@16sP16x", name.encode(), ctypes.addressof(val))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8946, ifr)
    return struct.unpack("=II", val.raw)[1]

def vnet_hdr_size(fd):
    return struct.unpack("=i", fcntl.ioctl(fd, device.TUNGETVNETHDRSZ, bytes(4)))[0]
"""


def run(code: str, **kwargs) -> object:
    with nslab.Host() as host:
        res = host.python(PRELUDE + textwrap.dedent(code), **kwargs)
    assert res.returncode == 0, str(res)
    return res.result


def test_open_tap_creates_with_offloads():
    r = run(
        """
        tap = open_tap("tap0", vnet_hdr=True)
        name, flags = tun_get_iff(tap.fd)
        emit({
            "repr": [tap.name, tap.vnet_hdr, tap.fileno()],
            "iff": [name, flags],
            "info": info("tap0"),
            "hdrsz": vnet_hdr_size(tap.fd),
            "csum": ethtool("tap0", 0x16),
            "tso": ethtool("tap0", 0x1e),
            "nonblock": not os.get_blocking(tap.fd),
            "cloexec": not os.get_inheritable(tap.fd),
        })
        """
    )
    name, vnet, fd = r["repr"]
    assert (name, vnet) == ("tap0", True)
    assert fd >= 0
    iff_name, flags = r["iff"]
    assert iff_name == "tap0"
    assert flags & 0x000F == 0x0002  # IFF_TAP
    assert flags & 0x1000  # IFF_NO_PI
    assert flags & 0x4000  # IFF_VNET_HDR
    assert r["info"]["type"] == "tap"
    assert r["info"]["pi"] is False
    assert r["info"]["vnet_hdr"] is True
    assert r["info"]["persist"] is False
    assert r["hdrsz"] == 10
    assert (r["csum"], r["tso"]) == (1, 1)
    assert r["nonblock"]
    assert r["cloexec"]


def test_open_tap_plain():
    r = run(
        """
        tap = open_tap("tap0", vnet_hdr=False)
        emit({
            "vnet": tap.vnet_hdr,
            "flags": tun_get_iff(tap.fd)[1],
            "info": info("tap0"),
            "tso": ethtool("tap0", 0x1e),
        })
        """
    )
    assert r["vnet"] is False
    assert not r["flags"] & 0x4000
    assert r["info"]["vnet_hdr"] is False
    assert r["tso"] == 0


def test_attach_to_existing_tap_turns_offloads_on():
    """rootlesskit creates the TAP with ``ip tuntap add``; slirpy attaches to it."""
    r = run(
        """
        sh("ip", "tuntap", "add", "name", "tap0", "mode", "tap")
        before = info("tap0")
        tap = open_tap("tap0", vnet_hdr=True)
        during = info("tap0")
        tso = ethtool("tap0", 0x1e)
        tap.close()
        after_close = info("tap0")
        plain = open_tap("tap0", vnet_hdr=False)
        emit({
            "before": before, "during": during, "after_close": after_close,
            "vnet": tap.vnet_hdr, "tso": tso, "closed": tap.closed,
            "plain": [plain.vnet_hdr, info("tap0")["vnet_hdr"]],
            "links": [link["ifname"] for link in ip("link")],
        })
        """
    )
    assert r["before"]["vnet_hdr"] is False
    assert r["before"]["persist"] is True
    assert r["vnet"] is True
    assert r["during"]["vnet_hdr"] is True
    assert r["tso"] == 1
    assert r["closed"] is True
    assert r["after_close"]["persist"] is True  # still there, ours to leave
    assert r["plain"] == [False, False]
    assert r["links"] == ["lo", "tap0"]


def test_non_persistent_tap_goes_away_on_close():
    r = run(
        """
        tap = open_tap("tap0", vnet_hdr=True)
        with tap:
            during = [link["ifname"] for link in ip("link")]
        tap.close()  # twice is fine
        emit({"during": during, "after": [link["ifname"] for link in ip("link")]})
        """
    )
    assert r == {"during": ["lo", "tap0"], "after": ["lo"]}


def test_open_tap_on_lo_fails_like_slirp4netns():
    r = run(
        """
        try:
            open_tap("lo", vnet_hdr=True)
        except TapError as exc:
            emit([str(exc), exc.errno, exc.what])
        """
    )
    assert r == ["ioctl(TUNSETIFF): Invalid argument", 22, "ioctl(TUNSETIFF)"]


def test_open_tap_without_tun_device():
    """A missing /dev/net/tun (tmpfs over /dev/net in the host's mount ns)."""
    r = run(
        """
        sh("mount", "-t", "tmpfs", "tmpfs", "/dev/net")
        try:
            open_tap("tap0", vnet_hdr=True)
        except TapError as exc:
            emit(str(exc))
        """
    )
    assert r == 'open("/dev/net/tun"): No such file or directory'


def test_long_name_is_cut_to_15_bytes():
    r = run(
        """
        tap = open_tap("abcdefghijklmnopqrstuvwxyz", vnet_hdr=True)
        emit([tap.name, [link["ifname"] for link in ip("link")]])
        """
    )
    assert r == ["abcdefghijklmno", ["lo", "abcdefghijklmno"]]


def test_name_template_is_resolved():
    r = run(
        """
        tap = open_tap("slirpy%d", vnet_hdr=True)
        emit(tap.name)
        """
    )
    assert r == "slirpy0"


def test_tap_from_fd():
    r = run(
        """
        out = {}
        with_hdr = open_tap("tapv", vnet_hdr=True)
        plain = open_tap("tapp", vnet_hdr=False)
        for key, tap in (("vnet", with_hdr), ("plain", plain)):
            fd = os.dup(tap.fd)
            os.set_blocking(fd, True)
            os.set_inheritable(fd, True)
            got = tap_from_fd(fd)
            out[key] = [got.fd == fd, got.name, got.vnet_hdr,
                        os.get_blocking(fd), os.get_inheritable(fd)]
        r, w = os.pipe()
        unattached = os.open("/dev/net/tun", os.O_RDWR)
        for key, fd in (("pipe", r), ("unattached", unattached), ("closed", 999)):
            try:
                tap_from_fd(fd)
            except TapError as exc:
                out[key] = str(exc)
        emit(out)
        """
    )
    assert r["vnet"] == [True, "tapv", True, False, False]
    assert r["plain"] == [True, "tapp", False, False, False]
    assert r["pipe"] == "ioctl(TUNGETIFF): Inappropriate ioctl for device"
    assert r["unattached"] == "ioctl(TUNGETIFF): File descriptor in bad state"
    assert r["closed"] == "ioctl(TUNGETIFF): Bad file descriptor"


def test_tap_from_fd_refuses_a_tun():
    r = run(
        """
        fd = os.open("/dev/net/tun", os.O_RDWR)
        ifr = struct.pack("=16sH22x", b"tun0", 0x0001 | 0x1000)
        fcntl.ioctl(fd, device.TUNSETIFF, ifr)
        try:
            tap_from_fd(fd)
        except TapError as exc:
            emit(str(exc))
        """
    )
    assert r.endswith(": tun0 is not a TAP device")


def test_set_txqueuelen():
    r = run(
        """
        tap = open_tap("tap0", vnet_hdr=True)
        default = ip("link", "show", "tap0")[0]["txqlen"]
        ok = set_txqueuelen("tap0")
        emit([default, ok, ip("link", "show", "tap0")[0]["txqlen"],
              set_txqueuelen("nosuchdev")])
        """
    )
    default, ok, qlen, missing = r
    assert default < 10000
    assert ok is True
    assert qlen == 10000
    assert missing is False


def test_configure_network():
    r = run(
        """
        sh("ip", "link", "set", "lo", "down")
        tap = open_tap("tap0", vnet_hdr=True)
        configure_network(
            "tap0", mtu=65520,
            address=ipaddress.IPv4Interface("10.0.135.228/25"),
            gateway=ipaddress.IPv4Address("10.0.135.130"),
        )
        emit({"addr": ip("addr"), "route": ip("route")})
        """
    )
    links = {link["ifname"]: link for link in r["addr"]}
    assert "UP" in links["lo"]["flags"]
    tap = links["tap0"]
    assert "UP" in tap["flags"]
    assert "MULTICAST" in tap["flags"]  # kept, unlike slirp4netns
    assert tap["mtu"] == 65520
    inet = [a for a in tap["addr_info"] if a["family"] == "inet"]
    assert [(a["local"], a["prefixlen"], a.get("broadcast")) for a in inet] == [
        ("10.0.135.228", 25, "10.0.135.255")
    ]
    routes = {(rt["dst"], rt.get("gateway"), rt["dev"]) for rt in r["route"]}
    assert routes == {
        ("default", "10.0.135.130", "tap0"),
        ("10.0.135.128/25", None, "tap0"),
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            'configure_network("nosuch", mtu=1500, address=A, gateway=G)',
            "cannot set device up: No such device",
        ),
        (
            'configure_network("tap0", mtu=40, address=A, gateway=G)',
            "cannot set MTU: Invalid argument",
        ),
        (
            'configure_network("tap0", mtu=1500, address=A,'
            ' gateway=ipaddress.IPv4Address("192.0.2.1"))',
            "set route: Network is unreachable",
        ),
    ],
    ids=["no-device", "bad-mtu", "unreachable-gateway"],
)
def test_configure_network_failures(call, message):
    r = run(
        f"""
        A = ipaddress.IPv4Interface("10.0.2.100/24")
        G = ipaddress.IPv4Address("10.0.2.2")
        tap = open_tap("tap0", vnet_hdr=True)
        try:
            {call}
        except TapError as exc:
            emit(str(exc))
        """
    )
    assert r == message
