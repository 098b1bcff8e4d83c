# SPDX-License-Identifier: GPL-2.0-or-later
"""A lab for the real container runtimes (rootlesskit, podman) driving the daemon.

Rootless runtimes run as an ordinary user and map that user's subordinate ids
(``/etc/subuid``, ``/etc/subgid``) with the setuid ``newuidmap`` and
``newgidmap``.  Inside a ``unshare --user --map-root-user`` namespace only one
uid exists, so neither rootlesskit nor podman can build their user namespace
there ("No subuid ranges found for user 0").  The runtime lab therefore looks
like this::

    pytest (real root)
     └─ unshare --mount --net --pid --fork --kill-child --mount-proc  "host"
         │  made by real root: a new network namespace with nothing but lo
         │  (127.0.0.1, and 198.18.0.2/32 standing in for a public address),
         │  a private mount namespace with
         │    - /etc under an overlay whose upper layer holds subuid/subgid
         │      lines for the runtime user (the machine's /etc is untouched),
         │    - a tmpfs on /dev/net with a 0666 tun node (the machine's node
         │      is root-only),
         │    - optionally a cgroup2 file system on /sys/fs/cgroup (crun
         │      refuses the hybrid v1/v2 layout);
         │  PID 1 is a reaper, so orphans (podman's network helper after
         │  ``podman run`` returns) do not linger as zombies
         └─ setpriv --reuid=65534 ... rootlesskit | podman        (the user)
              └─ the runtime's own user, mount and network namespaces

Host-side servers and clients run there as root (``nsenter -n -m -p``, no
``-U``: the namespaces belong to the initial user namespace); the runtimes
run as :data:`RUNTIME_UID`.  Nothing can reach the machine's network: the
host namespace has nothing but ``lo``.  A server bound to 198.18.0.2 is a
"remote" server: the guest reaches it through the daemon as an ordinary
address, even with ``--disable-host-loopback``.

The network helper a runtime launches is a :class:`Helper`: slirpy through a
small wrapper script (a world-readable copy of the package, the event loop in
``SLIRPY_LOOP``) or the reference ``/usr/bin/slirp4netns``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lab import (
    DEFAULT_TIMEOUT,
    PYTHON,
    REMOTE,
    SLIRP4NETNS,
    LabError,
    Proc,
    Result,
    Session,
    impl_name,
    loop_names,
)

RUNTIME_UID = 65534
"""The uid the runtimes run as (``nobody``: it exists on every Debian)."""
SUBID_START = 200000
SUBID_COUNT = 65536
USER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_REAPER = (
    "import os, time\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    try:\n"
    "        os.wait()\n"
    "    except ChildProcessError:\n"
    "        time.sleep(0.05)\n"
)

_HOST_SETUP = """
set -e
dir=$1 user=$2 subids=$3 cgroup2=$4 remote=$5
shift 5
ip link set lo up
ip addr add "$remote/32" dev lo
mkdir -p "$dir/etc-upper" "$dir/etc-work"
if ! mount -t overlay slirpy-runtime-etc \
    -o "lowerdir=/etc,upperdir=$dir/etc-upper,workdir=$dir/etc-work" /etc; then
  cp -a /etc "$dir/etc-copy"
  mount --bind "$dir/etc-copy" /etc
fi
echo "$user:$subids" > /etc/subuid
echo "$user:$subids" > /etc/subgid
mount -t tmpfs -o mode=0755,size=64k slirpy-runtime-devnet /dev/net
mknod -m 0666 /dev/net/tun c 10 200
if [ "$cgroup2" = 1 ]; then
  mount -t cgroup2 slirpy-runtime-cgroup2 /sys/fs/cgroup
