# SPDX-License-Identifier: GPL-2.0-or-later
"""The implementations the benchmark compares, and how each is set up.

* ``slirpy`` and ``slirp4netns``: ``-c --mtu M -r 3 --api-socket PATH PID tap0``
  in the lab's host namespace; port forwards are added through the API socket.
  ``slirpy-splice`` is slirpy with ``--port-splice``: its forwards hand loopback
  clients to a socket in the container and ``splice(2)``.
* ``pasta``: ``pasta --config-net`` attached to the container by PID, with the
  container's address, netmask and gateway given explicitly so that the guest
  sees the same 10.0.2.0/24 network; pasta maps the gateway address to the
  host's loopback (its default), and forwards ports with ``-t``.
* ``veth``: a kernel veth pair between the host and container namespaces,
  10.0.2.2 on the host end, 10.0.2.100 in the container: the ceiling.

Every implementation leaves the guest at 10.0.2.100/24 with a default route
via 10.0.2.2, which reaches the host namespace's loopback (veth: the host end).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lab import (
    GATEWAY,
    GUEST,
    HOST_EXT,
    PYTHON,
    TOOLS,
    Container,
    Lab,
    LabError,
    Proc,
    children_of,
    ns_pids,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SLIRP4NETNS = "/usr/bin/slirp4netns"
PASTA = "pasta"

GUEST_PORT = 5301
"""The port the container's servers listen on for the port-forward cases."""
FWD_PORTS = {"lo": ("127.0.0.1", 15301), "ext": (HOST_EXT, 15302)}
"""Host side of the forwards: ``lo`` from loopback, ``ext`` from 198.18.0.2."""


@dataclass
class Running:
    """One implementation serving one container."""

    impl: str
    proc: Proc | None
    """The launcher (slirp4netns, slirpy), or None."""
    daemon_pid: int | None
    """Host PID of the daemon (for RSS and CPU), None for veth."""
    ready_ms: float | None = None
    forwards: dict[str, tuple[str, int]] = field(default_factory=dict)
    """``lo``/``ext`` → host address and port a client connects to."""
    forward_error: str | None = None
    notes: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        """True while the daemon (if any) is running."""
        if self.daemon_pid is None:
            return True
        try:
            stat = Path(f"/proc/{self.daemon_pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")

    def why_dead(self) -> str:
        """How the daemon ended, as the launcher saw it, in one line."""
        if self.proc is None:
            return "daemon is gone"
        status = "daemon exited"
        for line in self.proc.stdout().splitlines():
            if line.startswith('{"exit"'):
                code = int(json.loads(line)["exit"])
                status = (
                    f"daemon killed by signal {-code}"
                    if code < 0
                    else f"daemon exited with {code}"
                )
        return status

    def stderr_tail(self, lines: int = 3) -> str:
        """The last lines the daemon wrote to stderr, joined."""
        if self.proc is None:
            return ""
        tail = self.proc.stderr_tail(4000).splitlines()[-lines:]
        return " | ".join(x.strip() for x in tail)


class Impl:
    """Base: a name, an availability check, start-up timing, start."""

    name = ""
    has_daemon = True

    def unavailable(self) -> str | None:
        """Why this implementation cannot run here, or None."""
        return None

    def startup_ms(
        self, lab: Lab, container: Container, mtu: int, repeat: int
    ) -> list[float]:
        """Start and stop the daemon ``repeat`` times; times to ready in ms."""
        raise NotImplementedError

    def start(self, lab: Lab, container: Container, mtu: int) -> Running:
        """Start serving ``container``; wait until ready."""
        raise NotImplementedError


def _launch_json(proc: Proc, timeout: float) -> dict[str, Any]:
    line = proc.readline(timeout)
    try:
        record = json.loads(line)
    except ValueError:
        raise LabError(f"launcher said {line!r}; {proc.stderr_tail()}") from None
    if "error" in record:
        raise LabError(f"{record['error']}; {proc.stderr_tail()}")
    return dict(record)


