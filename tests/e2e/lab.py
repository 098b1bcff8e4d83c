# SPDX-License-Identifier: GPL-2.0-or-later
"""The end-to-end test lab: namespaces, processes and the daemon under test.

Layout of one lab (see ``shared/design/testing.md``)::

    pytest (real root, init namespaces)
     └─ unshare --user --map-root-user --net --mount --pid --fork   "host"
         │  lo up; veth0 198.18.0.2/24 <-> veth1 (no address); default route
         │  via 198.18.0.1, a permanent neighbour nobody answers; a private
         │  /etc/resolv.conf naming 127.0.0.1; the daemon and every
         │  host-side server run here
         └─ unshare --user --map-root-user --net                     "container"
              tap0: 10.0.2.100/24 (by the daemon's -c, or by the test)

The outer namespace's PID 1 is a ``sleep``: killing it (or its ``unshare``
parent, which uses ``--kill-child``) kills every process of the lab, so
teardown is total.  Nothing in the lab can reach the machine's real network:
the host namespace has only ``lo`` and a veth pair whose far end is silent.

Commands enter a namespace with ``nsenter -t PID -U -n -m -p`` (a fresh child
in the lab's PID namespace).  :class:`Proc` knows both the ``nsenter`` process
and the program it runs, so a test kills or signals the program itself, by
PID.  The daemon's ``--ready-fd`` and ``--exit-fd`` are FIFOs opened on fds 3
and 4 by a ``sh`` that then ``exec``\\ s the daemon, so only the daemon holds
them (``nsenter`` would otherwise keep a pipe's write end open forever).

Port forwards: ``start_daemon(..., api_socket=lab.api_socket_path())`` gives
the daemon an ``--api-socket``; :func:`api_request` sends raw bytes to it (as
podman or rootlesskit would) and :meth:`Daemon.add_hostfwd` and friends wrap
the commands.  The socket is reached through the file system, so these run in
pytest itself.  ``tools/fwd_peer.py`` (:func:`fwd_tcp`, :func:`fwd_udp`) is the
host-side client of a forward, :func:`tcp_server` a server behind it.

The implementation under test comes from ``SLIRPY_E2E_IMPL``: ``slirpy``
(default; ``python -m slirpy`` from this repository) or ``slirp4netns`` (the
reference binary, to prove that a test is right).  slirpy runs under each
event loop named by ``SLIRPY_E2E_LOOP`` (``uvloop``, ``asyncio`` or ``both``,
the default), passed to it as ``SLIRPY_LOOP``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import random
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

IMPL_ENV = "SLIRPY_E2E_IMPL"
IMPLS = ("slirpy", "slirp4netns")
LOOP_ENV = "SLIRPY_E2E_LOOP"
LOOPS = ("uvloop", "asyncio")
VENV_PYTHON = "/opt/slirpy-venv/bin/python"
PYTHON = VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable
"""The interpreter for tools and for slirpy run as an unprivileged user."""
SLIRP4NETNS = "/usr/bin/slirp4netns"
REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_SRC = Path(__file__).resolve().parent / "tools"

UNPRIVILEGED_UID = 65534

GATEWAY = "10.0.2.2"
DNS = "10.0.2.3"
GUEST = "10.0.2.100"
REMOTE = "198.18.0.2"
"""An address of the host namespace that stands in for a public server."""
BLACKHOLE_NEXT_HOP = "198.18.0.1"
"""The host namespace's default gateway: a permanent neighbour nobody answers."""

READY_FD = 3
EXIT_FD = 4

DEFAULT_TIMEOUT = 30.0
API_TIMEOUT = 5.0
"""Seconds any single API socket operation may take."""


class LabError(RuntimeError):
    """The lab could not do what a test asked (set-up, timeout, bad output)."""


# --------------------------------------------------------------------------
# The implementation under test


@dataclass(frozen=True)
class Impl:
    """How to launch the daemon under test."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    loop: str | None = None
    """slirpy's event loop (``uvloop`` or ``asyncio``); None for slirp4netns."""

    @property
    def is_slirpy(self) -> bool:
        """True when the daemon under test is slirpy."""
        return self.name == "slirpy"

    @property
    def id(self) -> str:
        """A short label for test ids: ``slirp4netns``, ``slirpy-uvloop``..."""
        return f"{self.name}-{self.loop}" if self.loop else self.name


def impl_name() -> str:
    """The implementation named by ``SLIRPY_E2E_IMPL`` (default ``slirpy``)."""
    name = os.environ.get(IMPL_ENV, "slirpy").strip() or "slirpy"
    if name not in IMPLS:
        raise LabError(f"{IMPL_ENV}={name!r}: expected one of {', '.join(IMPLS)}")
    return name


def loop_names() -> list[str | None]:
    """The event loops to run slirpy under (``SLIRPY_E2E_LOOP``, default both)."""
    if impl_name() != "slirpy":
        return [None]
    wanted = os.environ.get(LOOP_ENV, "both").strip() or "both"
    if wanted == "both":
        return list(LOOPS)
    if wanted not in LOOPS:
        raise LabError(f"{LOOP_ENV}={wanted!r}: expected uvloop, asyncio or both")
    return [wanted]