fi
exec "$@"
"""


# --------------------------------------------------------------------------
# The network helper under test


@dataclass(frozen=True)
class Helper:
    """The slirp4netns-compatible binary a runtime is told to launch."""

    name: str
    """``slirpy`` or ``slirp4netns``."""
    loop: str | None
    """slirpy's event loop; None for slirp4netns."""

    @property
    def is_slirpy(self) -> bool:
        """True for slirpy."""
        return self.name == "slirpy"

    @property
    def id(self) -> str:
        """A test id: ``slirpy-uvloop``, ``slirp4netns``..."""
        return f"{self.name}-{self.loop}" if self.loop else self.name

    def path(self, session: Session) -> str:
        """The executable to hand to the runtime (created on first use)."""
        if not self.is_slirpy:
            return SLIRP4NETNS
        wrapper = session.root / f"slirpy-{self.loop}"
        if not wrapper.exists():
            pylib = session.unprivileged_pylib()
            wrapper.write_text(
                "#!/bin/sh\n"
                f"export PYTHONPATH={shlex.quote(str(pylib))}\n"
                "export PYTHONDONTWRITEBYTECODE=1\n"
                f"export SLIRPY_LOOP={self.loop}\n"
                f'exec {shlex.quote(PYTHON)} -m slirpy "$@"\n'
            )
            wrapper.chmod(0o755)
        return str(wrapper)

    def args(self, argv: Sequence[str]) -> list[str] | None:
        """The options of this helper in ``argv`` (a ``/proc/PID/cmdline``).

        None if ``argv`` is something else, or the ``--help`` probe.
        """
        args: list[str] | None = None
        if self.is_slirpy:
            for i in range(len(argv) - 1):
                if argv[i : i + 2] == ["-m", "slirpy"]:
                    args = list(argv[i + 2 :])
                    break
        elif argv and os.path.basename(argv[0]) == "slirp4netns":
            args = list(argv[1:])
        if args is None or "--help" in args:
            return None
        return args

    def supports(self, session: Session, option: str) -> bool:
        """True if ``HELPER --help`` lists ``option`` (what runtimes probe)."""
        result = subprocess.run(
            [self.path(session), "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.returncode == 0 and option in result.stdout + result.stderr


def helpers() -> list[Helper]:
    """slirpy under each event loop of ``SLIRPY_E2E_LOOP``, then the reference.

    Under ``SLIRPY_E2E_IMPL=slirp4netns`` only the reference runs.
    """
    out: list[Helper] = []
    if impl_name() == "slirpy":
        out += [Helper("slirpy", loop) for loop in loop_names()]
    out.append(Helper("slirp4netns", None))
    return out


def missing_tools(*tools: str) -> str | None:
    """A skip reason naming the first of ``tools`` that is not installed."""
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def runtime_lab_unavailable_reason() -> str | None:
    """Why the runtime lab cannot be built here, or None."""
    if os.geteuid() != 0:
        return "the runtime lab needs real root (overlay on /etc, mknod, setpriv)"
    return missing_tools("newuidmap", "newgidmap", "setpriv", "nsenter", "unshare")


# --------------------------------------------------------------------------
# The host namespace


def pid_ns(host_pid: int) -> str:
    """The PID namespace of a process, as ``readlink /proc/PID/ns/pid`` shows it."""
    return os.readlink(f"/proc/{host_pid}/ns/pid")


def cmdline(host_pid: int) -> list[str]:
    """The argv of a process (empty if it is gone or a zombie)."""
    try:
        raw = Path(f"/proc/{host_pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]


def alive(host_pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{host_pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class RuntimeHost:
    """The outer namespace of the runtime lab (see the module docstring)."""

    def __init__(self, session: Session, *, cgroup2: bool = False) -> None:
        self.session = session
        self.dir = session.new_lab_dir()
        self.user_dir = self.dir / "user"
        """A directory owned by the runtime user (its HOME)."""
        self.user_dir.mkdir(mode=0o700)
        os.chown(self.user_dir, RUNTIME_UID, RUNTIME_UID)
        # XDG_RUNTIME_DIR: short, as podman puts API sockets there and a UNIX
        # socket path must stay under 108 bytes.
        self.run_dir = Path(tempfile.mkdtemp(prefix="slirpy-rt-", dir="/tmp"))
        """The runtime user's ``XDG_RUNTIME_DIR`` (mode 0700)."""
        os.chown(self.run_dir, RUNTIME_UID, RUNTIME_UID)
        self._procs: list[Proc] = []
        self._seq = 0
        self._closed = False
        try:
            self._start(cgroup2)
        except BaseException:
            self.close()
            raise

    def _start(self, cgroup2: bool) -> None:
        argv = [
            "setpriv",
            "--pdeathsig=SIGKILL",
            "unshare",
            "--mount",
            "--propagation=private",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            _HOST_SETUP,
            "host-setup",
            str(self.dir),
            _user_name(),
            f"{SUBID_START}:{SUBID_COUNT}",
            "1" if cgroup2 else "0",
            REMOTE,
            PYTHON,
            "-c",
            _REAPER,
        ]
        self.keeper = self._track(Proc("host", argv, self.log_path("host")))
        line = self.keeper.readline(DEFAULT_TIMEOUT)
        if line != "ready":
            raise LabError(f"runtime host did not start\n{self.keeper.describe()}")
        self.host_pid = self.keeper.target_pid()
        if os.readlink(f"/proc/{self.host_pid}/ns/net") == os.readlink(
            "/proc/self/ns/net"
        ):
            raise LabError("the runtime host is the real network namespace")
        self.pid_ns = pid_ns(self.host_pid)

    def log_path(self, label: str) -> Path:
        """A fresh log file name in the lab directory."""
        self._seq += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        return self.dir / f"{self._seq:03d}-{safe}.log"

    def _track(self, proc: Proc) -> Proc:
        self._procs.append(proc)
        return proc

    def user_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment for the runtime user."""
        env = {
            "PATH": USER_PATH,
            "HOME": str(self.user_dir),
            "XDG_RUNTIME_DIR": str(self.run_dir),
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def enter_argv(self, *, as_user: bool) -> list[str]:
        """The prefix that runs a program here (as the runtime user if asked)."""
        argv = [
            "nsenter",
            f"--target={self.host_pid}",
            "--net",
            "--mount",
            "--pid",
            f"--wd={self.dir}",
            "--",
        ]
        if as_user:
            argv += [
                "setpriv",
                f"--reuid={RUNTIME_UID}",
                f"--regid={RUNTIME_UID}",
                "--clear-groups",
                "--inh-caps=-all",
                "--",
            ]
        return argv

    def spawn(
        self,
        argv: Sequence[str],
        *,
        as_user: bool = False,
        name: str | None = None,
        env: dict[str, str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
    ) -> Proc:
        """Start ``argv`` here in the background; :meth:`close` kills it."""
        if env is None:
            env = self.user_env() if as_user else dict(os.environ)
        label = name or Path(argv[0]).name
        return self._track(
            Proc(
                label,
                self.enter_argv(as_user=as_user) + list(argv),
                self.log_path(label),
                env=env,
                stdin=stdin,
            )
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        as_user: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run ``argv`` here to completion (killed after ``timeout``)."""
        proc = self.spawn(argv, as_user=as_user, env=env)
        try:
            proc.wait(timeout)
        except LabError:
            proc.kill()
            raise
        result = proc.result()
        if check and result.returncode != 0:
            raise LabError(f"command failed in the runtime host\n{result.describe()}")
        return result

    def tool(self, name: str, *args: str) -> list[str]:
        """The argv of ``tools/NAME.py ARGS`` with the venv's Python."""
        return [PYTHON, self.session.tool(name), *args]

    def processes(self, helper: Helper) -> dict[int, list[str]]:
        """Live processes of ``helper`` here: host PID -> its options."""
        found: dict[int, list[str]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                if pid_ns(pid) != self.pid_ns:
                    continue
            except OSError:
                continue
            args = helper.args(cmdline(pid))
            if args is not None and alive(pid):
                found[pid] = args
        return found

    def wait_helper(
        self, helper: Helper, timeout: float = 10.0
    ) -> dict[int, list[str]]:
        """Wait until ``helper`` runs here; its processes."""
        deadline = time.monotonic() + timeout
        while not (found := self.processes(helper)):
            if time.monotonic() > deadline:
                raise LabError(f"{helper.name} did not start in {timeout}s")
            time.sleep(0.02)
        return found

    def wait_helper_gone(self, helper: Helper, timeout: float = 10.0) -> None:
        """Wait until no process of ``helper`` is left (zombies count as gone)."""
        deadline = time.monotonic() + timeout
        while found := self.processes(helper):
            if time.monotonic() > deadline:
                raise LabError(f"{helper.name} still runs after {timeout}s: {found}")
            time.sleep(0.05)

    def close(self) -> None:
        """Kill everything this lab started, by PID, the namespace last."""
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self._procs):
            proc.kill()
        shutil.rmtree(self.run_dir, ignore_errors=True)


@contextlib.contextmanager
def open_runtime_host(
    session: Session, *, cgroup2: bool = False
) -> Iterator[RuntimeHost]:
    """A :class:`RuntimeHost` that is closed on exit."""
    host = RuntimeHost(session, cgroup2=cgroup2)
    try:
        yield host
    finally:
        host.close()


def _user_name() -> str:
    return pwd.getpwuid(RUNTIME_UID).pw_name


def wait_path(path: Path, proc: Proc, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until ``path`` exists while ``proc`` runs."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not proc.alive():
            raise LabError(f"{path} never appeared\n{proc.describe()}")
        if time.monotonic() > deadline:
            raise LabError(f"{path} did not appear in {timeout}s\n{proc.describe()}")
        time.sleep(0.02)


def read_until(proc: Proc, marker: str, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """stdout lines of ``proc`` up to (without) the line ``marker``."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while True:
        line = proc.readline(max(0.01, deadline - time.monotonic()))
        if line == marker:
            return lines
        lines.append(line)


# --------------------------------------------------------------------------
# A container image without a registry


def busybox_rootfs_tar(
    dest: Path, applets: Sequence[str], busybox: str | None = None
) -> Path:
    """A root file system tarball: busybox, its ``applets`` as links, libraries.

    ``busybox`` defaults to the one on ``PATH``.  A static busybox (Debian's
    ``busybox-static``) needs nothing else; a dynamic one (Debian's
    ``busybox``) brings the libraries ``ldd`` names.
    """
    busybox = busybox or shutil.which("busybox")
    if busybox is None:
        raise LabError("busybox is not installed")
    busybox = os.path.realpath(busybox)
    with tarfile.open(dest, "w") as tar:
        for name in ("bin", "dev", "etc", "proc", "srv", "sys", "tmp", "var"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in applets:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        for lib in _shared_libraries(busybox):
            tar.add(os.path.realpath(lib), lib.lstrip("/"))
    dest.chmod(0o644)
    return dest


def _shared_libraries(binary: str) -> list[str]:
    result = subprocess.run(
        ["ldd", binary], capture_output=True, text=True, timeout=10, check=False
    )
    if result.returncode != 0:
        return []  # "not a dynamic executable"
    return re.findall(r"(/\S+) \(0x", result.stdout)
