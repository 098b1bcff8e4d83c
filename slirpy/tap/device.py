# SPDX-License-Identifier: GPL-2.0-or-later
"""The TAP device: opening ``/dev/net/tun``, its offloads, and the interface ioctls.

This module owns ``TapDevice`` (an open TAP queue: fd, interface name, and
whether frames carry a ``virtio_net_hdr``) and every ioctl slirpy issues on a
TAP or on an interface: ``TUNSETIFF`` and friends to create or attach, the
offload negotiation, and the classic ``SIOCSIF*``/``SIOCADDRT`` calls that
``--configure`` makes inside the network namespace. Failures raise
``TapError``, whose ``str()`` is the line slirp4netns would print with
``perror``.

Offloads: opening with ``IFF_VNET_HDR`` puts a 10-byte header before every
frame in both directions; ``TUNSETOFFLOAD(CSUM|TSO4|TSO6)`` then lets the guest
kernel hand over TCP super-frames and partially checksummed frames. The header
is a property of the device (all its queues), set at ``TUNSETIFF`` time, so a
TAP someone created earlier (``ip tuntap add``) gets it on attach too. It
cannot be switched off on an attached queue; falling back means reopening.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import os
import socket
import struct
import sys
from typing import Final

from slirpy.tap.vnet import VNET_HDR_LEN

TUN_PATH: Final = "/dev/net/tun"

# linux/if_tun.h
TUNSETIFF: Final = 0x400454CA  # _IOW('T', 202, int)
TUNGETFEATURES: Final = 0x800454CF  # _IOR('T', 207, unsigned int)
TUNSETOFFLOAD: Final = 0x400454D0  # _IOW('T', 208, unsigned int)
TUNGETIFF: Final = 0x800454D2  # _IOR('T', 210, unsigned int)
TUNGETVNETHDRSZ: Final = 0x800454D7  # _IOR('T', 215, int)
TUNSETVNETHDRSZ: Final = 0x400454D8  # _IOW('T', 216, int)
TUNSETVNETLE: Final = 0x400454DC  # _IOW('T', 220, int)
IFF_TUN: Final = 0x0001
IFF_TAP: Final = 0x0002
IFF_MULTI_QUEUE: Final = 0x0100
IFF_PERSIST: Final = 0x0800
IFF_NO_PI: Final = 0x1000
IFF_VNET_HDR: Final = 0x4000
TUN_TYPE_MASK: Final = 0x000F
TUN_F_CSUM: Final = 0x01
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04
OFFLOADS: Final = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
"""What slirpy takes from the guest kernel: partial checksums and TCP super-frames."""

# linux/sockios.h, linux/if.h, linux/route.h
SIOCADDRT: Final = 0x890B
SIOCGIFFLAGS: Final = 0x8913
SIOCSIFFLAGS: Final = 0x8914
SIOCSIFADDR: Final = 0x8916
SIOCSIFNETMASK: Final = 0x891C
SIOCSIFMTU: Final = 0x8922
SIOCSIFHWADDR: Final = 0x8924
_ARPHRD_ETHER: Final = 1
SIOCSIFTXQLEN: Final = 0x8943
IFF_UP: Final = 0x1
IFF_RUNNING: Final = 0x40
RTF_UP: Final = 0x0001
RTF_GATEWAY: Final = 0x0002

IFNAMSIZ: Final = 16
DEFAULT_TXQUEUELEN: Final = 10000
"""Frames the kernel queues toward slirpy; at the default 500 UDP bursts drop."""

# struct ifreq is 40 bytes on LP64 and 32 on ILP32; the kernel reads only its
# own size, so 40-byte buffers serve both.
_IFREQ_FLAGS: Final = struct.Struct("=16sH22x")
_IFREQ_INT: Final = struct.Struct("=16si20x")
_IFREQ_ADDR: Final = struct.Struct("=16sH2s4s8x8x")
_INT: Final = struct.Struct("=i")

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h
_NETLINK_ROUTE: Final = 0
_NETLINK_TIMEOUT: Final = 5.0
_NLMSG_ERROR: Final = 2
_RTM_SETLINK: Final = 19
_NLM_F_REQUEST: Final = 0x1
_NLM_F_ACK: Final = 0x4
_IFLA_TXQLEN: Final = 13
_NLMSGHDR: Final = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG: Final = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTATTR_U32: Final = struct.Struct("=HHI")  # len, type, value
_TAP_FLAGS: Final = IFF_TAP | IFF_NO_PI


class TapError(OSError):
    """A TAP or interface call failed; ``str()`` is the perror-style line.

    ``what`` is the prefix slirp4netns prints (``ioctl(TUNSETIFF)``,
    ``cannot set MTU``, ...), followed by the error's text.
    """

    def __init__(self, what: str, err: int, detail: str | None = None) -> None:
        super().__init__(err, detail if detail is not None else os.strerror(err))
        self.what = what

    @classmethod
    def wrap(cls, what: str, exc: OSError) -> TapError:
        """The ``TapError`` for ``exc`` raised by the call named ``what``."""
        err = exc.errno if exc.errno is not None else errno.EIO
        return cls(what, err, exc.strerror)

    def __str__(self) -> str:
        return f"{self.what}: {self.strerror}"


class TapDevice:
    """An open TAP queue: its fd, its interface name and its frame format.

    ``vnet_hdr`` is true when every frame read or written carries a
    ``virtio_net_hdr`` (``slirpy.tap.vnet``) and the offloads are on. The fd is
    non-blocking and close-on-exec. The interface may live in another network
    namespace than the process holding the fd.
    """

    __slots__ = ("fd", "name", "vnet_hdr")

    fd: int
    name: str
    vnet_hdr: bool

    def __init__(self, fd: int, name: str, *, vnet_hdr: bool) -> None:
        self.fd = fd
        self.name = name
        self.vnet_hdr = vnet_hdr

    def fileno(self) -> int:
        if self.fd < 0:
            raise ValueError("TAP device is closed")
        return self.fd

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        """Close the fd (a non-persistent TAP disappears with its last fd)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> TapDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TapDevice(fd={self.fd}, name={self.name!r}, vnet_hdr={self.vnet_hdr})"


