# SPDX-License-Identifier: GPL-2.0-or-later
"""``slirpy.sandbox`` and ``slirpy.seccomp`` in processes of their own.

Everything that confines a process runs in a child Python: the seccomp
filter in a plain child (it needs no privilege), the sandbox in a child made
by ``unshare --user --map-root-user --mount --net --pid --fork``, so the
machine's mounts and pytest itself are never touched. The tests read the
child's ``/proc/PID/status`` and ``mountinfo`` from outside, as the
end-to-end tests do for the daemon.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import slirpy.seccomp
from slirpy.config import DaemonConfig, NetnsType
from slirpy.sandbox import (
    LinkChain,
    outside_kept_dirs,
    resolve_links,
    target_userns,
)
from slirpy.seccomp import BLOCKED, SeccompError, build_filter, native_arch

ROOT = Path(__file__).resolve().parent.parent
ONLY_NET_BIND_SERVICE = "0000000000000400"
SECCOMP_LINE = "seccomp: The following syscalls are blocked: " + " ".join(BLOCKED)

needs_binding = pytest.mark.skipif(
    slirpy.seccomp._binding is None,
    reason="libseccomp's Python binding is not installed (scripts/install.sh)",
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH")])
    )
    return env


def _namespaces_reason() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot create namespaces: {probe.stderr.decode().strip()}"
    return None


_NO_NAMESPACES = _namespaces_reason()
needs_namespaces = pytest.mark.skipif(
    _NO_NAMESPACES is not None, reason=str(_NO_NAMESPACES)
)


# --- resolv.conf's links ----------------------------------------------------


def test_resolve_links_plain_file(tmp_path: Path):
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.1\n")
    assert resolve_links(str(path)) == LinkChain((), str(path))


def test_resolve_links_records_every_link(tmp_path: Path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    (tmp_path / "dirlink").symlink_to(real)  # a directory link on the way
    (tmp_path / "hop").mkdir()
    (tmp_path / "hop" / "two").symlink_to("../dirlink/resolv.conf")
    (tmp_path / "one").symlink_to(tmp_path / "hop" / "two")
    chain = resolve_links(str(tmp_path / "one"))
    assert chain.links == (
        (str(tmp_path / "one"), str(tmp_path / "hop" / "two")),
        (str(tmp_path / "hop" / "two"), "../dirlink/resolv.conf"),
        (str(tmp_path / "dirlink"), str(real)),
    )
    assert chain.target == str(real / "resolv.conf")
    assert chain.target == os.path.realpath(tmp_path / "one")


def test_resolve_links_dangling(tmp_path: Path):
    (tmp_path / "link").symlink_to(tmp_path / "missing" / "file")
    chain = resolve_links(str(tmp_path / "link"))
    assert chain.target is None
    assert chain.links == ((str(tmp_path / "link"), str(tmp_path / "missing/file")),)


def test_resolve_links_loop(tmp_path: Path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError, match="Too many levels") as info:
        resolve_links(str(tmp_path / "a"))
    assert info.value.errno == errno.ELOOP


@pytest.mark.parametrize(
    ("path", "outside"),
    [
        ("/etc", False),
        ("/etc/resolv.conf", False),
        ("/run/systemd/resolve/stub-resolv.conf", False),
        ("/etcetera/resolv.conf", True),
        ("/mnt/wsl/resolv.conf", True),
        ("/tmp/x", True),
    ],
)
def test_outside_kept_dirs(path: str, outside: bool):
    assert outside_kept_dirs(path) == outside


@pytest.mark.parametrize(
    ("netns_type", "target", "userns_path", "expected"),
    [
        (NetnsType.PID, "42", None, "/proc/42/ns/user"),
        (NetnsType.PID, "42", "/proc/7/ns/user", "/proc/42/ns/user"),
        (NetnsType.PATH, "/run/netns/x", "/proc/7/ns/user", "/proc/7/ns/user"),
        (NetnsType.PATH, "/run/netns/x", None, None),
        (NetnsType.TAPFD, "3", None, None),
    ],
)
def test_target_userns(
    netns_type: NetnsType, target: str, userns_path: str | None, expected: str | None
):
    config = DaemonConfig(
        netns_type=netns_type, target=target, tap_name="tap0", userns_path=userns_path
    )
    assert target_userns(config) == expected
    assert target_userns(None) is None


# --- refusals that happen before anything changes ----------------------------


def test_sandbox_refuses_a_second_thread():
    """Capabilities and namespaces are per thread: another one would escape."""
    code = textwrap.dedent(
        """
        import threading
        from slirpy.sandbox import SandboxError, enter_sandbox
        stop = threading.Event()
        threading.Thread(target=stop.wait).start()
        try:
            enter_sandbox()
        except SandboxError as exc:
            print(exc)
        finally:
            stop.set()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "single-threaded" in proc.stdout
    assert "(slirpy has 2 threads)" in proc.stdout


