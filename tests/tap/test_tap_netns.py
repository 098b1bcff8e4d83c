# SPDX-License-Identifier: GPL-2.0-or-later
"""obtain_tap(): the slirp4netns process model, in namespaces of the test's own.

Each test starts an nslab ``Host``; a script inside it starts a ``Container``
(``unshare --user --map-root-user --net``, as rootless runtimes do), calls
``obtain_tap()`` and reports what it got, what it printed and what the
container's network looks like afterwards.
"""

from __future__ import annotations

import os
import re
import stat
import textwrap

import nslab
import pytest

from slirpy.tap.netns import child_failure

_UNAVAILABLE = nslab.namespaces_unavailable()
needs_namespaces = pytest.mark.skipif(
    _UNAVAILABLE is not None, reason=f"namespaces unavailable: {_UNAVAILABLE}"
)

PRELUDE = """
import ipaddress, json, os, select, socket, subprocess, sys, time
from nslab import PYTHON, Container, emit
from slirpy.config import DaemonConfig, NetnsType
from slirpy.stack.config import StackConfig
from slirpy.tap import device, vnet
from slirpy.tap.netns import SetupError, obtain_tap

def config(target, tap_name="tap0", netns_type=NetnsType.PID, **kw):
    return DaemonConfig(
        netns_type=netns_type, target=str(target), tap_name=tap_name, **kw
    )

def fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))

def attempt(cfg):
    before = fds()
    try:
        tap = obtain_tap(cfg)
    except SetupError as exc:
        return {"error": str(exc), "exit_code": exc.exit_code,
                "leaked": sorted(set(fds()) - set(before))}
    name, flags = device.tun_get_iff(tap.fd)
    return {
        "name": tap.name, "vnet_hdr": tap.vnet_hdr, "fd": tap.fd,
        "iff_name": name, "iff_vnet": bool(flags & device.IFF_VNET_HDR),
        "nonblock": not os.get_blocking(tap.fd),
        "cloexec": not os.get_inheritable(tap.fd),
        "leaked": sorted(set(fds()) - set(before) - {tap.fd}),
    }

def guest_state(c, name="tap0"):
    return {
        "addr": c.ip_json("addr"),
        "route": c.ip_json("route"),
        "link": c.ip_json("-d", "link", "show", name) if name else None,
    }
"""


def run_script(code: str, *, userns: bool = True) -> nslab.ScriptResult:
    with nslab.Host(userns=userns) as host:
        res = host.python(PRELUDE + textwrap.dedent(code))
    assert res.returncode == 0, str(res)
    return res


def links(state: dict) -> dict[str, dict]:
    return {link["ifname"]: link for link in state["addr"]}


def inet(link: dict) -> list[tuple[str, int, str | None]]:
    return [
        (a["local"], a["prefixlen"], a.get("broadcast"))
        for a in link["addr_info"]
        if a["family"] == "inet"
    ]


def routes(state: dict) -> set[tuple[str, str | None, str]]:
    return {(r["dst"], r.get("gateway"), r["dev"]) for r in state["route"]}


def assert_configured(state: dict, *, address, prefix, broadcast, gateway, mtu):
    ifaces = links(state)
    assert "UP" in ifaces["lo"]["flags"]
    tap = ifaces["tap0"]
    assert "UP" in tap["flags"]
    assert tap["mtu"] == mtu
    assert inet(tap) == [(address, prefix, broadcast)]
    assert ("default", gateway, "tap0") in routes(state)
    assert all(dev == "tap0" for _, _, dev in routes(state))


def assert_fresh_tap(r: dict) -> None:
    assert r["name"] == "tap0"
    assert r["iff_name"] == "tap0"
    assert r["vnet_hdr"] is True
    assert r["iff_vnet"] is True
    assert r["nonblock"]
    assert r["cloexec"]
    assert r["leaked"] == []


def assert_messages(stderr: str, fd: int, name: str = "tap0") -> None:
    lines = stderr.splitlines()
    sent = [line for line in lines if line.startswith("sent tapfd=")]
    assert len(sent) == 1, stderr
    assert re.fullmatch(rf"sent tapfd=\d+ for {re.escape(name)}", sent[0])
    assert f"received tapfd={fd}" in lines
    assert lines.index(sent[0]) < lines.index(f"received tapfd={fd}")