def set_nonblocking(fd: int) -> None:
    """Put ``fd`` in non-blocking mode (``O_NONBLOCK``)."""
    os.set_blocking(fd, False)


def open_tap(name: str, *, vnet_hdr: bool) -> TapDevice:
    """Create, or attach to, the TAP ``name`` in the current network namespace.

    ``name`` is cut to 15 bytes as slirp4netns does; the device's real name is
    read back. With ``vnet_hdr``, the TAP is opened with ``IFF_VNET_HDR`` and the
    offloads are switched on; if the kernel lacks the feature or refuses the
    offloads, the result is a plain TAP (``TapDevice.vnet_hdr`` says which).
    Raises ``TapError``: ``open("/dev/net/tun")`` or ``ioctl(TUNSETIFF)``.
    """
    fd = _open_tun()
    try:
        if vnet_hdr and _features(fd) & IFF_VNET_HDR:
            ifname = _set_iff(fd, name, _TAP_FLAGS | IFF_VNET_HDR)
            if enable_offloads(fd):
                return TapDevice(fd, ifname, vnet_hdr=True)
            # The header cannot be switched off on an attached queue.
            os.close(fd)
            fd = -1
            fd = _open_tun()
        ifname = _set_iff(fd, name, _TAP_FLAGS)
        return TapDevice(fd, ifname, vnet_hdr=False)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def enable_offloads(fd: int) -> bool:
    """Set a 10-byte little-endian vnet header and ``TUNSETOFFLOAD(OFFLOADS)``.

    Only for a TAP attached with ``IFF_VNET_HDR``: without the header the kernel
    would hand over super-frames nobody could tell apart. USO is not asked for.
    Returns False if the kernel refused any step.
    """
    try:
        if sys.byteorder == "big":
            fcntl.ioctl(fd, TUNSETVNETLE, _INT.pack(1))
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, _INT.pack(VNET_HDR_LEN))
        fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS)
    except OSError:
        return False
    return True


def tun_get_iff(fd: int) -> tuple[str, int]:
    """``TUNGETIFF``: the interface name and the ``IFF_*`` flags of a TUN/TAP fd."""
    try:
        ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(_IFREQ_FLAGS.size))
    except OSError as exc:
        raise TapError.wrap("ioctl(TUNGETIFF)", exc) from None
    raw_name, flags = _IFREQ_FLAGS.unpack(ifr)
    return _decode_name(raw_name), flags


