# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``--enable-seccomp`` system call filter, built with libseccomp's Python binding.

This module owns the deny-list (``BLOCKED``: slirp4netns's, in the order it
prints it), the filter made from it (``build_filter``) and
``enable_seccomp()``, which loads the filter into the running daemon and
prints the list as slirp4netns does. The daemon calls it after entering the
sandbox, if asked to, and before the ready byte.

Like slirp4netns's, the filter allows every call but those listed, which kill
the whole process (``KILL_PROCESS``; ``KILL`` on kernels before 4.14, which
lack it). The rules cover the native ABI and the other ABIs the CPU runs
(x86_64: i386 and x32, ``EXTRA_ARCHS``), so the 32-bit entry points are no
way around them. The filter applies to every thread of the process
(``TSYNC``) and sets ``no_new_privs``.

One refinement: ``prctl(PR_SET_NAME)``, which only renames the calling
thread, fails with ``EPERM`` instead of killing. libuv names its worker
threads that way when uvloop first resolves an address, and CPython 3.14
names every thread it starts. No ``prctl`` option ever succeeds.

The binding is the ``seccomp`` module that libseccomp itself ships (Debian
``python3-seccomp``, Fedora ``python3-libseccomp``). It is imported with this
module, before the sandbox hides the file system.
"""

from __future__ import annotations

import errno
import importlib
import sys
from types import ModuleType
from typing import IO, Final, Protocol

_binding: ModuleType | None
try:
    _binding = importlib.import_module("seccomp")
except ImportError:
    _binding = None

BLOCKED: Final = (
    "execve",
    "lookup_dcookie",
    "pidfd_getfd",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "delete_module",
    "finit_module",
    "init_module",
    "chroot",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "mount",
    "move_mount",
    "open_tree",
    "pivot_root",
    "umount",
    "umount2",
    "open_by_handle_at",
    "execveat",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "setns",
    "unshare",
    "kexec_file_load",
    "kexec_load",
    "reboot",
    "name_to_handle_at",
)
"""The system calls that kill the process, in slirp4netns's order."""

EXTRA_ARCHS: Final[dict[str, tuple[str, ...]]] = {
    "X86_64": ("X86", "X32"),
    "X32": ("X86", "X86_64"),
    "AARCH64": ("ARM",),
    "PPC64": ("PPC", "PPC64LE"),
    "PPC64LE": ("PPC", "PPC64"),
    "S390X": ("S390",),
    "MIPS64": ("MIPSEL", "MIPS", "MIPSEL64N32", "MIPS64N32", "MIPSEL64"),
    "MIPSEL64": ("MIPS", "MIPSEL", "MIPS64N32", "MIPSEL64N32", "MIPS64"),
}
"""The ABIs added to the native one (libseccomp ``Arch`` names), as slirp4netns."""

PR_SET_NAME: Final = 15
_ARCH_MASK: Final = 0xFFFFFFFF
_KILL_PROCESS_API: Final = 3
"""The libseccomp API level from which the kernel knows ``KILL_PROCESS``."""


class SeccompError(Exception):
    """The filter could not be built or loaded."""


class SyscallFilter(Protocol):
    """What this module uses of the binding's ``seccomp.SyscallFilter``."""

    def load(self) -> None:
        """Install the filter into the calling process."""

    def export_pfc(self, file: IO[str]) -> None:
        """Write the filter as pseudo code."""


def _lib() -> ModuleType:
    if _binding is None:
        raise SeccompError(
            "seccomp: libseccomp's Python binding (module seccomp, Debian package "
            "python3-seccomp) is not installed"
        )
    return _binding


def _warn(message: str) -> None:
    print(f"seccomp: WARNING: {message}", file=sys.stderr, flush=True)


def native_arch() -> str:
    """The libseccomp ``Arch`` name of this process's ABI, e.g. ``X86_64``."""
    lib = _lib()
    native = lib.system_arch() & _ARCH_MASK
    for name in dir(lib.Arch):
        value = getattr(lib.Arch, name)
        if (
            name.isupper()
            and name != "NATIVE"
            and isinstance(value, int)
            and value & _ARCH_MASK == native
        ):
            return name
    return "NATIVE"


def build_filter() -> tuple[SyscallFilter, list[str]]:
    """The filter, not loaded yet, and the calls it blocks, in ``BLOCKED`` order.

    A call libseccomp does not know, or an ABI it cannot add, is skipped with
    a warning on stderr (as slirp4netns does). Raises ``SeccompError`` when
    the binding is missing or the filter cannot be made.
    """
    lib = _lib()
    try:
        kill = lib.KILL_PROCESS if lib.get_api() >= _KILL_PROCESS_API else lib.KILL
        rules = lib.SyscallFilter(lib.ALLOW)
        rules.set_attr(lib.Attr.CTL_TSYNC, 1)
    except (RuntimeError, ValueError, OSError) as exc:
        raise SeccompError(f"seccomp: cannot create the filter: {exc}") from exc
    for name in EXTRA_ARCHS.get(native_arch(), ()):
        try:
            arch = getattr(lib.Arch, name)
            if not rules.exist_arch(arch):
                rules.add_arch(arch)
        except (RuntimeError, ValueError, OSError, AttributeError) as exc:
            _warn(f"can't add extra arch {name}: {exc}")
    blocked: list[str] = []
    for name in BLOCKED:
        try:
            if name == "prctl":
                name_only = lib.Arg(0, lib.EQ, PR_SET_NAME)
                rules.add_rule(lib.ERRNO(errno.EPERM), name, name_only)
                rules.add_rule(kill, name, lib.Arg(0, lib.NE, PR_SET_NAME))
            else:
                rules.add_rule(kill, name)
        except (RuntimeError, ValueError, OSError) as exc:
            _warn(f"can't block {name}: {exc}")
            continue
        blocked.append(name)
    return rules, blocked


def enable_seccomp() -> list[str]:
    """Load the filter into this process; print and return the blocked calls.

    Prints ``seccomp: The following syscalls are blocked: ...`` to stdout once
    the filter is in place. Raises ``SeccompError`` on failure.
    """
    rules, blocked = build_filter()
    try:
        rules.load()
    except (RuntimeError, ValueError, OSError) as exc:
        raise SeccompError(f"seccomp: cannot load the filter: {exc}") from exc
    print("seccomp: The following syscalls are blocked: " + " ".join(blocked))
    sys.stdout.flush()
    return blocked
