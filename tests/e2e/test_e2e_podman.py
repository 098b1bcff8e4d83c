# SPDX-License-Identifier: GPL-2.0-or-later
"""Rootless podman, unmodified, runs a container on the daemon's network.

In the runtime lab (see ``runtimes.py``) an unprivileged user runs podman
with ``network_cmd_path`` in ``containers.conf`` pointing at the helper under
test, storage in a temporary directory (``vfs``), ``cgroup_manager =
"cgroupfs"``, ``events_logger = "file"`` and ``--cgroups=disabled``; the image
is a busybox root file system brought in with ``podman import`` (no registry).

``podman run --network slirp4netns:allow_host_loopback=true,port_handler=H
-p 127.0.0.1:8080:80``, for both port handlers (``slirp4netns``: the daemon's
API socket; ``rootlesskit``: podman's own ``rootlessport``): ``tap0`` is
10.0.2.100/24 with a default route via 10.0.2.2, ``wget`` fetches a file from
a server on the host's loopback through 10.0.2.2, and ``httpd`` in the
container serves a file to the host through 127.0.0.1:8080, both checked by
SHA-256.  The daemon gets the argv podman builds (``-c``, ``-r 3 -e 4``,
``--netns-type=path``, and ``--enable-sandbox --enable-seccomp`` whenever
``--help`` lists them); when the container ends, ``podman run`` exits 0 and
the daemon follows through its exit fd.

``--network slirp4netns:cidr=10.41.0.0/24,enable_ipv6=false`` with
``network_cmd_options = ["mtu=1500"]`` in containers.conf (the host's
loopback left at podman's default, unreachable): the container gets
10.41.0.100/24 at MTU 1500, no IPv6 address and 10.41.0.3 as its name server;
10.41.0.2 does not lead to the host's loopback, a "remote" server is reached.

The helper is slirpy (a wrapper script, under each event loop) or, to prove
the test right, ``/usr/bin/slirp4netns``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lab import GATEWAY, GUEST, PYTHON, REMOTE, Proc, Session, rand_bytes, rand_sha256
from runtimes import (
    Helper,
    RuntimeHost,
    busybox_rootfs_tar,
    helpers,
    missing_tools,
    open_runtime_host,
    read_until,
    runtime_lab_unavailable_reason,
)

pytestmark = pytest.mark.timeout(60)

SIZE = 4 * 1024 * 1024
PUBLISHED = 8080
HOST_HTTP = 8000
IMAGE = "localhost/slirpy-e2e:latest"
APPLETS = ("sh", "ip", "wget", "sha256sum", "httpd", "cat", "echo", "ls", "sleep")
CONFINED = ("--enable-sandbox", "--enable-seccomp")

FETCH = (
    "import hashlib, sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1], timeout=20) as reply:\n"
    "    print(hashlib.sha256(reply.read()).hexdigest())\n"
)

RUN_SCRIPT = f"""
ip addr show dev tap0
ip route
echo "FETCH $(wget -q -O - http://{GATEWAY}:{HOST_HTTP}/blob | sha256sum)"
httpd -p 80 -h /srv
"""

OPTIONS_SCRIPT = f"""
ip addr show dev tap0
ip route
cat /etc/resolv.conf
if wget -q -O /dev/null http://10.41.0.2:{HOST_HTTP}/blob; then
  echo "LOOPBACK reached"
else
  echo "LOOPBACK blocked"