@needs_namespaces
def test_pid_mode_with_configure():
    res = run_script(
        """
        with Container() as c:
            r = attempt(config(c.pid, configure=True))
            r.update(guest_state(c))
            r["host_links"] = [link["ifname"] for link in json.loads(
                subprocess.run(["ip", "-j", "link"], capture_output=True,
                               text=True, check=True).stdout)]
        emit(r)
        """
    )
    r = res.result
    assert_fresh_tap(r)
    assert_configured(
        r,
        address="10.0.2.100",
        prefix=24,
        broadcast="10.0.2.255",
        gateway="10.0.2.2",
        mtu=1500,
    )
    assert routes(r) == {("default", "10.0.2.2", "tap0"), ("10.0.2.0/24", None, "tap0")}
    link = r["link"][0]
    assert link["txqlen"] == 10000
    assert link["linkinfo"]["info_data"]["vnet_hdr"] is True
    assert link["linkinfo"]["info_data"]["persist"] is False
    assert r["host_links"] == ["lo"]  # the TAP is in the container only
    assert_messages(res.stderr, r["fd"])


@needs_namespaces
def test_cidr_and_mtu():
    res = run_script(
        """
        stack = StackConfig(
            network=ipaddress.IPv4Network("10.0.135.128/25"), mtu=65520
        )
        with Container() as c:
            r = attempt(config(c.pid, configure=True, stack=stack))
            r.update(guest_state(c))
        emit(r)
        """
    )
    r = res.result
    assert_fresh_tap(r)
    assert_configured(
        r,
        address="10.0.135.228",
        prefix=25,
        broadcast="10.0.135.255",
        gateway="10.0.135.130",
        mtu=65520,
    )


@needs_namespaces
def test_attach_to_existing_tap_without_configure():
    """rootlesskit: ``ip tuntap add name tap0 mode tap`` first, no ``-c``."""
    res = run_script(
        """
        with Container() as c:
            c.run(["ip", "tuntap", "add", "name", "tap0", "mode", "tap"])
            before = c.ip_json("-d", "link", "show", "tap0")[0]
            r = attempt(config(c.pid))
            r.update(guest_state(c))
            r["before"] = before
        emit(r)
        """
    )
    r = res.result
    assert_fresh_tap(r)
    assert r["before"]["linkinfo"]["info_data"]["vnet_hdr"] is False
    link = r["link"][0]
    assert link["linkinfo"]["info_data"]["vnet_hdr"] is True
    assert link["linkinfo"]["info_data"]["persist"] is True
    assert "UP" not in link["flags"]  # no -c: left as the runtime made it
    assert inet(links(r)["tap0"]) == []
    assert r["route"] == []
    assert_messages(res.stderr, r["fd"])


@needs_namespaces
def test_path_mode():
    """A bind-mounted netns file (podman's layout), with and without --userns-path."""
    res = run_script(
        """
        out = {}
        with Container() as c:
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
            os.makedirs("/run/netns")
            open("/run/netns/c1", "w").close()
            subprocess.run(["mount", "--bind", f"/proc/{c.pid}/ns/net",
                            "/run/netns/c1"], check=True)
            out["with_userns"] = attempt(config(
                "/run/netns/c1", "tap0", NetnsType.PATH,
                userns_path=f"/proc/{c.pid}/ns/user", configure=True,
            ))
            out["without_userns"] = attempt(config(
                "/run/netns/c1", "tap1", NetnsType.PATH,
            ))
            out.update(guest_state(c))
        emit(out)
        """
    )
    r = res.result
    assert_fresh_tap(r["with_userns"])
    assert r["without_userns"]["name"] == "tap1"
    assert r["without_userns"]["vnet_hdr"] is True
    assert r["without_userns"]["leaked"] == []
    assert set(links(r)) == {"lo", "tap0", "tap1"}
    assert inet(links(r)["tap0"]) == [("10.0.2.100", 24, "10.0.2.255")]


