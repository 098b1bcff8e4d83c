# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``--enable-sandbox`` confinement: a root of only /etc and /run, no privileges.

This module owns ``enter_sandbox()``. It moves the running daemon into a mount
namespace of its own whose root is a small read-only tmpfs that holds only
read-only bind mounts of the host's ``/etc`` and ``/run``, and drops every
privilege but ``CAP_NET_BIND_SERVICE``, as slirp4netns's ``sandbox.c`` does.
The daemon calls it once the TAP, the stack and the API socket exist, before
the ready byte. Afterwards the process still uses its sockets and re-reads
``/etc/resolv.conf`` for DNS, but sees no other file of the host, and the
caller's mounts are untouched.

Theory of operation
-------------------
The mount namespace, the root directory, the capability sets and
``no_new_privs`` belong to a thread, and threads started later inherit them
from their creator; the process must therefore have a single thread when
``enter_sandbox()`` runs, and it refuses to start otherwise. In order:

1. Not root (rootlesskit runs slirp4netns as the user): join the target's user
   namespace (``/proc/PID/ns/user`` in pid mode, ``--userns-path`` in path
   mode) and become root there, which gives the capabilities needed below.
2. ``unshare(CLONE_NEWNS)``, then make every mount private
   (``MS_REC|MS_PRIVATE``), so nothing done afterwards propagates to the
   caller's mount namespace.
