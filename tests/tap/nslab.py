# SPDX-License-Identifier: GPL-2.0-or-later
"""A small namespace lab for the TAP tests: hosts, containers and scripts run inside.

Layout (``shared/design/testing.md``)::

    pytest (real root)
     └─ Host: unshare --user --map-root-user --net --mount --pid --fork
         │      --kill-child --mount-proc sleep       (lo up, nothing else)
         │  scripts run here through nsenter: Host.python(code)
         └─ Container: unshare --user --map-root-user --net sleep
                started by a script inside the host

The host's PID 1 is a ``sleep``; killing it (or its ``unshare``, which passes
``--kill-child``) kills every process the lab started, so teardown is total.
Nothing inside can reach the machine's real network: a fresh network namespace
has only ``lo``. ``Host(userns=False)`` keeps real root (for ``mknod`` and
mounts) but still gets private network, mount and PID namespaces.

A script is Python source run with ``PYTHONPATH`` = a copy of the ``slirpy``
package plus this directory (world-readable, so a dropped uid can import it).
It reports with ``emit(obj)``; ``Host.python()`` returns the decoded object,
the exit status and stderr. Every wait is bounded; processes are killed only
by the PIDs the lab started.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = Path(__file__).resolve().parent
PYTHON = (
    "/opt/slirpy-venv/bin/python"
    if os.access("/opt/slirpy-venv/bin/python", os.X_OK)
    else sys.executable
)
"""An interpreter every uid can run (``/root`` is not traversable by others)."""
UNPRIVILEGED_UID = 65534
LIFETIME = 600
"""Seconds a namespace-holding ``sleep`` lives at most, should teardown fail."""
DEFAULT_TIMEOUT = 60.0
RESULT_MARK = "NSLAB-RESULT "


class LabError(RuntimeError):
    """The lab could not do what a test asked (set-up, timeout, bad output)."""


@functools.cache
def namespaces_unavailable() -> str | None:
    """Why the lab cannot run here, or None if user+net namespaces work."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        proc = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--net", "true"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare --user --map-root-user --net true` failed: {exc}"
    if proc.returncode != 0:
        return (
            "`unshare --user --map-root-user --net true` failed: "
            f"{proc.stderr.strip() or proc.returncode}"
        )
    return None


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, step: float = 0.01
) -> None:
    """Poll ``predicate`` until true; ``LabError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (``/proc/PID/task/*/children`` may be absent)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def emit(obj: Any) -> None:
    """From inside a script: report ``obj`` (JSON) to ``Host.python()``."""
    sys.stdout.write(RESULT_MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


@dataclass
class ScriptResult:
    """What a script did: exit status, output, and the objects it emitted."""

    returncode: int
    stdout: str
    stderr: str
    results: list[Any]

    @property
    def result(self) -> Any:
        """The only emitted object; ``LabError`` unless there is exactly one."""
        if len(self.results) != 1:
            raise LabError(f"expected one result, got {len(self.results)}\n{self}")
        return self.results[0]

    def __str__(self) -> str:
        return (
            f"exit status {self.returncode}\n--- stdout ---\n{self.stdout}"
            f"--- stderr ---\n{self.stderr}"
        )


class NamespaceProcess:
    """A ``sleep`` that holds namespaces made by ``unshare``; commands enter them.

    ``fork`` means ``unshare --fork``: the ``sleep`` is then a child of
    ``unshare`` (needed for a PID namespace, whose first process is that child).
    """

    def __init__(
        self,
        unshare_args: Sequence[str],
        enter_args: Sequence[str],
        *,
        fork: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.enter_args = list(enter_args)
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            ["unshare", *unshare_args, "sleep", str(LIFETIME)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = -1
        try:
            self.pid = self._find_sleep(fork, timeout)
        except BaseException:
            self.close()
            raise

    def _find_sleep(self, fork: bool, timeout: float) -> int:
        assert self._proc is not None
        proc = self._proc
        found: list[int] = []

        def ready() -> bool:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise LabError(f"unshare exited with {proc.returncode}: {err}")
            if fork:
                found[:] = [c for c in _children(proc.pid) if _comm(c) == "sleep"]
                return bool(found)
            return _comm(proc.pid) == "sleep"

        wait_until(ready, timeout=timeout, what="the namespace's sleep")
        return found[0] if fork else proc.pid

    def enter_argv(self) -> list[str]:
        """The ``nsenter`` prefix that runs a command inside."""
        return ["nsenter", f"--target={self.pid}", *self.enter_args]

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside and wait (bounded); ``LabError`` if it fails."""
        try:
            proc = subprocess.run(
                [*self.enter_argv(), *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{argv} timed out after {timeout}s") from exc
        if check and proc.returncode != 0:
            raise LabError(
                f"{argv} exited with {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def ip_json(self, *args: str) -> Any:
        """``ip -j ARGS`` inside, decoded."""
        return json.loads(self.run(["ip", "-j", *args]).stdout or "null")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Kill the ``sleep`` and ``unshare`` this object started, by PID."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pid in (self.pid, proc.pid):
            if pid > 0 and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()

    def __enter__(self) -> NamespaceProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Container(NamespaceProcess):
    """A container: new user (root mapped to the creator) and network namespaces."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        super().__init__(
            ["--user", "--map-root-user", "--net"],
            ["--user", "--net", "--preserve-credentials"],
            timeout=timeout,
        )

    def __enter__(self) -> Container:
        return self


class Host(NamespaceProcess):
    """An outer host: network, mount and PID namespaces (and, by default, user).

    With ``userns=False`` the lab keeps real root inside (it must be real root
    to start one); the namespaces still keep every change private.
    """

    def __init__(self, *, userns: bool = True, timeout: float = 10.0) -> None:
        user = ["--user", "--map-root-user"] if userns else []
        enter_user = ["--user", "--preserve-credentials"] if userns else []
        super().__init__(
            [
                *user,
                "--net",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
            ],
            [*enter_user, "--net", "--mount", "--pid"],
            fork=True,
            timeout=timeout,
        )
        self._pkgdir: str | None = None
        try:
            self.run(["ip", "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Host:
        return self

    def pythonpath(self) -> str:
        """A world-readable copy of the package and of this lab module."""
        if self._pkgdir is None:
            pkgdir = tempfile.mkdtemp(prefix="slirpy-nslab-")
            os.chmod(pkgdir, 0o755)
            shutil.copytree(
                REPO_ROOT / "slirpy",
                Path(pkgdir, "slirpy"),
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            shutil.copy2(Path(__file__), Path(pkgdir, "nslab.py"))
            for root, dirs, files in os.walk(pkgdir):
                for name in dirs:
                    os.chmod(Path(root, name), 0o755)
                for name in files:
                    os.chmod(Path(root, name), 0o644)
            self._pkgdir = pkgdir
        return self._pkgdir

    def python(
        self,
        code: str,
        *,
        uid: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ScriptResult:
        """Run Python ``code`` inside (as ``uid`` if given) and collect its output."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "PYTHONPATH": self.pythonpath(),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LC_ALL": "C.UTF-8",
        }
        drop = []
        if uid is not None:
            drop = [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "--",
            ]
        proc = self.run(
            [*drop, PYTHON, "-c", code], timeout=timeout, check=False, env=env
        )
        results = [
            json.loads(line[len(RESULT_MARK) :])
            for line in proc.stdout.splitlines()
            if line.startswith(RESULT_MARK)
        ]
        return ScriptResult(proc.returncode, proc.stdout, proc.stderr, results)

    def close(self) -> None:
        super().close()
        pkgdir, self._pkgdir = self._pkgdir, None
        if pkgdir is not None:
            shutil.rmtree(pkgdir, ignore_errors=True)


@contextlib.contextmanager
def host(*, userns: bool = True) -> Iterator[Host]:
    """A ``Host`` that is torn down on exit."""
    with Host(userns=userns) as lab:
        yield lab
