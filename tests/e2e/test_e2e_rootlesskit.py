# SPDX-License-Identifier: GPL-2.0-or-later
"""rootlesskit, unmodified, drives the daemon exactly as it drives slirp4netns.

``rootlesskit --net=slirp4netns --slirp4netns-binary=HELPER --copy-up=/etc
--port-driver=slirp4netns -p 127.0.0.1:8080:80/tcp -- sh -ec SCRIPT`` runs as
an unprivileged user in the runtime lab (see ``runtimes.py``), plain and with
``--slirp4netns-sandbox=true --slirp4netns-seccomp=true``.  Inside the child:
``tap0`` is 10.0.2.100/24 with a default route via 10.0.2.2, a download from a
server on the host's loopback through 10.0.2.2 arrives intact, and a server on
port 80 answers a client on the host through the published 127.0.0.1:8080
(rootlesskit's slirp4netns port driver uses the daemon's API socket), both
directions checked by SHA-256.  The child's exit ends rootlesskit with status
0 and takes the daemon with it.

With ``--cidr=10.42.0.0/24 --mtu=1500 --disable-host-loopback`` the child
gets 10.42.0.100/24 at MTU 1500, the host's loopback is unreachable through
10.42.0.2 and a "remote" server is still reached.

HELPER is slirpy (a wrapper script, under each event loop) or, to prove the
test right, ``/usr/bin/slirp4netns``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Iterator, Sequence

import pytest
from lab import GATEWAY, GUEST, REMOTE, Proc, Session, proc_uids, rand_sha256
from runtimes import (
    RUNTIME_UID,
    Helper,
    RuntimeHost,
    helpers,
    missing_tools,
    open_runtime_host,
    runtime_lab_unavailable_reason,
    wait_path,
)

pytestmark = pytest.mark.timeout(60)

SIZE = 4 * 1024 * 1024
PUBLISHED = 8080
CONFINED = ("--enable-sandbox", "--enable-seccomp")


@pytest.fixture(params=helpers(), ids=lambda helper: helper.id)
def helper(request: pytest.FixtureRequest, e2e_session: Session) -> Helper:
    """The network helper rootlesskit launches."""
    reason = runtime_lab_unavailable_reason() or missing_tools("rootlesskit")
    if reason:
        pytest.skip(reason)
    the_helper: Helper = request.param
    if not the_helper.is_slirpy and missing_tools(the_helper.path(e2e_session)):
        pytest.skip(f"{the_helper.path(e2e_session)} is not installed")
    return the_helper


@contextlib.contextmanager
def rootlesskit(
    host: RuntimeHost, helper: Helper, options: Sequence[str], script: str
) -> Iterator[Proc]:
    """``rootlesskit --net=slirp4netns OPTIONS -- sh -ec SCRIPT`` as the user.

    After SCRIPT the child waits for its stdin to close, which happens on
    leaving the block: rootlesskit kills the helper as soon as the child
    exits, and data still on its way out of the child would be lost.  The
    state directory is ``host.user_dir / "rootlesskit"``.
    """
    stdin_r, stdin_w = os.pipe()
    try:
        proc = host.spawn(
            [
                "rootlesskit",
                f"--state-dir={host.user_dir / 'rootlesskit'}",
                "--net=slirp4netns",
                f"--slirp4netns-binary={helper.path(host.session)}",
                *options,
                "--",
                "sh",
                "-ec",
                f"{script}read -r line || true\n",
            ],
            as_user=True,
            name="rootlesskit",
            stdin=stdin_r,
        )
        os.close(stdin_r)
        stdin_r = -1
        yield proc
    finally:
        if stdin_r >= 0:
            os.close(stdin_r)
        os.close(stdin_w)


def start_sender(host: RuntimeHost, bind: str, seed: int) -> int:
    """A server on ``bind`` sending SIZE bytes of ``seed`` once; its port."""
    server = host.spawn(
        host.tool(
            "tcp_peer",
            f"--listen={bind}:0",
            f"--actions=send:rand:{seed}:{SIZE},shutwr",
            "--timeout=40",
        ),
        name="sender",
    )
    return int(server.readline().removeprefix("LISTEN "))


def running_helper(
    host: RuntimeHost, helper: Helper, rootlesskit: Proc
) -> list[list[str]]:
    """The options of each helper process, once rootlesskit is fully set up.

    Every process runs as the runtime user and targets the child and its tap0.
    """
    state = host.user_dir / "rootlesskit"
    # rootlesskit writes child_pid once every port is published.
    wait_path(state / "child_pid", rootlesskit)
    child_pid = (state / "child_pid").read_text().strip()
    running = host.processes(helper)
    assert running, f"no {helper.name} process\n{rootlesskit.describe()}"
    for pid, args in running.items():
        assert proc_uids(pid) == [RUNTIME_UID] * 4
        assert args[-2:] == [child_pid, "tap0"], args
        assert "-c" not in args, args
    return list(running.values())


@pytest.mark.parametrize("confined", [False, True], ids=["plain", "sandbox-seccomp"])
def test_rootlesskit_slirp4netns(
    e2e_session: Session, helper: Helper, confined: bool
) -> None:
    """Network up, loopback download, published port, clean exit."""
    if confined:
        for option in CONFINED:
            if not helper.supports(e2e_session, option):
                pytest.skip(f"{helper.name} --help does not list {option} yet")
    with open_runtime_host(e2e_session) as host:
        port = start_sender(host, "127.0.0.1", 71)
        client = host.tool(
            "tcp_peer", f"--connect={GATEWAY}:{port}", "--actions=recv", "--timeout=30"
        )
        guest_server = host.tool(
            "tcp_peer",
            "--listen=0.0.0.0:80",
            f"--actions=recv,send:rand:72:{SIZE},shutwr",
            "--timeout=40",
        )
        script = (
            "ip -json -4 addr show dev tap0\n"
            "ip -json -4 route show\n"
            f"{shlex.join(client)}\n"
            f"{shlex.join(guest_server)}\n"
        )
        options = [
            "--copy-up=/etc",
            "--port-driver=slirp4netns",
            "-p",
            f"127.0.0.1:{PUBLISHED}:80/tcp",
        ]
        if confined:
            options += ["--slirp4netns-sandbox=true", "--slirp4netns-seccomp=true"]
        with rootlesskit(host, helper, options, script) as proc:
            addrs = json.loads(proc.readline())
            routes = json.loads(proc.readline())
            assert [(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"]] == [
                (GUEST, 24)
            ], proc.describe()
            assert {"dst": "default", "gateway": GATEWAY, "dev": "tap0"}.items() <= (
                routes[0].items()
            ), routes
            fetched = json.loads(proc.readline())
            assert fetched.get("error") is None, fetched
            assert fetched["steps"][0]["sha256"] == rand_sha256(71, SIZE)

            assert proc.readline() == "LISTEN 80"
            for args in running_helper(host, helper, proc):
                assert args[:4] == ["--mtu", "65520", "-r", "3"], args
                assert "--api-socket" in args, args
                assert all((option in args) == confined for option in CONFINED), args

            record = host.run(
                host.tool(
                    "fwd_peer",
                    "tcp",
                    f"--connect=127.0.0.1:{PUBLISHED}",
                    f"--actions=send:rand:73:{SIZE},shutwr,recv",
                    "--timeout=30",
                ),
                timeout=40,
            ).json_lines()[0]
            assert record["error"] is None, record
            assert record["rx_sha256"] == rand_sha256(72, SIZE), record
            served = json.loads(proc.readline())
            assert served["error"] is None, served
            assert served["steps"][0]["sha256"] == rand_sha256(73, SIZE)
            # Clients on the host's loopback appear to come from the gateway.
            assert served["peer"].startswith(f"{GATEWAY}:"), served
        assert proc.wait(20) == 0, proc.describe()
        host.wait_helper_gone(helper)


def test_rootlesskit_network_options(e2e_session: Session, helper: Helper) -> None:
    """``--cidr``, ``--mtu`` and ``--disable-host-loopback`` reach the helper."""
    with open_runtime_host(e2e_session) as host:
        loopback_port = start_sender(host, "127.0.0.1", 74)
        remote_port = start_sender(host, REMOTE, 75)
        blocked = host.tool(
            "tcp_peer",
            f"--connect=10.42.0.2:{loopback_port}",
            "--actions=recv",
            "--timeout=10",
        )
        remote = host.tool(
            "tcp_peer",
            f"--connect={REMOTE}:{remote_port}",
            "--actions=recv",
            "--timeout=30",
        )
        script = (
            "ip -json -4 addr show dev tap0\n"
            "ip -json -4 route show\n"
            f"{shlex.join(blocked)} || true\n"
            f"{shlex.join(remote)}\n"
        )
        options = ["--cidr=10.42.0.0/24", "--mtu=1500", "--disable-host-loopback"]
        with rootlesskit(host, helper, options, script) as proc:
            addrs = json.loads(proc.readline())
            routes = json.loads(proc.readline())
            assert addrs[0]["mtu"] == 1500, addrs
            assert [(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"]] == [
                ("10.42.0.100", 24)
            ], addrs
            assert {"dst": "default", "gateway": "10.42.0.2"}.items() <= (
                routes[0].items()
            ), routes
            refused = json.loads(proc.readline())
            assert refused.get("error") == "ENETUNREACH", refused
            fetched = json.loads(proc.readline())
            assert fetched.get("error") is None, fetched
            assert fetched["steps"][0]["sha256"] == rand_sha256(75, SIZE)
            for args in running_helper(host, helper, proc):
                assert args[:4] == ["--mtu", "1500", "-r", "3"], args
                assert "--disable-host-loopback" in args, args
                assert args[args.index("--cidr") + 1] == "10.42.0.0/24", args
                assert "--api-socket" not in args, args
        assert proc.wait(20) == 0, proc.describe()
        host.wait_helper_gone(helper)
