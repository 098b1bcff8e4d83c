# SPDX-License-Identifier: GPL-2.0-or-later
"""Namespaces and processes for the benchmark.

Layout of one lab (the same recipe as the end-to-end tests)::

    bench (real root, init namespaces)
     └─ unshare --user --map-root-user --net --mount --pid --fork   "host"
         │  lo up; veth0 198.18.0.2/24 <-> veth1 (no address); default route
         │  via 198.18.0.1, a permanent neighbour nobody answers; the daemon
         │  and every host-side server and client run here
         └─ unshare --user --map-root-user --net                     "container"
              tap0 (or a veth end): 10.0.2.100/24, default via 10.0.2.2

Nothing in a lab can reach the machine's real network.  The outer
namespace's PID 1 is a ``sleep``; killing it (or its ``unshare`` parent,
which uses ``--kill-child`` and dies with the benchmark through
``--pdeathsig``) kills everything the lab started.  Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PYTHON = sys.executable
TOOLS = Path(__file__).resolve().parent / "tools"

GATEWAY = "10.0.2.2"
GUEST = "10.0.2.100"
HOST_EXT = "198.18.0.2"
"""A non-loopback address of the host namespace (clients bind it for the tap path)."""
BLACKHOLE_NEXT_HOP = "198.18.0.1"

CLK_TCK = os.sysconf("SC_CLK_TCK")


class LabError(RuntimeError):
    """The lab could not do what a case asked (set-up, timeout, bad output)."""


# --------------------------------------------------------------------------
# /proc helpers


def children_of(pid: int) -> list[int]:
    """Host PIDs of the direct children of ``pid`` (empty if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict (empty if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def memory_kib(pid: int) -> tuple[int, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in KiB."""
    status = proc_status(pid)
    if "VmRSS" not in status:
        raise LabError(f"process {pid} is gone")
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        raise LabError(f"process {pid} is gone") from exc
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def ns_pids(host_pid: int) -> list[int]:
    """The ``NSpid`` line: the PID of ``host_pid`` in each nested PID namespace."""
    return [int(x) for x in proc_status(host_pid).get("NSpid", "").split()]


def listening(host_pid: int, port: int, proto: str = "tcp") -> bool:
    """True if the network namespace of ``host_pid`` has a socket on ``port``.

    TCP: a listening socket; UDP: any bound socket.
    """
    found = False
    for name in (proto, proto + "6"):
        try:
            lines = Path(f"/proc/{host_pid}/net/{name}").read_text().splitlines()
        except OSError:
            continue
        for line in lines[1:]:
            parts = line.split()
            local, state = parts[1], parts[3]
            if int(local.rsplit(":", 1)[1], 16) != port:
                continue
            if proto == "udp" or state == "0A":
                found = True
    return found


# --------------------------------------------------------------------------
# Processes


@dataclass(frozen=True)
class Result:
    """What a finished command left behind."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self, limit: int = 2000) -> str:
        """A short readable summary for error records."""
        text = f"$ {shlex.join(self.argv)} -> exit {self.returncode}"
        err = self.stderr.strip()
        if err:
            text += f"; stderr: {err[-limit:]}"
        return text


class Proc:
    """A process the benchmark started, normally ``nsenter ... -- PROGRAM``.

    ``popen`` is the process forked here; :meth:`target_pid` is the child
    ``nsenter``/``unshare`` forked to run the program in the lab's PID
    namespace.  stdout is read line by line in a thread; stderr goes to a file.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stdout: list[str] = []
        with open(log_path, "wb") as stderr:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=str(log_path.parent),
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace")
            self._stdout.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def readline(self, timeout: float) -> str:
        """The next stdout line; raises :class:`LabError` on EOF or timeout."""
        try:
            line = self._lines.get(timeout=max(timeout, 0.001))
        except queue.Empty:
            raise LabError(f"{self.name}: no output in {timeout:.0f}s") from None
        if line is None:
            self._lines.put(None)
            raise LabError(f"{self.name}: exited early; {self.stderr_tail()}")
        return line.rstrip("\n")

    def listen_port(self, timeout: float = 15.0) -> int:
        """The port a bench tool names in the ``LISTEN <port>`` line it prints
        once it is ready."""
        line = self.readline(timeout)
        if not line.startswith("LISTEN "):
            raise LabError(f"{self.name} said {line!r}")
        return int(line.split()[1])

    def stdout(self) -> str:
        """Everything read from stdout so far."""
        return "".join(self._stdout)

    def stderr_tail(self, limit: int = 1500) -> str:
        """The end of the stderr log."""
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return text[-limit:]

    def alive(self) -> bool:
        """True while the forked process has not exited."""
        return self.popen.poll() is None

    def target_pid(self, timeout: float = 5.0) -> int:
        """Host PID of the program (the child ``nsenter``/``unshare`` forked)."""
        deadline = time.monotonic() + timeout
        while True:
            kids = children_of(self.popen.pid)
            if kids:
                return kids[0]
            if not self.alive() or time.monotonic() > deadline:
                raise LabError(f"{self.name}: no child process")
            time.sleep(0.002)

    def wait(self, timeout: float) -> int:
        """Wait for exit and return the code; kill and raise on timeout."""
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise LabError(f"{self.name}: still running after {timeout:.0f}s") from None
        self._reader.join(2)
        return rc

    def kill(self) -> None:
        """SIGKILL the program and its launcher, by PID, and reap."""
        if self.alive():
            for kid in children_of(self.popen.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._reader.join(2)
        if self.popen.stdout is not None and not self._reader.is_alive():
            self.popen.stdout.close()


# --------------------------------------------------------------------------
# Namespaces


class Namespace:
    """Somewhere to run commands: the lab's host or a container."""

    def __init__(self, lab: Lab, name: str, host_pid: int) -> None:
        self.lab = lab
        self.name = name
        self.host_pid = host_pid

    def spawn(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        """Start ``argv`` here in the background; the lab kills it at the end."""
        enter = [
            "nsenter",
            f"--target={self.host_pid}",
            "--user",
            "--net",
            "--mount",
            "--pid",
            f"--wd={self.lab.dir}",
            "--",
        ]
        full_env = dict(os.environ)
        full_env.update(env or {})
        label = name or Path(argv[0]).name
        proc = Proc(
            f"{self.name}:{label}",
            enter + list(argv),
            self.lab.log_path(f"{self.name}-{label}"),
            env=full_env,
        )
        return self.lab.track(proc)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run ``argv`` here to completion (killed after ``timeout``)."""
        proc = self.spawn(argv, env=env)
        rc = proc.wait(timeout)
        result = Result(list(argv), rc, proc.stdout(), proc.stderr_tail(20000))
        self.lab.untrack(proc)
        if check and rc != 0:
            raise LabError(f"command failed in {self.name}: {result.describe()}")
        return result

    def sh(self, script: str, *, timeout: float = 30.0) -> Result:
        """Run a shell script here (``sh -ec``)."""
        return self.run(["sh", "-ec", script], timeout=timeout)

    def tool(self, name: str, *args: str, timeout: float = 30.0) -> Result:
        """Run ``bench/tools/NAME.py ARGS`` here to completion."""
        return self.run(
            [PYTHON, str(TOOLS / f"{name}.py"), *args], timeout=timeout, check=False
        )

    def peer_client(self, mode: str, target: str, seconds: float) -> dict[str, Any]:
        """Run ``tools/peer.py``'s client against ``target`` (``HOST:PORT``)
        here for ``seconds``; its JSON record (``rate``, ``count``, ...)."""
        result = self.tool(
            "peer",
            "--mode",
            mode,
            "--connect",
            target,
            "--duration",
            f"{seconds:g}",
            timeout=seconds + 20,
        )
        lines = [x for x in result.stdout.splitlines() if x.startswith("{")]
        if not lines:
            raise LabError(f"peer client gave no result: {result.describe()}")
        record = dict(json.loads(lines[-1]))
        if record.get("error"):
            raise LabError(f"{mode}: {record['error']}")
        return record

    def spawn_tool(self, name: str, *args: str) -> Proc:
        """Start ``bench/tools/NAME.py ARGS`` here in the background."""
        return self.spawn([PYTHON, str(TOOLS / f"{name}.py"), *args], name=name)

    def wait_listen(self, port: int, proto: str = "tcp", timeout: float = 10.0) -> None:
        """Wait until something listens on ``port`` here."""
        deadline = time.monotonic() + timeout
        while not listening(self.host_pid, port, proto):
            if time.monotonic() > deadline:
                raise LabError(f"nothing listens on {proto} port {port} in {self.name}")
            time.sleep(0.005)


class Container(Namespace):
    """A child user+net namespace; ``lab_pid`` is its PID inside the lab."""

    def __init__(self, lab: Lab, name: str, host_pid: int, lab_pid: int) -> None:
        super().__init__(lab, name, host_pid)
        self.lab_pid = lab_pid


class Lab:
    """One outer host namespace, its container, servers and daemons."""

    def __init__(self, root: Path, name: str) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self._procs: list[Proc] = []
        self._seq = 0
        self._closed = False
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def log_path(self, label: str) -> Path:
        """A fresh log file name in the lab directory."""
        self._seq += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        return self.dir / f"{self._seq:03d}-{safe}.log"

    def track(self, proc: Proc) -> Proc:
        """Remember ``proc`` so :meth:`close` kills it."""
        self._procs.append(proc)
        return proc

    def untrack(self, proc: Proc) -> None:
        """Forget a process that has finished."""
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)

    def _start(self) -> None:
        argv = [
            "setpriv",
            "--pdeathsig=SIGKILL",
            "unshare",
            "--user",
            "--map-root-user",
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            "echo ready; exec sleep 3600",
        ]
        self.keeper = self.track(Proc("outer", argv, self.log_path("outer")))
        line = self.keeper.readline(15)
        if line != "ready":
            raise LabError(f"outer namespace did not start: {line!r}")
        self.host = Namespace(self, "host", self.keeper.target_pid())
        if os.readlink(f"/proc/{self.host.host_pid}/ns/net") == os.readlink(
            "/proc/self/ns/net"
        ):
            raise LabError("the lab's host namespace is the real network namespace")
        self.host.sh(
            f"""
            ip link set lo up
            ip link add veth0 type veth peer name veth1
            ip link set veth1 up
            ip addr add {HOST_EXT}/24 dev veth0
            ip link set veth0 up
            ip neigh replace {BLACKHOLE_NEXT_HOP} lladdr 02:00:00:00:de:ad \
                dev veth0 nud permanent
            ip route add default via {BLACKHOLE_NEXT_HOP} dev veth0
            echo "1024 65535" > /proc/sys/net/ipv4/ip_local_port_range
            echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse
            """
        )

    def new_container(self, name: str = "container") -> Container:
        """Start a child user+net namespace inside the host namespace."""
        keeper = self.host.spawn(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "--net",
                "sh",
                "-c",
                "echo $$; exec sleep 3600",
            ],
            name=name,
        )
        pid = int(keeper.readline(15))
        container = Container(self, name, keeper.target_pid(), pid)
        if os.readlink(f"/proc/{container.host_pid}/ns/net") == os.readlink(
            f"/proc/{self.host.host_pid}/ns/net"
        ):
            raise LabError("the container shares the host namespace's network")
        container.sh(
            """
            ip link set lo up
            echo "1024 65535" > /proc/sys/net/ipv4/ip_local_port_range
            echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse
            """
        )
        return container

    def close(self) -> None:
        """Kill everything the lab started, by PID, then the namespace itself."""
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self._procs):
            proc.kill()