@needs_namespaces
def test_sandbox_needs_root_or_a_target():
    """Not root and no user namespace to become root in: a clear refusal."""
    code = textwrap.dedent(
        """
        import os
        from slirpy.config import DaemonConfig, NetnsType
        from slirpy.sandbox import SandboxError, enter_sandbox
        assert os.geteuid() != 0
        config = DaemonConfig(netns_type=NetnsType.PATH, target="/x", tap_name="t")
        try:
            enter_sandbox(config)
        except SandboxError as exc:
            print(exc)
        """
    )
    proc = subprocess.run(
        ["unshare", "--user", sys.executable, "-c", code],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "the sandbox needs root" in proc.stdout
    assert "--userns-path" in proc.stdout


# --- the sandbox in a namespace of its own ----------------------------------

SANDBOXED = textwrap.dedent(
    """
    import json, os, sys
    import slirpy.sandbox
    if sys.argv[1] == "remount":
        def no_mount_setattr(self, path, attr):
            raise OSError(38, "Function not implemented")
        slirpy.sandbox._Libc.mount_setattr = no_mount_setattr
    slirpy.sandbox.enter_sandbox()
    report = {"root": sorted(os.listdir("/")), "etc": len(os.listdir("/etc"))}
    with open("/etc/resolv.conf") as f:
        report["resolv"] = f.read()
    for path in ("/etc/slirpy-test", "/run/slirpy-test", "/slirpy-test"):
        try:
            open(path, "w")
        except OSError as exc:
            report[path] = exc.errno
    report["proc"] = os.path.exists("/proc/self")
    report["cwd"] = os.getcwd()
    print(json.dumps(report), flush=True)
    sys.stdin.readline()
    import no_such_module_after_the_sandbox
    """
)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _mount_options(pid: int) -> dict[str, list[str]]:
    """Mount point -> per-mount options, from ``/proc/PID/mountinfo``."""
    points = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        points[fields[4]] = fields[5].split(",")
    return points


def _run_sandboxed(setup: str, mode: str) -> tuple[dict, dict[str, str], dict, str]:
    """Run ``SANDBOXED`` after ``setup`` (sh) in fresh namespaces.

    Returns its report, its status, its mounts and its stderr.
    """
    script = f'{setup}\nexec {sys.executable} -c "$0" {mode}'
    proc = subprocess.Popen(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-ec",
            script,
            SANDBOXED,
        ],
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.communicate(timeout=10)[1]
        report = json.loads(line)
        (child,) = _children(proc.pid)
        status, mounts = _status(child), _mount_options(child)
        _, stderr = proc.communicate("\n", timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return report, status, mounts, stderr


@needs_namespaces
@pytest.mark.parametrize("mode", ["mount_setattr", "remount"])
def test_sandbox_in_namespaces(mode: str):
    """Only /etc and /run, all read-only; no privileges; late imports logged.

    ``remount`` replaces ``mount_setattr`` (Linux 5.12) by per-mount
    remounts, as on older kernels; a submount of /etc must be read-only too.
    """
    setup = "mount --bind /etc/passwd /etc/passwd"
    report, status, mounts, stderr = _run_sandboxed(setup, mode)
    assert report["root"] == ["etc", "run"]
    assert report["etc"] > 0
    assert report["resolv"] == Path("/etc/resolv.conf").read_text()
    for path in ("/etc/slirpy-test", "/run/slirpy-test", "/slirpy-test"):
        assert report[path] == errno.EROFS, path
    assert not report["proc"]
    assert report["cwd"] == "/"
    assert status["NoNewPrivs"] == "1"
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd"):
        assert status[field] == ONLY_NET_BIND_SERVICE, field
    assert status["CapAmb"] == "0000000000000000"
    assert "/etc/passwd" in mounts
    for point, options in mounts.items():
        assert "ro" in options, (point, options)
        if point != "/":
            assert {"nosuid", "nodev", "noexec"} <= set(options), (point, options)
    assert "import of no_such_module_after_the_sandbox after the sandbox" in stderr


@needs_namespaces
def test_sandbox_follows_resolv_conf_links(tmp_path: Path):
    """A chain of links leaving /etc and /run still resolves (slirp4netns #333).

    /etc (an overlay here) holds ``resolv.conf -> T/one``; ``T/one ->
    hop/two`` (relative), ``T/hop/two -> ../dirlink/../dirlink/resolv.conf``
    (the same link twice) and ``T/dirlink -> T/real``, a directory. T is
    under /tmp, which the sandbox's own tmpfs covers before the file is bound.
    """
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    (tmp_path / "dirlink").symlink_to(tmp_path / "real")
    (tmp_path / "hop").mkdir()
    (tmp_path / "hop" / "two").symlink_to("../dirlink/../dirlink/resolv.conf")
    (tmp_path / "one").symlink_to("hop/two")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    setup = textwrap.dedent(
        f"""
        mount -t tmpfs tmpfs {overlay}
        mkdir {overlay}/upper {overlay}/work
        ln -s {tmp_path}/one {overlay}/upper/resolv.conf
        mount -t overlay overlay \\
            -o lowerdir=/etc,upperdir={overlay}/upper,workdir={overlay}/work /etc
        """
    )
    report, _, mounts, _ = _run_sandboxed(setup, "mount_setattr")
    assert report["resolv"] == "nameserver 192.0.2.53\n"
    assert report["root"] == ["etc", "run", "tmp"]
    bound = str(tmp_path / "real" / "resolv.conf")
    assert "ro" in mounts[bound]


# --- seccomp ----------------------------------------------------------------

FILTERED = textwrap.dedent(
    """
    import ctypes, os, resource, socket, sys, threading
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    import asyncio, uvloop
    from slirpy.seccomp import enable_seccomp
    enable_seccomp()
    libc = ctypes.CDLL(None, use_errno=True)
    what = sys.argv[1]
    if what == "execv":
        os.execv("/bin/true", ["true"])
    elif what == "prctl":
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    elif what == "unshare":
        libc.unshare(0x00020000)  # CLONE_NEWNS
    elif what == "mount":
        libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)
    elif what == "allowed":
        with open("/etc/resolv.conf") as f:
            f.read()
        thread = threading.Thread(target=lambda: None)
        thread.start()
        thread.join()
        # Starts libuv's worker threads, which name themselves with prctl.
        loop = uvloop.new_event_loop()
        loop.run_until_complete(loop.getaddrinfo("localhost", 80))
        loop.close()
        loop = asyncio.new_event_loop()
        loop.run_until_complete(loop.getaddrinfo("localhost", 80))
        loop.close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
        if libc.prctl(15, b"renamed", 0, 0, 0) != -1:  # PR_SET_NAME
            sys.exit("PR_SET_NAME succeeded")
        print("errno", ctypes.get_errno())
    print("survived", what, flush=True)
    """
)


def _filtered(what: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", FILTERED, what],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_binding
@pytest.mark.parametrize("what", ["execv", "prctl", "unshare", "mount"])
def test_seccomp_blocked_call_kills(what: str):
    proc = _filtered(what)
    assert proc.returncode == -signal.SIGSYS, proc.stderr
    assert proc.stdout == SECCOMP_LINE + "\n"


@needs_binding
def test_seccomp_allowed_calls_survive():
    proc = _filtered("allowed")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{SECCOMP_LINE}\nerrno {errno.EPERM}\nsurvived allowed\n"


@needs_binding
def test_seccomp_covers_every_abi(tmp_path: Path):
    """x86_64 also filters the i386 and x32 entry points (as slirp4netns)."""
    if native_arch() != "X86_64":
        pytest.skip("x86_64 only")
    rules, blocked = build_filter()
    assert blocked == list(BLOCKED)
    pfc = tmp_path / "filter.pfc"
    with open(pfc, "w") as f:
        rules.export_pfc(f)
    pseudo = pfc.read_text()
    for arch in ("x86_64", "x86", "x32"):
        assert f"# filter for arch {arch} " in pseudo
    assert "action KILL_PROCESS" in pseudo
    assert "action ERRNO(1)" in pseudo  # prctl(PR_SET_NAME) only


def test_seccomp_without_binding(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(slirpy.seccomp, "_binding", None)
    with pytest.raises(SeccompError, match="python3-seccomp"):
        slirpy.seccomp.enable_seccomp()