@needs_namespaces
def test_failures_print_slirp4netns_messages():
    res = run_script(
        """
        out = {}
        with Container() as c:
            c.run(["ip", "tuntap", "add", "name", "tapc", "mode", "tap"])
            c.run(["ip", "link", "set", "tapc", "up"])
            c.run(["ip", "addr", "add", "10.0.2.100/24", "dev", "tapc"])
            c.run(["ip", "route", "add", "default", "via", "10.0.2.2"])
            cases = {
                "bad_pid": config(999999),
                "bad_path": config("/nonexistent/netns", netns_type=NetnsType.PATH),
                "bad_userns": config(
                    f"/proc/{c.pid}/ns/net", netns_type=NetnsType.PATH,
                    userns_path="/nonexistent/userns",
                ),
                "not_a_netns": config(f"/proc/{c.pid}/ns/uts",
                                      netns_type=NetnsType.PATH),
                "lo": config(c.pid, "lo"),
                "route_exists": config(c.pid, "tapc", configure=True),
            }
            for key, cfg in cases.items():
                sys.stderr.write(f"--- {key}\\n")
                sys.stderr.flush()
                out[key] = attempt(cfg)
        emit(out)
        """
    )
    r = res.result
    assert res.stdout.count(nslab.RESULT_MARK) == 1  # no child came back
    expected = {
        "bad_pid": "/proc/999999/ns/net: No such file or directory",
        "bad_path": "/nonexistent/netns: No such file or directory",
        "bad_userns": "/nonexistent/userns: No such file or directory",
        "not_a_netns": "setns(CLONE_NEWNET): Invalid argument",
        "lo": "ioctl(TUNSETIFF): Invalid argument",
        "route_exists": "set route: File exists",
    }
    sections = {}
    for part in res.stderr.split("--- ")[1:]:
        key, _, text = part.partition("\n")
        sections[key] = text
    for key, message in expected.items():
        assert r[key] == {"error": "child failed(1)", "exit_code": 1, "leaked": []}
        assert sections[key].splitlines() == [message, "child failed(1)"], key


@needs_namespaces
def test_tapfd_mode():
    res = run_script(
        """
        out = {}
        for key, offloads in (("vnet", True), ("plain", False)):
            tap = device.open_tap(f"tap{key}", vnet_hdr=offloads)
            fd = os.dup(tap.fd)
            os.set_blocking(fd, True)
            out[key] = attempt(config(fd, None, NetnsType.TAPFD))
        out["bad"] = attempt(config(999, None, NetnsType.TAPFD))
        emit(out)
        """
    )
    r = res.result
    assert r["vnet"]["name"] == "tapvnet"
    assert r["vnet"]["vnet_hdr"] is True
    assert r["vnet"]["nonblock"]
    assert r["plain"]["name"] == "tapplain"
    assert r["plain"]["vnet_hdr"] is False
    assert r["bad"] == {
        "error": "ioctl(TUNGETIFF): Bad file descriptor",
        "exit_code": 1,
        "leaked": [],
    }
    assert "sent tapfd" not in res.stderr  # no child
    assert "received tapfd" not in res.stderr


FRAMES = """
GW_MAC = bytes.fromhex("52550a000202")

def read_frame(fd, want, deadline):
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        data = os.read(fd, 65536 + vnet.VNET_HDR_LEN)
        hdr, frame = vnet.unpack_vnet_hdr(data), data[vnet.VNET_HDR_LEN:]
        if want(frame):
            return hdr, frame
    raise TimeoutError("no such frame")

def arp_reply(request):
    guest_mac, guest_ip = request[6:12], request[28:32]
    eth = guest_mac + GW_MAC + b"\\x08\\x06"
    arp = bytes.fromhex("0001080006040002") + GW_MAC + request[38:42]
    return eth + arp + guest_mac + guest_ip

def exchange(c, tap):
    deadline = time.monotonic() + 10
    sender = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
        "s.bind(('10.0.2.100', 4444)); s.sendto(b'hello', ('10.0.2.2', 9))"
    )
    c.run([PYTHON, "-c", sender])
    is_arp_request = lambda f: f[12:14] == b"\\x08\\x06" and f[20:22] == b"\\x00\\x01"
    hdr_arp, request = read_frame(tap.fd, is_arp_request, deadline)
    os.write(tap.fd, vnet.VNET_HDR_NONE + arp_reply(request))
    is_udp = lambda f: f[12:14] == b"\\x08\\x00" and f[23] == 17
    hdr_udp, udp = read_frame(tap.fd, is_udp, deadline)
    return {
        "arp_hdr": hdr_arp, "arp_target": socket.inet_ntoa(request[38:42]),
        "udp_hdr": hdr_udp, "udp_dst": socket.inet_ntoa(udp[30:34]),
        "udp_ports": [int.from_bytes(udp[34:36], "big"),
                      int.from_bytes(udp[36:38], "big")],
        "udp_payload": udp[42:].decode(),
    }
"""