class SlirpImpl(Impl):
    """slirp4netns or slirpy: same command line, same API socket."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env

    def unavailable(self) -> str | None:
        if not shutil.which(self.argv[0]):
            return f"{self.argv[0]} is not installed"
        try:
            probe = subprocess.run(
                [*self.argv, "--version"],
                capture_output=True,
                timeout=20,
                env={**os.environ, **self.env},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{self.name} --version failed: {exc}"
        if probe.returncode != 0:
            return f"{self.name} --version: exit {probe.returncode}"
        return None

    def version(self) -> str:
        """The first line of ``--version``."""
        try:
            probe = subprocess.run(
                [*self.argv, "--version"],
                capture_output=True,
                text=True,
                timeout=20,
                env={**os.environ, **self.env},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return (probe.stdout.strip().splitlines() or [""])[0]

    def _argv(self, container: Container, mtu: int, api: Path | None) -> list[str]:
        argv = [*self.argv, "-c", "--mtu", str(mtu), "-r", "3"]
        if api is not None:
            argv += ["--api-socket", str(api)]
        return [*argv, str(container.lab_pid), "tap0"]

    def startup_ms(
        self, lab: Lab, container: Container, mtu: int, repeat: int
    ) -> list[float]:
        launcher = [PYTHON, str(TOOLS / "launch.py"), "--ready-fd", "3"]
        result = lab.host.run(
            [
                *launcher,
                "--repeat",
                str(repeat),
                "--",
                *self._argv(container, mtu, None),
            ],
            env=self.env,
            timeout=20 + 5 * repeat,
            check=False,
        )
        record = json.loads((result.stdout.strip().splitlines() or ["{}"])[-1])
        if "ready_ms" not in record:
            tail = " | ".join(result.stderr.strip().splitlines()[-3:])
            raise LabError(f"{record.get('error') or result.describe()}; {tail}")
        return [float(x) for x in record["ready_ms"]]

    def _launch(
        self, lab: Lab, container: Container, mtu: int, api: Path | None
    ) -> tuple[Proc, int, float]:
        proc = lab.host.spawn(
            [
                PYTHON,
                str(TOOLS / "launch.py"),
                "--ready-fd",
                "3",
                "--",
                *self._argv(container, mtu, api),
            ],
            name=self.name,
            env=self.env,
        )
        try:
            record = _launch_json(proc, 30)
        except LabError:
            proc.kill()
            raise
        kids = children_of(proc.target_pid())
        if not kids:
            proc.kill()
            raise LabError(f"{self.name} is gone right after start-up")
        return proc, kids[0], float(record["ready_ms"])

    def start(self, lab: Lab, container: Container, mtu: int) -> Running:
        api = lab.dir / "api.sock"
        notes: list[str] = []
        forward_error: str | None = None
        try:
            proc, pid, ready = self._launch(lab, container, mtu, api)
        except LabError as exc:
            if "api-socket" not in str(exc) and "api_socket" not in str(exc):
                raise
            forward_error = "n/a: --api-socket not supported"
            notes.append(f"{self.name} does not support --api-socket yet")
            proc, pid, ready = self._launch(lab, container, mtu, None)
        running = Running(self.name, proc, pid, ready, notes=notes)
        if forward_error is None:
            try:
                for key, (addr, port) in FWD_PORTS.items():
                    api_call(
                        api,
                        {
                            "execute": "add_hostfwd",
                            "arguments": {
                                "proto": "tcp",
                                "host_addr": addr,
                                "host_port": port,
                                "guest_addr": "",
                                "guest_port": GUEST_PORT,
                            },
                        },
                    )
                    running.forwards[key] = (addr, port)
            except (OSError, LabError, ValueError) as exc:
                forward_error = f"add_hostfwd: {exc}"
        running.forward_error = forward_error
        return running


def api_call(
    path: Path, request: dict[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """One request on a slirp4netns-style API socket; raises on an error reply."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise LabError(f"{path} did not appear")
        time.sleep(0.01)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    reply = json.loads(data)
    if not isinstance(reply, dict) or "error" in reply:
        raise LabError(f"API answered {data.decode(errors='replace')}")
    return reply