def make_impl(
    name: str, pythonpath: Path | None = None, loop: str | None = None
) -> Impl:
    """Build the launch recipe for ``name``.

    ``pythonpath`` is where the ``slirpy`` package lives (default: this
    repository); the unprivileged lab passes a world-readable copy.  ``loop``
    picks slirpy's event loop through ``SLIRPY_LOOP``.
    """
    if name == "slirp4netns":
        return Impl(name, (SLIRP4NETNS,))
    env = {"SLIRPY_LOOP": loop or "uvloop"}
    if pythonpath is None:
        env["PYTHONPATH"] = str(REPO_ROOT)
        return Impl(name, (sys.executable, "-m", "slirpy"), env, loop)
    env["PYTHONPATH"] = str(pythonpath)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return Impl(name, (PYTHON, "-m", "slirpy"), env, loop)


# --------------------------------------------------------------------------
# Per-session resources


@dataclass(frozen=True)
class DataFile:
    """A deterministic payload on disk and its SHA-256."""

    path: str
    size: int
    sha256: str


def rand_bytes(seed: int, size: int) -> bytes:
    """The same bytes ``tools/tcp_peer.py`` sends for ``send:rand:SEED:SIZE``."""
    return random.Random(seed).randbytes(size)


def rand_sha256(seed: int, size: int) -> str:
    """SHA-256 of :func:`rand_bytes`."""
    return hashlib.sha256(rand_bytes(seed, size)).hexdigest()


class Session:
    """Files shared by every lab of a pytest session, world-readable.

    The repository may sit where other uids cannot go, so the tools (and, for
    the unprivileged lab, the ``slirpy`` package) are copied to a temporary
    directory with mode 0755.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="slirpy-e2e-"))
        self.root.chmod(0o755)
        self.tools = self.root / "tools"
        shutil.copytree(
            TOOLS_SRC, self.tools, ignore=shutil.ignore_patterns("__pycache__")
        )
        _make_world_readable(self.tools)
        self._data: dict[tuple[int, int], DataFile] = {}
        self._pylib: Path | None = None
        self._lab_seq = 0

    def tool(self, name: str) -> str:
        """Path of ``tools/NAME.py`` in the session copy."""
        path = self.tools / f"{name}.py"
        if not path.is_file():
            raise LabError(f"no such tool: {name}")
        return str(path)

    def data_file(self, size: int, seed: int = 1) -> DataFile:
        """A file of ``size`` seeded pseudo-random bytes (cached per session)."""
        key = (size, seed)
        if key not in self._data:
            data = rand_bytes(seed, size)
            path = self.root / f"data-{seed}-{size}.bin"
            path.write_bytes(data)
            path.chmod(0o644)
            self._data[key] = DataFile(
                str(path), size, hashlib.sha256(data).hexdigest()
            )
        return self._data[key]

    def unprivileged_pylib(self) -> Path:
        """A world-readable copy of the ``slirpy`` package; its parent dir."""
        if self._pylib is None:
            pylib = self.root / "pylib"
            shutil.copytree(
                REPO_ROOT / "slirpy",
                pylib / "slirpy",
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
            _make_world_readable(pylib)
            self._pylib = pylib
        return self._pylib

    def new_lab_dir(self) -> Path:
        """A fresh directory for one lab's logs and FIFOs (mode 0777)."""
        self._lab_seq += 1
        path = self.root / f"lab{self._lab_seq}"
        path.mkdir()
        path.chmod(0o777)
        return path

    def close(self) -> None:
        """Remove the session directory."""
        shutil.rmtree(self.root, ignore_errors=True)


def _make_world_readable(top: Path) -> None:
    top.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames:
            (Path(dirpath) / name).chmod(0o755)
        for name in filenames:
            (Path(dirpath) / name).chmod(0o644)


# --------------------------------------------------------------------------
# Processes