def tap_from_fd(fd: int) -> TapDevice:
    """Adopt an inherited, already attached TAP fd (``--netns-type=tapfd``).

    The name and flags come from ``TUNGETIFF``. Offloads are used only if the
    fd was attached with ``IFF_VNET_HDR``; otherwise slirpy runs without them.
    The fd must have been attached with ``IFF_NO_PI``, which cannot be checked:
    ``TUNGETIFF`` reports that flag whether it was asked for or not.
    The fd is made non-blocking and close-on-exec.
    """
    name, flags = tun_get_iff(fd)
    if (flags & TUN_TYPE_MASK) != IFF_TAP:
        raise TapError(f"TAPFD {fd}", errno.EINVAL, f"{name} is not a TAP device")
    vnet_hdr = False
    if flags & IFF_VNET_HDR:
        # The header is there whatever TUNSETOFFLOAD says; only its size and
        # byte order matter for parsing frames.
        if not enable_offloads(fd) and (
            sys.byteorder == "big" or _vnet_hdr_size(fd) != VNET_HDR_LEN
        ):
            raise TapError(
                f"TAPFD {fd}",
                errno.EINVAL,
                f"cannot use the virtio-net header of {name}",
            )
        vnet_hdr = True
    set_nonblocking(fd)
    os.set_inheritable(fd, False)
    return TapDevice(fd, name, vnet_hdr=vnet_hdr)


def set_txqueuelen(name: str, qlen: int = DEFAULT_TXQUEUELEN) -> bool:
    """Set the transmit queue length of ``name`` in the current namespace.

    Uses rtnetlink (``RTM_SETLINK`` with ``IFLA_TXQLEN``): ``SIOCSIFTXQLEN`` is
    refused inside a user namespace. Returns False on any failure.
    """
    try:
        index = socket.if_nametoindex(name)
        with socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE
        ) as sock:
            sock.settimeout(_NETLINK_TIMEOUT)
            request = (
                _NLMSGHDR.pack(
                    _NLMSGHDR.size + _IFINFOMSG.size + _RTATTR_U32.size,
                    _RTM_SETLINK,
                    _NLM_F_REQUEST | _NLM_F_ACK,
                    1,
                    0,
                )
                + _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
                + _RTATTR_U32.pack(_RTATTR_U32.size, _IFLA_TXQLEN, qlen)
            )
            sock.sendto(request, (0, 0))
            reply = sock.recv(4096)
    except (OSError, struct.error):
        return False
    if len(reply) < _NLMSGHDR.size + 4:
        return False
    _, msg_type, _, _, _ = _NLMSGHDR.unpack_from(reply)
    (error,) = _INT.unpack_from(reply, _NLMSGHDR.size)
    return bool(msg_type == _NLMSG_ERROR and error == 0)


def configure_network(
    name: str,
    *,
    mtu: int,
    address: ipaddress.IPv4Interface,
    gateway: ipaddress.IPv4Address,
    mac: bytes | None = None,
) -> None:
    """What ``slirp4netns --configure`` does inside the namespace, in its order.

    ``lo`` up; ``name`` up; MTU; MAC address (if given); IPv4 address and
    netmask; default route via
    ``gateway`` on ``name``. Flags are added to the current ones (slirp4netns
    overwrites them, which clears ``MULTICAST``). Raises ``TapError`` with
    slirp4netns's messages.
    """
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise TapError.wrap("cannot create socket", exc) from None
    with sock:
        ifname = _encode_name(name)
        _set_up(sock, b"lo")
        _set_up(sock, ifname)
        _ioctl(sock, SIOCSIFMTU, _IFREQ_INT.pack(ifname, mtu), "cannot set MTU")
        if mac is not None:
            hwaddr = struct.pack("16sH14s", ifname, _ARPHRD_ETHER, mac)
            _ioctl(sock, SIOCSIFHWADDR, hwaddr, "cannot set MAC address")
        _ioctl(
            sock,
            SIOCSIFADDR,
            _ifreq_addr(ifname, address.ip),
            "cannot set device address",
        )
        _ioctl(
            sock,
            SIOCSIFNETMASK,
            _ifreq_addr(ifname, address.netmask),
            "cannot set device netmask",
        )
        route = _RtEntry()
        route.rt_dst = _sockaddr(ipaddress.IPv4Address(0))
        route.rt_gateway = _sockaddr(gateway)
        route.rt_genmask = _sockaddr(ipaddress.IPv4Address(0))
        route.rt_flags = RTF_UP | RTF_GATEWAY
        route.rt_metric = 0
        route.rt_dev = ifname
        _ioctl(sock, SIOCADDRT, bytes(route), "set route")