@needs_namespaces
def test_frames_flow_with_the_vnet_header():
    """The guest's UDP datagram arrives with NEEDS_CSUM: the offloads are live."""
    res = run_script(
        FRAMES
        + """
with Container() as c:
    tap = obtain_tap(config(c.pid, configure=True))
    out = exchange(c, tap)
    out["vnet_hdr"] = tap.vnet_hdr
emit(out)
"""
    )
    r = res.result
    assert r["vnet_hdr"] is True
    assert r["arp_target"] == "10.0.2.2"
    assert r["arp_hdr"] == [0, 0, 0, 0, 0, 0]
    assert r["udp_dst"] == "10.0.2.2"
    assert r["udp_ports"] == [4444, 9]
    assert r["udp_payload"] == "hello"
    flags, gso_type, _, _, csum_start, csum_offset = r["udp_hdr"]
    assert flags == 1  # NEEDS_CSUM: the checksum was left to us
    assert gso_type == 0
    assert (csum_start, csum_offset) == (14 + 20, 6)


def _tun_is_private() -> bool:
    return not stat.S_IMODE(os.stat("/dev/net/tun").st_mode) & 0o006


@needs_namespaces
@pytest.mark.skipif(os.geteuid() != 0, reason="needs real root to mknod a tun node")
def test_unprivileged_user():
    """A rootless runtime: uid 65534 makes the container and runs obtain_tap."""
    code = textwrap.dedent(
        """
        out = {"uid": os.getuid(), "euid": os.geteuid()}
        with Container() as c:
            out["first"] = attempt(config(c.pid, configure=True))
            if "error" not in out["first"]:
                out.update(guest_state(c))
        emit(out)
        """
    )
    with nslab.Host(userns=False) as host:
        denied = host.python(PRELUDE + code, uid=nslab.UNPRIVILEGED_UID)
        host.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/dev/net"])
        host.run(["mknod", "-m", "0666", "/dev/net/tun", "c", "10", "200"])
        allowed = host.python(PRELUDE + code, uid=nslab.UNPRIVILEGED_UID)
    assert allowed.returncode == 0, str(allowed)
    r = allowed.result
    assert (r["uid"], r["euid"]) == (65534, 65534)
    assert_fresh_tap(r["first"])
    assert_configured(
        r,
        address="10.0.2.100",
        prefix=24,
        broadcast="10.0.2.255",
        gateway="10.0.2.2",
        mtu=1500,
    )
    assert r["link"][0]["txqlen"] == 10000
    assert_messages(allowed.stderr, r["first"]["fd"])
    if _tun_is_private():  # the machine's own node, crw-------
        assert denied.returncode == 0, str(denied)
        assert denied.result["first"]["error"] == "child failed(1)"
        assert denied.stderr.splitlines() == [
            'open("/dev/net/tun"): Permission denied',
            "child failed(1)",
        ]


@pytest.mark.parametrize(
    ("wstatus", "expected"),
    [
        (0, None),
        (1 << 8, ("child failed(1)", 1)),
        (3 << 8, ("child failed(3)", 3)),
        (9, ("child failed(wstatus=9, !WIFEXITED)", 1)),
    ],
    ids=["ok", "exit-1", "exit-3", "sigkill"],
)
def test_child_failure(wstatus, expected):
    assert child_failure(wstatus) == expected