3. Follow ``/etc/resolv.conf`` link by link, while the whole file system is
   still visible. The links met outside /etc and /run are recreated in the new
   root at the same paths and the file they end at is bind-mounted there too,
   so a chain of several links (WSL, NixOS; slirp4netns issue #333) still
   resolves inside.
4. Mount a tmpfs on ``/tmp`` as the new root, bind /etc and /run (with their
   submounts) and make each tree read-only, nosuid, nodev and noexec:
   ``mount_setattr(AT_RECURSIVE)``, or one remount per mount before Linux 5.12.
5. ``pivot_root(".", ".")`` into the tmpfs, detach the old root, and remount
   ``/`` read-only.
6. ``PR_SET_NO_NEW_PRIVS``; clear the ambient capabilities; drop all of the
   bounding set but ``CAP_NET_BIND_SERVICE``; ``capset`` effective =
   permitted = inheritable = {``CAP_NET_BIND_SERVICE``}.

Python reads a file to import a module, and after step 5 there are none to
read. Every module the daemon may import later is imported before it
(``PRELOAD``, e.g. the idna codec that ``getaddrinfo`` loads on first use for
a ``str`` host); an import of any other module afterwards is logged as a
warning, so that one still missing shows up in the daemon's log and tests.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import importlib
import importlib.abc
import importlib.machinery
import logging
import os
import platform
import stat
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Final

from slirpy.config import DaemonConfig, NetnsType
from slirpy.proxy.resolv import RESOLV_CONF

log = logging.getLogger(__name__)

KEPT_DIRS: Final = ("/etc", "/run")
"""The host directories visible in the sandbox, read-only."""
NEW_ROOT: Final = "/tmp"
"""Where the new root's tmpfs is mounted before ``pivot_root`` (as slirp4netns)."""
CAP_NET_BIND_SERVICE: Final = 10
"""The one capability kept (forwarding host ports below 1024)."""
MAX_LINKS: Final = 40
"""Symbolic links followed in one path before giving up (``ELOOP``), as Linux."""

PRELOAD: Final = (
    # socket.getaddrinfo() and uvloop encode a str host with the idna codec.
    "encodings.idna",
    "stringprep",
    "unicodedata",
    # Codecs looked up by name on first use (the API's log lines, etc.).
    "encodings.ascii",
    "encodings.latin_1",
    "encodings.raw_unicode_escape",
    "encodings.unicode_escape",
    "encodings.utf_8",
    # asyncio's default executor, started on its first getaddrinfo().
    "concurrent.futures.thread",
    # Tracebacks of logged exceptions.
    "linecache",
    "tokenize",
    "traceback",
)
"""Modules imported before the file system goes away (see the module docstring)."""

_CLONE_NEWNS: Final = 0x00020000
_CLONE_NEWUSER: Final = 0x10000000
_MS_RDONLY: Final = 0x1
_MS_NOSUID: Final = 0x2
_MS_NODEV: Final = 0x4
_MS_NOEXEC: Final = 0x8
_MS_REMOUNT: Final = 0x20
_MS_BIND: Final = 0x1000
_MS_REC: Final = 0x4000
_MS_PRIVATE: Final = 0x40000
_MS_LOCKED_DOWN: Final = _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
_MNT_DETACH: Final = 2
_AT_FDCWD: Final = -100
_AT_RECURSIVE: Final = 0x8000
_MOUNT_ATTR_LOCKED_DOWN: Final = 0x1 | 0x2 | 0x4 | 0x8
"""``MOUNT_ATTR_RDONLY | NOSUID | NODEV | NOEXEC``."""
_PR_CAPBSET_DROP: Final = 24
_PR_SET_NO_NEW_PRIVS: Final = 38
_PR_CAP_AMBIENT: Final = 47
_PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
_CAP_LAST_POSSIBLE: Final = 63
_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522
_TMPFS_OPTIONS: Final = b"mode=0755,size=256k"
"""Room for a page per long link (``MAX_LINKS``); nothing else is ever written."""

_SYS_MOUNT_SETATTR: Final = 442
"""The same number on every architecture slirpy runs on."""
_SYS_PIVOT_ROOT: Final = {
    "x86_64": 155,
    "i386": 217,
    "aarch64": 41,
    "arm": 218,
    "riscv64": 41,
    "loongarch64": 41,
    "ppc64": 203,
    "ppc64le": 203,
    "s390x": 217,
}


class SandboxError(Exception):
    """The sandbox could not be set up; the message says which step failed."""


@dataclass(frozen=True, slots=True)
class LinkChain:
    """How a path resolves: the symbolic links met on the way and the end."""

    links: tuple[tuple[str, str], ...]
    """Each link met: where it is (a path free of links) and its content."""
    target: str | None
    """The path free of links that the whole path names; None if it is missing."""


def resolve_links(path: str, max_links: int = MAX_LINKS) -> LinkChain:
    """Resolve ``path`` like ``realpath(3)``, recording every link on the way.

    Raises ``OSError`` (``ELOOP``) after ``max_links`` links.
    """
    pending = collections.deque(os.path.join(os.getcwd(), path).split("/"))
    resolved = "/"
    links: list[tuple[str, str]] = []
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            resolved = os.path.dirname(resolved)
            continue
        candidate = os.path.join(resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            return LinkChain(tuple(links), None)
        if not stat.S_ISLNK(st.st_mode):
            resolved = candidate
            continue
        if len(links) >= max_links:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        content = os.readlink(candidate)
        links.append((candidate, content))
        if content.startswith("/"):
            resolved = "/"
        pending.extendleft(reversed(content.split("/")))
    return LinkChain(tuple(links), resolved)


def outside_kept_dirs(path: str) -> bool:
    """Whether ``path`` (free of links) is neither in /etc nor in /run."""
    return not any(path == d or path.startswith(d + "/") for d in KEPT_DIRS)


def target_userns(config: DaemonConfig | None) -> str | None:
    """The user namespace a non-root daemon becomes root in, if ``config`` names one.

    Pid mode: the target's, as slirp4netns. Path mode: ``--userns-path``
    (slirp4netns has none there and fails, issue #317).
    """
    if config is None:
        return None
    if config.netns_type is NetnsType.PID:
        return f"/proc/{config.target}/ns/user"
    if config.netns_type is NetnsType.PATH:
        return config.userns_path
    return None


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def _pivot_root_number() -> int:
    machine = platform.machine()
    if ctypes.sizeof(ctypes.c_void_p) == 4:
        machine = {"x86_64": "i386", "aarch64": "arm"}.get(machine, machine)
    if machine.startswith(("i4", "i5", "i6")):
        machine = "i386"
    elif machine.startswith("arm"):
        machine = "arm"
    try:
        return _SYS_PIVOT_ROOT[machine]
    except KeyError:
        raise SandboxError(
            f"pivot_root: unknown system call number on {machine}"
        ) from None


class _Libc:
    """The libc calls the sandbox makes; each raises ``OSError`` on failure."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._libc = libc
        self._unshare = libc.unshare
        self._unshare.argtypes = (ctypes.c_int,)
        self._setns = libc.setns
        self._setns.argtypes = (ctypes.c_int, ctypes.c_int)
        self._mount = libc.mount
        self._mount.argtypes = (
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_void_p,
        )
        self._umount2 = libc.umount2
        self._umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
        self._prctl = libc.prctl
        self._prctl.argtypes = (ctypes.c_int,) + (ctypes.c_ulong,) * 4
        self._capset = libc.capset
        self._capset.argtypes = (
            ctypes.POINTER(_CapHeader),
            ctypes.POINTER(_CapData * 2),
        )
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long

    @staticmethod
    def _check(result: int, what: str) -> None:
        """Raise ``OSError`` (``what`` as its file name) if the call failed."""
        if result < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), what)

    def unshare(self, flags: int, what: str) -> None:
        self._check(self._unshare(flags), what)

    def setns(self, fd: int, nstype: int, path: str) -> None:
        self._check(self._setns(fd, nstype), f"setns({path})")

    def mount(
        self,
        source: str | None,
        target: str,
        fstype: str | None,
        flags: int,
        data: bytes | None = None,
    ) -> None:
        result = self._mount(
            None if source is None else os.fsencode(source),
            os.fsencode(target),
            None if fstype is None else os.fsencode(fstype),
            flags,
            data,
        )
        self._check(result, f"mount({source}, {target}, {fstype}, {flags:#x})")

    def umount2(self, target: str, flags: int) -> None:
        self._check(self._umount2(os.fsencode(target), flags), f"umount2({target})")

    def prctl(self, option: int, arg: int = 0) -> None:
        self._check(self._prctl(option, arg, 0, 0, 0), f"prctl({option}, {arg})")

    def capset(self, caps: int) -> None:
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        data[0].effective = data[0].permitted = data[0].inheritable = caps
        self._check(self._capset(ctypes.byref(header), ctypes.byref(data)), "capset")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        result = self._syscall(
            ctypes.c_long(_pivot_root_number()),
            ctypes.c_char_p(os.fsencode(new_root)),
            ctypes.c_char_p(os.fsencode(put_old)),
        )
        self._check(result, f"pivot_root({new_root}, {put_old})")

    def mount_setattr(self, path: str, attr_set: int) -> None:
        """``mount_setattr(AT_FDCWD, path, AT_RECURSIVE, ...)``."""
        attr = _MountAttr(attr_set, 0, 0, 0)
        result = self._syscall(
            ctypes.c_long(_SYS_MOUNT_SETATTR),
            ctypes.c_int(_AT_FDCWD),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.c_uint(_AT_RECURSIVE),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        )
        self._check(result, f"mount_setattr({path})")


class _LateImportWatcher(importlib.abc.MetaPathFinder):
    """Logs every import that needs a file once the file system is gone."""

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if getattr(self._busy, "on", False):
            return None
        if fullname in sys.builtin_module_names:
            return None
        if importlib.machinery.FrozenImporter.find_spec(fullname) is not None:
            return None
        self._busy.on = True
        try:
            log.warning(
                "sandbox: import of %s after the sandbox was entered: "
                "it has no files to import from",
                fullname,
            )
        finally:
            self._busy.on = False
        return None


def _preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SandboxError(
                f"cannot import {name} before the sandbox: {exc}"
            ) from exc


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def _become_root(libc: _Libc, config: DaemonConfig | None) -> None:
    userns = target_userns(config)
    if userns is None:
        raise SandboxError(
            "the sandbox needs root: run slirpy as root (in a user namespace), "
            "or name the target by PID or with --userns-path so that slirpy "
            "can become root in the target's user namespace"
        )
    fd = os.open(userns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(fd, _CLONE_NEWUSER, userns)
    finally:
        os.close(fd)
    os.setegid(0)
    os.seteuid(0)


def _mount_points_under(path: str) -> list[str]:
    """The mount points at or below ``path`` (``/proc/self/mountinfo``)."""
    found: list[str] = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ")
            if len(fields) < 5:
                continue
            point = os.fsdecode(_unescape_mountinfo(fields[4]))
            if point == path or point.startswith(path.rstrip("/") + "/"):
                found.append(point)
    return found


def _unescape_mountinfo(field: bytes) -> bytes:
    r"""Undo mountinfo's ``\ooo`` escapes of space, tab, newline and backslash."""
    out = bytearray()
    i = 0
    while i < len(field):
        chunk = field[i : i + 4]
        if len(chunk) == 4 and chunk[0:1] == b"\\" and chunk[1:].isdigit():
            out.append(int(chunk[1:], 8) & 0xFF)
            i += 4
        else:
            out.append(field[i])
            i += 1
    return bytes(out)


def _lock_down_tree(libc: _Libc, path: str) -> None:
    """Make the mount at ``path`` and every mount below it ro, nosuid, nodev, noexec."""
    try:
        libc.mount_setattr(path, _MOUNT_ATTR_LOCKED_DOWN)
        return
    except OSError as exc:
        # ENOSYS before Linux 5.12; EPERM from seccomp profiles that predate it.
        if exc.errno not in (errno.ENOSYS, errno.EPERM):
            raise
    for point in _mount_points_under(path):
        libc.mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_LOCKED_DOWN)


def _bind_resolv_conf(libc: _Libc, chain: LinkChain, fd: int | None) -> None:
    """Put into the new root what resolv.conf needs from outside /etc and /run."""
    for where, content in chain.links:
        inside = NEW_ROOT + where
        if outside_kept_dirs(where) and not os.path.lexists(inside):
            os.makedirs(os.path.dirname(inside), mode=0o755, exist_ok=True)
            os.symlink(content, inside)
    if fd is None or chain.target is None:
        return
    inside = NEW_ROOT + chain.target
    os.makedirs(os.path.dirname(inside), mode=0o755, exist_ok=True)
    os.close(os.open(inside, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    libc.mount(f"/proc/self/fd/{fd}", inside, None, _MS_BIND)
    _lock_down_tree(libc, inside)


def _open_resolv_target(chain: LinkChain) -> int | None:
    """An ``O_PATH`` fd of resolv.conf's file if it must be bound in; else None.

    Opened before the tmpfs covers ``/tmp``, where the file may live.
    """
    if chain.target is None or not outside_kept_dirs(chain.target):
        return None
    fd = os.open(chain.target, os.O_PATH | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        log.warning("sandbox: %s is not a regular file; not bound", chain.target)
        return None
    return fd


def _build_root(libc: _Libc) -> None:
    """Steps 2 to 5 of the module docstring."""
    libc.unshare(_CLONE_NEWNS, "unshare(CLONE_NEWNS)")
    libc.mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    chain = resolve_links(RESOLV_CONF)
    fd = _open_resolv_target(chain)
    try:
        libc.mount(
            "tmpfs",
            NEW_ROOT,
            "tmpfs",
            _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
            _TMPFS_OPTIONS,
        )
        for kept in KEPT_DIRS:
            if not os.path.isdir(kept):
                continue
            inside = NEW_ROOT + kept
            os.mkdir(inside, 0o755)
            libc.mount(kept, inside, None, _MS_BIND | _MS_REC)
            _lock_down_tree(libc, inside)
        _bind_resolv_conf(libc, chain, fd)
    finally:
        if fd is not None:
            os.close(fd)
    os.chdir(NEW_ROOT)
    libc.pivot_root(".", ".")
    libc.umount2(".", _MNT_DETACH)
    os.chdir("/")
    libc.mount(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_LOCKED_DOWN)


def _drop_privileges(libc: _Libc) -> None:
    """Step 6 of the module docstring."""
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1)
    try:
        libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # no ambient capabilities before Linux 4.3
            raise
    for cap in range(_CAP_LAST_POSSIBLE + 1):
        if cap == CAP_NET_BIND_SERVICE:
            continue
        try:
            libc.prctl(_PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # past the kernel's last capability
                break
            raise
    libc.capset(1 << CAP_NET_BIND_SERVICE)


def enter_sandbox(config: DaemonConfig | None = None) -> None:
    """Confine the calling process as the module docstring describes.

    ``config`` names the target whose user namespace a non-root daemon joins
    (``target_userns``). Raises ``SandboxError`` saying what failed; the
    process may then be half-confined and should exit.
    """
    try:
        threads = _thread_count()
        if threads != 1:
            raise SandboxError(
                f"the sandbox must be entered by a single-threaded process "
                f"(slirpy has {threads} threads)"
            )
        _preload()
        libc = _Libc()
        if os.geteuid() != 0:
            _become_root(libc, config)
        _build_root(libc)
        _drop_privileges(libc)
    except OSError as exc:
        where = "" if exc.filename is None else f"{exc.filename}: "
        raise SandboxError(f"sandbox: {where}{exc.strerror}") from exc
    sys.meta_path.insert(0, _LateImportWatcher())
    log.debug("sandbox: entered")