fi
echo "FETCH $(wget -q -O - http://{REMOTE}:{HOST_HTTP}/blob | sha256sum)"
"""


@pytest.fixture(params=helpers(), ids=lambda helper: helper.id)
def helper(request: pytest.FixtureRequest, e2e_session: Session) -> Helper:
    """The network helper podman launches."""
    reason = runtime_lab_unavailable_reason() or missing_tools(
        "podman", "conmon", "busybox", "ldd"
    )
    if reason is None and missing_tools("crun") and missing_tools("runc"):
        reason = "neither crun nor runc is installed"
    if reason:
        pytest.skip(reason)
    the_helper: Helper = request.param
    if not the_helper.is_slirpy and missing_tools(the_helper.path(e2e_session)):
        pytest.skip(f"{the_helper.path(e2e_session)} is not installed")
    return the_helper


def serve_dir(root: Path, name: str, seed: int) -> Path:
    """A world-readable directory holding ``blob``: SIZE bytes of ``seed``."""
    path = root / name
    path.mkdir(mode=0o755)
    (path / "blob").write_bytes(rand_bytes(seed, SIZE))
    (path / "blob").chmod(0o644)
    return path


@dataclass(frozen=True)
class Podman:
    """A runtime lab where podman is set up for the runtime user."""

    host: RuntimeHost
    env: dict[str, str]
    """The runtime user's environment with podman's configuration files."""


@contextlib.contextmanager
def podman_host(session: Session, helper: Helper, engine: str = "") -> Iterator[Podman]:
    """A runtime lab with podman configured for ``helper`` and the image imported.

    ``engine``: more lines for the ``[engine]`` table of containers.conf.
    """
    with open_runtime_host(session, cgroup2=True) as host:
        conf = host.dir / "containers.conf"
        conf.write_text(
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'network_cmd_path = "{helper.path(session)}"\n'
            f"{engine}"
        )
        storage = host.dir / "storage.conf"
        storage.write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{host.user_dir}/storage"\n'
            f'runroot = "{host.user_dir}/storage-run"\n'
        )
        for path in (conf, storage):
            path.chmod(0o644)
        env = host.user_env(
            {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}
        )
        info = host.run(
            ["podman", "info", "--format", "{{.Host.Slirp4NetNS.Executable}}"],
            as_user=True,
            env=env,
            check=False,
        )
        if info.returncode != 0:
            pytest.skip(f"rootless podman cannot run here: {info.stderr.strip()}")
        assert info.stdout.strip() == helper.path(session), info.describe()
        tar = busybox_rootfs_tar(host.dir / "rootfs.tar", APPLETS)
        host.run(
            ["podman", "import", str(tar), IMAGE],
            as_user=True,
            env=env,
            timeout=40,
        )
        yield Podman(host, env)


def start_web(host: RuntimeHost, bind: str, directory: Path) -> Proc:
    """``python -m http.server`` on ``bind``:HOST_HTTP serving ``directory``."""
    web = host.spawn(
        [
            PYTHON,
            "-u",
            "-m",
            "http.server",
            str(HOST_HTTP),
            f"--bind={bind}",
            f"--directory={directory}",
        ],
        name="host-http",
    )
    assert web.readline().startswith("Serving HTTP"), web.describe()
    return web


@contextlib.contextmanager
def container(podman: Podman, options: list[str], script: str) -> Iterator[Run]:
    """``podman run --rm -i OPTIONS IMAGE sh -ec SCRIPT`` as the runtime user.

    Yields once SCRIPT has run; the container then waits for its stdin to
    close, which happens on leaving the block.
    """
    stdin_r, stdin_w = os.pipe()
    try:
        proc = podman.host.spawn(
            [
                "podman",
                "run",
                "--rm",
                "-i",
                "--pull=never",
                "--cgroups=disabled",
                *options,
                IMAGE,
                "sh",
                "-ec",
                f"{script}echo READY\nread -r line || true\n",
            ],
            as_user=True,
            env=podman.env,
            stdin=stdin_r,
            name="podman-run",
        )
        os.close(stdin_r)
        stdin_r = -1
        output = "\n".join(read_until(proc, "READY", timeout=40))
        yield Run(proc, output)
    finally:
        if stdin_r >= 0:
            os.close(stdin_r)
        os.close(stdin_w)


@dataclass(frozen=True)
class Run:
    """A running ``podman run`` and what its container printed so far."""

    proc: Proc
    output: str


def helper_args(host: RuntimeHost, helper: Helper, run: Run) -> list[list[str]]:
    """The options of each running helper process (at least one).

    Every one has podman's fixed part: ``-c``, ``-r``, ``-e``, path mode, tap0.
    """
    running = host.processes(helper)
    assert running, f"no {helper.name} process\n{run.proc.describe()}"
    for args in running.values():
        assert args[-1] == "tap0", args
        assert {"-c", "-r", "-e", "--netns-type=path"} <= set(args), args
    return list(running.values())


def finish(host: RuntimeHost, helper: Helper, run: Run) -> None:
    """``podman run`` exits 0 and the helper exits after it."""
    assert run.proc.wait(30) == 0, run.proc.describe()
    host.wait_helper_gone(helper, timeout=15)


@pytest.mark.parametrize("port_handler", ["slirp4netns", "rootlesskit"])
def test_podman_run(e2e_session: Session, helper: Helper, port_handler: str) -> None:
    """Network up, loopback download, published port, clean exit."""
    confined = all(helper.supports(e2e_session, option) for option in CONFINED)
    with podman_host(e2e_session, helper) as podman:
        host = podman.host
        start_web(host, "127.0.0.1", serve_dir(host.dir, "host-www", 81))
        guest_www = serve_dir(host.dir, "guest-www", 82)
        options = [
            "--network",
            f"slirp4netns:allow_host_loopback=true,port_handler={port_handler}",
            "-p",
            f"127.0.0.1:{PUBLISHED}:80",
            "-v",
            f"{guest_www}:/srv:ro",
        ]
        with container(podman, options, RUN_SCRIPT) as run:
            assert re.search(rf"inet {re.escape(GUEST)}/24 ", run.output), run.output
            assert re.search(
                rf"^default via {re.escape(GATEWAY)} dev tap0", run.output, re.M
            ), run.output
            assert "inet6 fd00::" in run.output, run.output
            assert f"FETCH {rand_sha256(81, SIZE)}" in run.output, run.proc.describe()
            for args in helper_args(host, helper, run):
                assert ("--api-socket" in args) == (port_handler == "slirp4netns")
                assert "--mtu=65520" in args, args
                assert "--enable-ipv6" in args, args
                assert "--disable-host-loopback" not in args, args
                assert all((option in args) == confined for option in CONFINED), args

            fetched = host.run(
                [PYTHON, "-c", FETCH, f"http://127.0.0.1:{PUBLISHED}/blob"],
                timeout=30,
            )
            assert fetched.stdout.strip() == rand_sha256(82, SIZE), fetched.describe()
        finish(host, helper, run)


def test_podman_network_options(e2e_session: Session, helper: Helper) -> None:
    """``cidr``, ``mtu``, ``enable_ipv6=false``; host loopback off by default.

    ``mtu`` comes from ``network_cmd_options`` in containers.conf, the others
    from ``--network``.
    """
    engine = 'network_cmd_options = ["mtu=1500"]\n'
    with podman_host(e2e_session, helper, engine) as podman:
        host = podman.host
        start_web(host, "0.0.0.0", serve_dir(host.dir, "www", 83))
        options = ["--network", "slirp4netns:cidr=10.41.0.0/24,enable_ipv6=false"]
        with container(podman, options, OPTIONS_SCRIPT) as run:
            assert re.search(r"tap0: .* mtu 1500 ", run.output), run.output
            assert "inet 10.41.0.100/24 " in run.output, run.output
            assert "inet6 fd00::" not in run.output, run.output
            assert re.search(r"^default via 10\.41\.0\.2 dev tap0", run.output, re.M)
            assert re.search(r"^nameserver 10\.41\.0\.3$", run.output, re.M)
            assert "LOOPBACK blocked" in run.output, run.proc.describe()
            assert f"FETCH {rand_sha256(83, SIZE)}" in run.output, run.proc.describe()
            for args in helper_args(host, helper, run):
                assert {"--disable-host-loopback", "--mtu=1500"} <= set(args), args
                assert "--cidr=10.41.0.0/24" in args, args
                assert "--enable-ipv6" not in args, args
                assert "--api-socket" not in args, args
        finish(host, helper, run)