def children_of(pid: int) -> list[int]:
    """Host PIDs of the direct children of ``pid`` (empty if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def ns_pids(host_pid: int) -> list[int]:
    """The ``NSpid`` line of a process: its PID in each nested PID namespace."""
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    raise LabError(f"no NSpid for {host_pid}")


def proc_uids(host_pid: int) -> list[int]:
    """Real, effective, saved and fs uid of a process, as the host sees them."""
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise LabError(f"no Uid for {host_pid}")


@dataclass(frozen=True)
class Result:
    """What a finished command left behind."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stdout line that is a JSON object."""
        return _json_lines(self.stdout.splitlines())

    def describe(self) -> str:
        """A readable summary for assertion messages."""
        return (
            f"$ {shlex.join(self.argv)}\n-> exit {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def _json_lines(lines: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


class Proc:
    """A process the lab started, normally ``nsenter ... -- PROGRAM``.

    ``popen`` is the process pytest forked (``nsenter``, or ``unshare`` for
    the lab itself); :meth:`target_pid` is the child it forked to run the
    program in the lab's PID namespace.  stdout is read line by line in a
    thread; stderr goes to a log file.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stdout: list[str] = []
        with open(log_path, "wb") as stderr:
            self.popen: subprocess.Popen[bytes] = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                pass_fds=tuple(pass_fds),
                cwd=str(log_path.parent),
            )
        self._reader = threading.Thread(
            target=self._read, name=f"stdout-{name}", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        """Host PID of the process pytest forked."""
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace")
            self._stdout.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def readline(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The next stdout line; raises :class:`LabError` on EOF or timeout."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise LabError(
                f"{self.name}: no output line in {timeout}s\n{self.describe()}"
            ) from None
        if line is None:
            self._lines.put(None)
            raise LabError(f"{self.name}: stdout closed\n{self.describe()}")
        return line.rstrip("\n")

    def json_lines(
        self, count: int, timeout: float = DEFAULT_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Wait for ``count`` JSON lines on stdout (skipping other lines)."""
        deadline = time.monotonic() + timeout
        out: list[dict[str, Any]] = []
        while len(out) < count:
            line = self.readline(max(0.01, deadline - time.monotonic()))
            out.extend(_json_lines([line]))
        return out

    def stdout(self) -> str:
        """Everything read from stdout so far."""
        return "".join(self._stdout)

    def stderr(self) -> str:
        """The stderr log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        """A readable summary for assertion messages."""
        rc = self.popen.poll()
        state = "running" if rc is None else f"exit {rc}"
        return (
            f"[{self.name}] $ {shlex.join(self.argv)}\n-> {state}\n"
            f"--- stdout\n{self.stdout()}--- stderr\n{self.stderr()}"
        )

    def alive(self) -> bool:
        """True while the forked process has not exited."""
        return self.popen.poll() is None

    def target_pid(self, timeout: float = 5.0) -> int:
        """Host PID of the program (the child ``nsenter``/``unshare`` forked)."""
        deadline = time.monotonic() + timeout
        while True:
            kids = children_of(self.pid)
            if kids:
                return kids[0]
            if not self.alive() or time.monotonic() > deadline:
                raise LabError(f"{self.name}: no child process\n{self.describe()}")
            time.sleep(0.002)

    def send_signal(self, sig: int) -> None:
        """Signal the program itself (not ``nsenter``)."""
        os.kill(self.target_pid(), sig)

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait for exit; returns the code (``-SIG`` if killed by a signal)."""
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise LabError(
                f"{self.name}: still running after {timeout}s\n{self.describe()}"
            ) from None
        self._reap()
        return rc

    def kill(self) -> None:
        """SIGKILL the program and its launcher, by PID, and reap."""
        if self.alive():
            for kid in children_of(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._reap()

    def _reap(self) -> None:
        if self.popen.returncode is not None:
            self._reader.join(2)
        if self.popen.stdout is not None and not self._reader.is_alive():
            self.popen.stdout.close()

    def result(self) -> Result:
        """The finished command's outcome (call after :meth:`wait`)."""
        rc = self.popen.returncode
        if rc is None:
            raise LabError(f"{self.name}: still running")
        return Result(self.argv, rc, self.stdout(), self.stderr())


# --------------------------------------------------------------------------
# Namespaces


class Namespace:
    """Somewhere to run commands: the lab's host or a container."""

    def __init__(self, lab: Lab, name: str, host_pid: int) -> None:
        self.lab = lab
        self.name = name
        self.host_pid = host_pid
        """Host PID of a process whose namespaces this is."""

    def enter_argv(self) -> list[str]:
        """The ``nsenter`` prefix that runs a program here."""
        return [
            "nsenter",
            f"--target={self.host_pid}",
            "--user",
            "--net",
            "--mount",
            "--pid",
            f"--wd={self.lab.dir}",
            "--",
        ]

    def spawn(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> Proc:
        """Start ``argv`` here in the background; the lab kills it at the end."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        label = name or Path(argv[0]).name
        return self.lab.track(
            Proc(
                f"{self.name}:{label}",
                self.enter_argv() + list(argv),
                self.lab.log_path(f"{self.name}-{label}"),
                env=full_env,
                pass_fds=pass_fds,
            )
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run ``argv`` here to completion (killed after ``timeout``)."""
        proc = self.spawn(argv, env=env)
        try:
            proc.wait(timeout)
        except LabError:
            proc.kill()
            raise
        result = proc.result()
        if check and result.returncode != 0:
            raise LabError(f"command failed in {self.name}\n{result.describe()}")
        return result

    def sh(
        self, script: str, *, timeout: float = DEFAULT_TIMEOUT, check: bool = True
    ) -> Result:
        """Run a shell script here."""
        return self.run(["sh", "-ec", script], timeout=timeout, check=check)

    def python(
        self,
        tool: str,
        *args: str,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = False,
    ) -> Result:
        """Run ``tools/TOOL.py ARGS`` here with the venv's Python."""
        return self.run(
            [PYTHON, self.lab.session.tool(tool), *args], timeout=timeout, check=check
        )

    def spawn_python(self, tool: str, *args: str, name: str | None = None) -> Proc:
        """Start ``tools/TOOL.py ARGS`` here in the background."""
        return self.spawn(
            [PYTHON, self.lab.session.tool(tool), *args], name=name or tool
        )

    def start_server(self, tool: str, *args: str, name: str | None = None) -> Server:
        """Start a tool that prints ``LISTEN <port>`` and wait for that line."""
        proc = self.spawn_python(tool, *args, name=name)
        line = proc.readline(DEFAULT_TIMEOUT)
        if not line.startswith("LISTEN "):
            raise LabError(f"unexpected first line {line!r}\n{proc.describe()}")
        return Server(proc, int(line.split()[1]))

    def netns_id(self) -> str:
        """The network namespace inode, as ``readlink /proc/PID/ns/net`` shows it."""
        return os.readlink(f"/proc/{self.host_pid}/ns/net")


@dataclass
class Server:
    """A background tool listening on ``port``."""

    proc: Proc
    port: int

    def results(
        self, count: int, timeout: float = DEFAULT_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Wait for ``count`` JSON result lines."""
        return self.proc.json_lines(count, timeout)


class Container(Namespace):
    """A child user+net namespace made from inside the host namespace."""

    def __init__(
        self, lab: Lab, name: str, keeper: Proc, pid: int, host_pid: int
    ) -> None:
        super().__init__(lab, name, host_pid)
        self.keeper = keeper
        self.pid = pid
        """PID of the container's process as the host namespace sees it."""


# --------------------------------------------------------------------------
# The daemon


class Daemon:
    """A running slirp4netns or slirpy, with its ready and exit FIFOs."""

    def __init__(
        self,
        proc: Proc,
        ready_fd: int | None,
        exit_fd: int | None,
        api_socket: str | None = None,
    ) -> None:
        self.proc = proc
        self.api_socket = api_socket
        """The ``--api-socket`` path, if the daemon was given one."""
        self.ready_fd = ready_fd
        """pytest's read end of the ready FIFO (the daemon writes fd 3)."""
        self.exit_fd = exit_fd
        """pytest's end of the exit FIFO (the daemon polls fd 4)."""
        self.ready_data = b""
        self.ready_eof = False

    def _read_ready(self, timeout: float, until_eof: bool) -> None:
        if self.ready_fd is None:
            raise LabError("daemon started without a ready fd")
        poller = select.poll()
        poller.register(self.ready_fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not self.ready_eof and (until_eof or not self.ready_data):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                what = "EOF" if self.ready_data else "the ready byte"
                raise LabError(
                    f"no {what} on the ready fd in {timeout}s\n{self.describe()}"
                )
            if not poller.poll(min(remaining, 0.1) * 1000):
                if not self.proc.alive() and not self.ready_data:
                    raise LabError(
                        f"daemon exited before it was ready\n{self.describe()}"
                    )
                continue
            chunk = os.read(self.ready_fd, 4096)
            if chunk:
                self.ready_data += chunk
            else:
                self.ready_eof = True

    def wait_ready(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait for the first byte on the ready fd; it must be ``b"1"``."""
        self._read_ready(timeout, until_eof=False)
        if not self.ready_data.startswith(b"1"):
            raise LabError(f"ready fd said {self.ready_data!r}\n{self.describe()}")

    def read_ready_to_eof(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Everything written to the ready fd up to its EOF."""
        self._read_ready(timeout, until_eof=True)
        return self.ready_data

    def close_exit_fd(self) -> None:
        """Drop pytest's end of the exit FIFO: the daemon sees a hang-up."""
        if self.exit_fd is None:
            raise LabError("daemon started without an exit fd")
        os.close(self.exit_fd)
        self.exit_fd = None

    def describe(self) -> str:
        """Command line, state and output of the daemon."""
        return self.proc.describe()

    def api(self, command: dict[str, Any], timeout: float = API_TIMEOUT) -> Any:
        """Send ``command`` to the API socket as rootlesskit does; the decoded reply."""
        if self.api_socket is None:
            raise LabError("daemon started without an API socket")
        return api_call(self.api_socket, command, timeout=timeout)

    def add_hostfwd(
        self,
        proto: str,
        host_port: int,
        guest_port: int,
        *,
        host_addr: str = "0.0.0.0",
        guest_addr: str = "",
    ) -> int:
        """``add_hostfwd``; the new forward's id (:class:`LabError` on an error)."""
        reply = self.api(
            hostfwd_command(proto, host_port, guest_port, host_addr, guest_addr)
        )
        if not isinstance(reply, dict) or "return" not in reply:
            raise LabError(f"add_hostfwd failed: {reply}\n{self.describe()}")
        return int(reply["return"]["id"])

    def remove_hostfwd(self, fwd_id: int) -> None:
        """``remove_hostfwd``; :class:`LabError` unless it answers ``{"return":{}}``."""
        reply = self.api({"execute": "remove_hostfwd", "arguments": {"id": fwd_id}})
        if reply != {"return": {}}:
            raise LabError(f"remove_hostfwd {fwd_id} failed: {reply}")

    def list_hostfwd(self) -> list[dict[str, Any]]:
        """The ``entries`` member of a ``list_hostfwd`` reply (both daemons have it)."""
        reply = self.api({"execute": "list_hostfwd"})
        if not isinstance(reply, dict) or not isinstance(reply.get("entries"), list):
            raise LabError(f"list_hostfwd: unexpected reply {reply}")
        return list(reply["entries"])

    def close(self) -> None:
        """Kill the daemon if it still runs and close pytest's FIFO ends."""
        self.proc.kill()
        for fd in (self.ready_fd, self.exit_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.ready_fd = self.exit_fd = None


# --------------------------------------------------------------------------
# The API socket
#
# A path-bound UNIX socket is reached through the file system, not through a
# network namespace, and pytest sees the lab directory: API requests are made
# from pytest itself (real root may connect to the daemon's 0600 socket).


def api_request(
    path: str,
    request: bytes,
    *,
    read_to_eof: bool = True,
    shut_write: bool = True,
    timeout: float = API_TIMEOUT,
) -> bytes:
    """Send ``request`` as is to the API socket at ``path``; the raw reply.

    ``shut_write``: ``shutdown(SHUT_WR)`` after the request (podman and
    rootlesskit both do).  ``read_to_eof``: read until the daemon closes
    (rootlesskit's ``io.ReadAll``); otherwise one ``recv`` of at most 2048
    bytes (podman's single ``Read``).  Every step is bounded by ``timeout``.
    While the daemon's listen backlog is full (slirp4netns listens with a
    backlog of 0) the connect is retried, as a blocking ``connect`` waits.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock.connect(path)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"API socket backlog full for {timeout}s") from None
                time.sleep(0.001)
        sock.sendall(request)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        if not read_to_eof:
            return sock.recv(2048)
        reply = bytearray()
        deadline = time.monotonic() + timeout
        while chunk := sock.recv(65536):
            reply += chunk
            if time.monotonic() > deadline:
                raise LabError(f"API reply not finished in {timeout}s: {reply!r}")
        return bytes(reply)


def api_encode(command: dict[str, Any]) -> bytes:
    """``command`` as Go's ``json.Encoder`` writes it: compact, then a newline."""
    return json.dumps(command, separators=(",", ":")).encode() + b"\n"


def api_call(
    path: str, command: dict[str, Any], *, timeout: float = API_TIMEOUT
) -> Any:
    """Send ``command`` as rootlesskit does (read to EOF); the decoded reply."""
    reply = api_request(path, api_encode(command), timeout=timeout)
    try:
        return json.loads(reply)
    except ValueError:
        raise LabError(f"API reply is not JSON: {reply!r}") from None


def hostfwd_command(
    proto: str,
    host_port: int,
    guest_port: int,
    host_addr: str = "0.0.0.0",
    guest_addr: str = "",
) -> dict[str, Any]:
    """An ``add_hostfwd`` request with podman's member order."""
    return {
        "execute": "add_hostfwd",
        "arguments": {
            "proto": proto,
            "host_addr": host_addr,
            "host_port": host_port,
            "guest_addr": guest_addr,
            "guest_port": guest_port,
        },
    }


# --------------------------------------------------------------------------
# The lab

_HOST_SETUP = f"""
ip link set lo up
ip link add veth0 type veth peer name veth1
ip link set veth1 up
ip addr add {REMOTE}/24 dev veth0
ip link set veth0 up
ip neigh replace {BLACKHOLE_NEXT_HOP} lladdr 02:00:00:00:de:ad dev veth0 nud permanent
ip route add default via {BLACKHOLE_NEXT_HOP} dev veth0
mount --bind "$0" /etc/resolv.conf
"""


class Lab:
    """One outer host namespace, its containers, servers and daemons."""

    def __init__(
        self, session: Session, impl: Impl, *, unprivileged: bool = False
    ) -> None:
        self.session = session
        self.impl = impl
        self.unprivileged = unprivileged
        self.dir = session.new_lab_dir()
        self._procs: list[Proc] = []
        self._daemons: list[Daemon] = []
        self._seq = 0
        self._closed = False
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # -- plumbing

    def log_path(self, label: str) -> Path:
        """A fresh log file name in the lab directory."""
        self._seq += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        return self.dir / f"{self._seq:03d}-{safe}.log"

    def track(self, proc: Proc) -> Proc:
        """Remember ``proc`` so :meth:`close` kills it."""
        self._procs.append(proc)
        return proc

    def _outer_argv(self) -> list[str]:
        outer = [
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
        if not self.unprivileged:
            return outer
        # As real root: a private mount namespace with a world-usable TUN node
        # on a tmpfs (the machine's own node stays untouched), then drop to an
        # unprivileged uid which makes the lab's namespaces itself.
        inner = [
            "setpriv",
            f"--reuid={UNPRIVILEGED_UID}",
            f"--regid={UNPRIVILEGED_UID}",
            "--clear-groups",
            "--inh-caps=-all",
            *outer[1:],
        ]
        script = (
            "mount -t tmpfs -o mode=0755,size=64k slirpy-e2e-devnet /dev/net && "
            "mknod -m 0666 /dev/net/tun c 10 200 && "
            'exec "$@"'
        )
        return [
            "setpriv",
            "--pdeathsig=SIGKILL",
            "unshare",
            "--mount",
            "--propagation=private",
            "sh",
            "-c",
            script,
            "outer",
            *inner,
        ]

    def _start(self) -> None:
        self.keeper = self.track(
            Proc("outer", self._outer_argv(), self.log_path("outer"))
        )
        line = self.keeper.readline(DEFAULT_TIMEOUT)
        if line != "ready":
            raise LabError(
                f"outer namespace did not start: {line!r}\n{self.keeper.describe()}"
            )
        self.host = Namespace(self, "host", self.keeper.target_pid())
        if self.host.netns_id() == os.readlink("/proc/self/ns/net"):
            raise LabError("the lab's host namespace is the real network namespace")
        resolv = self.dir / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\n")
        resolv.chmod(0o644)
        self.host.run(["sh", "-ec", _HOST_SETUP, str(resolv)])

    # -- building blocks

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
        pid = int(keeper.readline(DEFAULT_TIMEOUT))
        host_pid = keeper.target_pid()
        if ns_pids(host_pid)[-1] != pid:
            raise LabError(f"container PID mismatch: {ns_pids(host_pid)} vs {pid}")
        container = Container(self, name, keeper, pid, host_pid)
        if container.netns_id() in (
            self.host.netns_id(),
            os.readlink("/proc/self/ns/net"),
        ):
            raise LabError("the container shares a network namespace it must not")
        return container

    def daemon_target(self, container: Container, mode: str) -> list[str]:
        """The arguments that name ``container`` in ``mode``.

        ``pid``: ``PID``; ``path``: ``--netns-type=path /proc/PID/ns/net``
        with ``--userns-path``; ``netns-path``: slirpy's ``--netns-path``.
        """
        netns = f"/proc/{container.pid}/ns/net"
        userns = f"--userns-path=/proc/{container.pid}/ns/user"
        if mode == "pid":
            return [str(container.pid)]
        if mode == "path":
            return [userns, "--netns-type=path", netns]
        if mode == "netns-path":
            return [userns, f"--netns-path={netns}"]
        raise LabError(f"unknown mode {mode!r}")

    def start_daemon(
        self,
        container: Container | None,
        *options: str,
        configure: bool = True,
        mode: str = "pid",
        target: Sequence[str] | None = None,
        tap: str | None = "tap0",
        ready: bool = True,
        exit_fd: bool = False,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        api_socket: str | None = None,
    ) -> Daemon:
        """Start the daemon under test for ``container`` in the host namespace.

        argv: the implementation, ``-c`` unless ``configure=False``, the
        ``options``, ``-r 3`` (a FIFO) if ``ready``, ``-e 4`` (a FIFO pytest
        holds open) if ``exit_fd``, then ``target`` (default: the container in
        ``mode``, see :meth:`daemon_target`) and ``tap`` (omitted if None).
        ``api_socket`` adds ``--api-socket PATH`` before the target (see
        :meth:`api_socket_path`).  Waits for the ready byte when ``wait``
        (and ``ready``).
        """
        argv = [*self.impl.argv]
        if configure:
            argv.append("-c")
        argv += options
        redirs: list[str] = []
        ready_r: int | None = None
        exit_w: int | None = None
        self._seq += 1
        try:
            if ready:
                fifo = self._fifo(f"ready{self._seq}")
                ready_r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                redirs.append(f"{READY_FD}>{shlex.quote(fifo)}")
                argv += ["-r", str(READY_FD)]
            if exit_fd:
                fifo = self._fifo(f"exit{self._seq}")
                exit_w = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
                redirs.append(f"{EXIT_FD}<{shlex.quote(fifo)}")
                argv += ["-e", str(EXIT_FD)]
        except BaseException:
            for fd in (ready_r, exit_w):
                if fd is not None:
                    os.close(fd)
            raise
        if target is None:
            if container is None:
                raise LabError("start_daemon needs a container or a target")
            target = self.daemon_target(container, mode)
        if api_socket is not None:
            argv += ["--api-socket", api_socket]
        argv += target
        if tap is not None:
            argv.append(tap)
        script = f'exec {" ".join(redirs)}; exec "$@"' if redirs else 'exec "$@"'
        proc = self.host.spawn(
            ["sh", "-c", script, "daemon", *argv],
            name=self.impl.name,
            env=self.impl.env,
        )
        daemon = Daemon(proc, ready_r, exit_w, api_socket)
        self._daemons.append(daemon)
        if ready and wait:
            daemon.wait_ready(timeout)
        return daemon

    def api_socket_path(self, label: str = "api") -> str:
        """A fresh path for an ``--api-socket`` in the lab directory."""
        self._seq += 1
        return str(self.dir / f"{label}{self._seq}.sock")

    def run_daemon(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """Run the daemon under test with exactly ``args`` (usage errors)."""
        return self.host.run(
            [*self.impl.argv, *args], timeout=timeout, check=False, env=self.impl.env
        )

    def _fifo(self, label: str) -> str:
        path = self.dir / f"{label}.fifo"
        os.mkfifo(path)
        path.chmod(0o666)
        return str(path)

    def close(self) -> None:
        """Kill everything the lab started, by PID, then the namespace itself."""
        if self._closed:
            return
        self._closed = True
        for daemon in self._daemons:
            daemon.close()
        for proc in reversed(self._procs):
            proc.kill()


@contextlib.contextmanager
def open_lab(
    session: Session, impl: Impl, *, unprivileged: bool = False
) -> Iterator[Lab]:
    """A :class:`Lab` that is closed on exit."""
    lab = Lab(session, impl, unprivileged=unprivileged)
    try:
        yield lab
    finally:
        lab.close()


# --------------------------------------------------------------------------
# Environment checks


def lab_unavailable_reason() -> str | None:
    """Why this machine cannot run the lab, or None if it can."""
    if sys.platform != "linux":
        return "the end-to-end lab needs Linux namespaces"
    for tool in ("unshare", "nsenter", "setpriv", "ip", "sh"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    if os.geteuid() != 0 and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "/dev/net/tun is not usable by this uid (run the lab as root)"
    try:
        probe = subprocess.run(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "--net",
                "--mount",
                "--pid",
                "--fork",
                "true",
            ],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create namespaces: {exc}"
    if probe.returncode != 0:
        return (
            f"cannot create namespaces: {probe.stderr.decode(errors='replace').strip()}"
        )
    return None


# --------------------------------------------------------------------------
# Transfers


@dataclass(frozen=True)
class Transfer:
    """The two ends' reports of one TCP connection run by ``tools/tcp_peer.py``."""

    client: dict[str, Any]
    server: dict[str, Any]

    def step(self, side: str, op: str) -> dict[str, Any]:
        """The first ``op`` step (``send``/``recv``/``echo``) of ``side``."""
        record = self.client if side == "client" else self.server
        for step in record.get("steps", []):
            if step["op"] == op:
                return dict(step)
        raise AssertionError(f"{side} has no {op} step: {record}")


def tcp_transfer(
    lab: Lab,
    container: Container,
    *,
    server_actions: str,
    client_actions: str,
    bind: str = "127.0.0.1",
    connect: str = GATEWAY,
    server_ns: Namespace | None = None,
    timeout: float = 120.0,
) -> Transfer:
    """One TCP connection from ``container`` to a server in the host namespace.

    The server listens on ``bind`` (an address of the host namespace); the
    guest connects to ``connect`` (how the guest reaches it, e.g. 10.0.2.2
    for the host's loopback).  Raises :class:`LabError` if either side
    reports an error.
    """
    ns = server_ns or lab.host
    server = ns.start_server(
        "tcp_peer",
        f"--listen={bind}:0",
        f"--actions={server_actions}",
        f"--timeout={timeout}",
        name="tcp-server",
    )
    result = container.python(
        "tcp_peer",
        f"--connect={connect}:{server.port}",
        f"--actions={client_actions}",
        f"--timeout={timeout}",
        timeout=timeout + 10,
    )
    records = result.json_lines()
    if result.returncode != 0 or len(records) != 1 or records[0].get("error"):
        raise LabError(f"client failed\n{result.describe()}\n{server.proc.describe()}")
    served = server.results(1, timeout)
    if served[0].get("error"):
        raise LabError(f"server failed: {served[0]}\n{server.proc.describe()}")
    return Transfer(records[0], served[0])


def tcp_connect_error(lab: Lab, container: Container, address: str, port: int) -> str:
    """Connect from the guest and return the errno name (``""`` if it worked)."""
    result = container.python(
        "tcp_peer",
        f"--connect={address}:{port}",
        "--actions=",
        "--timeout=20",
        timeout=30,
    )
    records = result.json_lines()
    if len(records) != 1:
        raise LabError(f"unexpected client output\n{result.describe()}")
    return str(records[0].get("error") or "")


def link_mtu(ns: Namespace, ifname: str) -> int:
    """The MTU of ``ifname`` in ``ns``."""
    result = ns.run(["ip", "-json", "link", "show", "dev", ifname])
    return int(json.loads(result.stdout)[0]["mtu"])


def udp_datagram(index: int, max_size: int) -> bytes:
    """Datagram ``index`` as ``tools/udp_peer.py`` sends it."""
    return rand_bytes(index, 1 + (index * 7919) % max_size)


def udp_echo(
    lab: Lab,
    container: Container,
    *,
    bind: str = "127.0.0.1",
    connect: str = GATEWAY,
    count: int = 20,
    size: int = 1400,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Echo ``count`` datagrams from the guest off a server on ``bind``.

    Checks that every echo came back intact (in the guest) and that the
    server saw every datagram's exact content; returns the server's records.
    """
    server = lab.host.start_server(
        "udp_peer",
        f"--listen={bind}:0",
        f"--count={count * 10}",
        f"--timeout={timeout + 10}",
    )
    result = container.python(
        "udp_peer",
        f"--connect={connect}:{server.port}",
        f"--count={count}",
        f"--size={size}",
        f"--timeout={timeout}",
        timeout=timeout + 10,
    )
    records = result.json_lines()
    if result.returncode != 0 or len(records) != 1 or records[0]["echoed"] != count:
        raise LabError(
            f"UDP echo failed\n{result.describe()}\n{server.proc.describe()}"
        )
    expected = {hashlib.sha256(udp_datagram(i, size)).hexdigest() for i in range(count)}
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while expected - {s["sha256"] for s in seen}:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LabError(f"server missed datagrams\n{server.proc.describe()}")
        seen += server.results(1, remaining)
    return seen


# --------------------------------------------------------------------------
# Port forwards (the daemon's API socket; ``tools/fwd_peer.py`` on the host)


def tcp_server(
    ns: Namespace,
    actions: str,
    *,
    bind: str = "0.0.0.0",
    count: int = 1,
    timeout: float = 60.0,
    name: str = "tcp-server",
) -> Server:
    """A ``tools/tcp_peer.py`` server in ``ns`` (e.g. the guest behind a forward)."""
    return ns.start_server(
        "tcp_peer",
        f"--listen={bind}:0",
        f"--actions={actions}",
        f"--count={count}",
        f"--timeout={timeout}",
        name=name,
    )


def fwd_tcp(
    ns: Namespace,
    targets: Sequence[str],
    actions: str = "recv",
    *,
    bind: str | None = None,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Connect to each ``HOST:PORT`` in turn from ``ns`` (``tools/fwd_peer.py``).

    One record per target (see the tool): digests of what was sent and
    received, ``eof``, ``elapsed``, ``error`` / ``connect_error``.
    """
    args = [f"--connect={target}" for target in targets]
    if bind is not None:
        args.append(f"--bind={bind}")
    result = ns.python(
        "fwd_peer",
        "tcp",
        *args,
        f"--actions={actions}",
        f"--timeout={timeout}",
        timeout=timeout * len(targets) + 10,
    )
    records = result.json_lines()
    if len(records) != len(targets):
        raise LabError(f"unexpected fwd_peer output\n{result.describe()}")
    return records


def spawn_fwd_tcp(
    ns: Namespace,
    target: str,
    actions: str,
    *,
    timeout: float = 60.0,
    name: str = "fwd-client",
) -> Proc:
    """Start one ``tools/fwd_peer.py tcp`` connection in the background."""
    return ns.spawn_python(
        "fwd_peer",
        "tcp",
        f"--connect={target}",
        f"--actions={actions}",
        f"--timeout={timeout}",
        name=name,
    )


def fwd_udp(
    ns: Namespace,
    target: str,
    *,
    count: int,
    sizes: Sequence[int],
    window: int = 1,
    bind: str | None = None,
    wait: float = 2.0,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Echo ``count`` datagrams off ``target`` from ``ns``; the tool's summary."""
    args = [f"--bind={bind}"] if bind is not None else []
    result = ns.python(
        "fwd_peer",
        "udp",
        f"--connect={target}",
        *args,
        f"--count={count}",
        f"--sizes={','.join(str(s) for s in sizes)}",
        f"--window={window}",
        f"--wait={wait}",
        f"--timeout={timeout}",
        timeout=timeout + 10,
    )
    records = result.json_lines()
    if len(records) != 1:
        raise LabError(f"unexpected fwd_peer output\n{result.describe()}")
    return records[0]


# --------------------------------------------------------------------------
# Watching a daemon (hostile input, faults, load)


def rss(daemon: Daemon) -> int:
    """The daemon's resident set size in bytes."""
    pid = daemon.proc.target_pid()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fd_count(daemon: Daemon) -> int:
    """The descriptors the daemon holds open."""
    return len(os.listdir(f"/proc/{daemon.proc.target_pid()}/fd"))


def flows(daemon: Daemon, impl: Impl) -> list[dict[str, Any]]:
    """slirpy's flows (``list_flows``); none under slirp4netns, which has no
    such command."""
    if not impl.is_slirpy:
        return []
    return list(daemon.api({"execute": "list_flows"})["return"]["flows"])


def stats(daemon: Daemon, impl: Impl) -> dict[str, int] | None:
    """slirpy's counters (None under slirp4netns, which has no such command)."""
    if not impl.is_slirpy:
        return None
    return dict(daemon.api({"execute": "stats"})["return"])


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def first_loop_only(impl: Impl) -> None:
    """Long and heavy tests run under one event loop: the first one asked for."""
    if impl.loop is not None and impl.loop != loop_names()[0]:
        pytest.skip(f"long test: runs under {loop_names()[0]} only")