def _open_tun() -> int:
    try:
        return os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TapError.wrap(f'open("{TUN_PATH}")', exc) from None


def _features(fd: int) -> int:
    """``TUNGETFEATURES``: the ``IFF_*`` flags this kernel's TUN driver accepts."""
    try:
        (features,) = _INT.unpack(fcntl.ioctl(fd, TUNGETFEATURES, bytes(4)))
    except OSError:
        return 0
    return int(features) & 0xFFFFFFFF


def _vnet_hdr_size(fd: int) -> int:
    try:
        (size,) = _INT.unpack(fcntl.ioctl(fd, TUNGETVNETHDRSZ, bytes(4)))
    except OSError:
        return -1
    return int(size)


def _set_iff(fd: int, name: str, flags: int) -> str:
    ifr = bytearray(_IFREQ_FLAGS.pack(_encode_name(name), flags))
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as exc:
        raise TapError.wrap("ioctl(TUNSETIFF)", exc) from None
    return _decode_name(bytes(ifr[:IFNAMSIZ]))


def _encode_name(name: str) -> bytes:
    return os.fsencode(name)[: IFNAMSIZ - 1]


def _decode_name(raw: bytes) -> str:
    return os.fsdecode(raw.split(b"\0", 1)[0])


def _ioctl(sock: socket.socket, request: int, ifr: bytes, what: str) -> bytes:
    try:
        return fcntl.ioctl(sock, request, ifr)
    except OSError as exc:
        raise TapError.wrap(what, exc) from None


def _set_up(sock: socket.socket, ifname: bytes) -> None:
    what = "cannot set device up"
    current = _ioctl(sock, SIOCGIFFLAGS, _IFREQ_FLAGS.pack(ifname, 0), what)
    _, flags = _IFREQ_FLAGS.unpack(current)
    wanted = _IFREQ_FLAGS.pack(ifname, flags | IFF_UP | IFF_RUNNING)
    _ioctl(sock, SIOCSIFFLAGS, wanted, what)


def _ifreq_addr(ifname: bytes, addr: ipaddress.IPv4Address) -> bytes:
    return _IFREQ_ADDR.pack(ifname, socket.AF_INET, b"\0\0", addr.packed)


class _SockAddr(ctypes.Structure):
    _fields_ = (
        ("sa_family", ctypes.c_ushort),
        ("sa_data", ctypes.c_ubyte * 14),
    )


class _RtEntry(ctypes.Structure):
    """``struct rtentry`` (``linux/route.h``), native layout."""

    _fields_ = (
        ("rt_pad1", ctypes.c_ulong),
        ("rt_dst", _SockAddr),
        ("rt_gateway", _SockAddr),
        ("rt_genmask", _SockAddr),
        ("rt_flags", ctypes.c_ushort),
        ("rt_pad2", ctypes.c_short),
        ("rt_pad3", ctypes.c_ulong),
        ("rt_pad4", ctypes.c_void_p),
        ("rt_metric", ctypes.c_short),
        ("rt_dev", ctypes.c_char_p),
        ("rt_mtu", ctypes.c_ulong),
        ("rt_window", ctypes.c_ulong),
        ("rt_irtt", ctypes.c_ushort),
    )


def _sockaddr(addr: ipaddress.IPv4Address) -> _SockAddr:
    """A ``sockaddr_in`` (port 0) in ``struct sockaddr`` clothes."""
    data = (ctypes.c_ubyte * 14)(0, 0, *addr.packed)
    return _SockAddr(socket.AF_INET, data)