class PastaImpl(Impl):
    """pasta attached to the container by PID; ready when it daemonizes."""

    name = "pasta"

    def unavailable(self) -> str | None:
        if not shutil.which(PASTA):
            return "pasta is not installed"
        return None

    def version(self) -> str:
        """The installed package version (pasta's own string is empty here)."""
        try:
            probe = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", "passt"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return f"passt {probe.stdout.strip()}" if probe.returncode == 0 else ""

    def _argv(self, lab: Lab, container: Container, mtu: int, ports: bool) -> list[str]:
        argv = [
            PASTA,
            "--quiet",
            "--ipv4-only",
            "--config-net",
            "--ns-ifname",
            "tap0",
            "--address",
            GUEST,
            "--netmask",
            "24",
            "--gateway",
            GATEWAY,
            "--mtu",
            str(mtu),
            "--udp-ports",
            "none",
            "--tcp-ns",
            "none",
            "--udp-ns",
            "none",
            "--log-file",
            str(lab.log_path("pasta-log")),
            "--pid",
            str(lab.dir / "pasta.pid"),
        ]
        if ports:
            for addr, port in FWD_PORTS.values():
                argv += ["--tcp-ports", f"{addr}/{port}:{GUEST_PORT}"]
        else:
            argv += ["--tcp-ports", "none"]
        return [*argv, str(container.lab_pid)]

    def _launcher(self, lab: Lab) -> list[str]:
        return [
            PYTHON,
            str(TOOLS / "launch.py"),
            "--daemonize",
            str(lab.dir / "pasta.pid"),
        ]

    def startup_ms(
        self, lab: Lab, container: Container, mtu: int, repeat: int
    ) -> list[float]:
        result = lab.host.run(
            [
                *self._launcher(lab),
                "--repeat",
                str(repeat),
                "--",
                *self._argv(lab, container, mtu, False),
            ],
            timeout=20 + 5 * repeat,
            check=False,
        )
        record = json.loads((result.stdout.strip().splitlines() or ["{}"])[-1])
        if "ready_ms" not in record:
            tail = " | ".join(result.stderr.strip().splitlines()[-3:])
            raise LabError(f"{record.get('error') or result.describe()}; {tail}")
        return [float(x) for x in record["ready_ms"]]

    def start(self, lab: Lab, container: Container, mtu: int) -> Running:
        proc = lab.host.spawn(
            [*self._launcher(lab), "--", *self._argv(lab, container, mtu, True)],
            name="pasta",
        )
        record = _launch_json(proc, 30)
        proc.wait(10)
        pid = int(record["pid"])
        # pasta's background process is an orphan, adopted by the lab's PID 1
        # (it may sit in a PID namespace of its own below the lab's).
        level = len(ns_pids(lab.host.host_pid)) - 1
        host_pid = next(
            (
                k
                for k in children_of(lab.host.host_pid)
                if ns_pids(k)[level : level + 1] == [pid]
            ),
            None,
        )
        if host_pid is None:
            raise LabError(f"pasta's background process {pid} not found")
        return Running(
            self.name,
            None,
            host_pid,
            float(record["ready_ms"]),
            forwards=dict(FWD_PORTS),
        )


class VethImpl(Impl):
    """A kernel veth pair: no daemon, the ceiling."""

    name = "veth"
    has_daemon = False

    def start(self, lab: Lab, container: Container, mtu: int) -> Running:
        lab.host.sh(
            f"""
            ip link add vb0 mtu {mtu} type veth peer name tap0 mtu {mtu} \
                netns {container.lab_pid}
            ip addr add {GATEWAY}/24 dev vb0
            ip link set vb0 up
            """
        )
        container.sh(
            f"""
            ip addr add {GUEST}/24 dev tap0
            ip link set tap0 up
            ip route add default via {GATEWAY} dev tap0
            """
        )
        # No forwarder: clients connect to the container's address directly.
        forwards = {"lo": (GUEST, GUEST_PORT), "ext": (GUEST, GUEST_PORT)}
        return Running(self.name, None, None, forwards=forwards)


def make_impls() -> dict[str, Impl]:
    """Every implementation the benchmark knows, by name."""
    return {
        "slirpy": SlirpImpl(
            "slirpy",
            [PYTHON, "-m", "slirpy"],
            {"PYTHONPATH": str(REPO_ROOT)},
        ),
        "slirpy-splice": SlirpImpl(
            "slirpy-splice",
            [PYTHON, "-m", "slirpy", "--port-splice"],
            {"PYTHONPATH": str(REPO_ROOT)},
        ),
        "slirp4netns": SlirpImpl("slirp4netns", [SLIRP4NETNS], {}),
        "pasta": PastaImpl(),
        "veth": VethImpl(),
    }
