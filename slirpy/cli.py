# SPDX-License-Identifier: GPL-2.0-or-later
"""The slirp4netns-compatible command line: argv in, ``DaemonConfig`` out.

This module owns everything a caller observes before the daemon starts: GNU
``getopt_long`` parsing, the texts, streams and exit codes of every usage error,
``--help`` (which podman and rootlesskit probe for feature strings),
``--version``, and the logging set-up. ``main()`` then hands the config to
``slirpy.daemon.run``, imported only at that point so that ``--help`` stays
fast.

Parsing follows ``main.c: parse_args`` and ``slirp4netns_config_from_options``
of slirp4netns v1.3 step by step, in the same order:

1. options, in argv order, each validated as it is seen (``--help`` and
   ``--version`` exit at once; so does the first bad option);
2. checks that need all options (``--macaddress`` requires ``-c``,
   ``--target-type``);
3. the positional arguments (PID, PATH or FD, then TAPNAME);
4. values checked after parsing (``--cidr``, ``--macaddress``), without usage.

The option table ``OPTIONS`` drives the parser and the help text alike. An
option whose ``supported`` flag is false is parsed and validated exactly like
slirp4netns does, is left out of ``--help`` (callers enable features by
probing the help text), and makes slirpy exit with "not supported yet" once
every other check has passed. Turning a feature on means flipping its flag and
carrying its value into ``DaemonConfig``.

slirpy's own additions: ``--netns-path=PATH`` (the same as
``--netns-type=path PATH``), ``--debug``, ``--pcap=FILE``, and an MTU below 68
being a usage error rather than a failure after start-up. Where an abbreviation
would match both a slirp4netns option and one of these, the slirp4netns option
wins, so every abbreviation slirp4netns accepts means the same here.

The second form, ``slirpy [OPTION]... -- [COMMAND [ARG]...]`` (``slirpy.run``),
is chosen when ``--`` comes before any positional argument, neither
``--netns-type`` nor ``--netns-path`` is given, and the first word after
``--`` is not a number (so slirp4netns's ``slirpy -- PID TAPNAME`` keeps its
meaning). It implies ``-c`` and an MTU of 65520, takes ``-p/--publish``, and
is quiet: the option warnings and the banner are left out.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from slirpy import __version__
from slirpy.banner import core_kind
from slirpy.config import DaemonConfig, NetnsType, Publish
from slirpy.stack.config import (
    DEFAULT_CIDR,
    DEFAULT_CIDR6,
    DEFAULT_MTU,
    MAX_MTU,
    MIN_MTU,
    Limits,
    StackConfig,
)

DEFAULT_PROG: Final = "slirpy"
SLIRP_CONFIG_VERSION_MAX: Final = 4
"""The libslirp config version slirpy's feature set corresponds to (tests need >= 3)."""
IFNAMSIZ: Final = 16

_HELP_COLUMN: Final = 25
_INT_MAX: Final = 2**31 - 1
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_C_SPACE: Final = " \t\n\v\f\r"
_STRTOL_RE: Final = re.compile(rf"[{_C_SPACE}]*([+-]?[0-9]+)")
_CIDR_RE: Final = re.compile(r"((?:[0-9]{1,3}\.){3}[0-9]{1,3})/([0-9]{1,2})")
_HEX_RE: Final = re.compile(
    rf"[{_C_SPACE}]*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)"
)
RUN_MTU: Final = 65520
"""The MTU of ``slirpy -- COMMAND`` unless ``--mtu`` says otherwise."""
RUN_TAP_NAME: Final = "tap0"
_NETWORK_PREFIX_MIN: Final = 1
_NETWORK_PREFIX_MAX: Final = 25
"""network+100 is the recommended guest address, so /26 and longer cannot hold it."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionSpec:
    """One command-line option: how it is spelled, parsed and documented."""

    name: str
    """The long name without the leading ``--``."""
    short: str | None = None
    metavar: str | None = None
    """The argument's placeholder in ``--help``; ``None`` if it takes no argument."""
    help: str | None = None
    """The ``--help`` description, ``{prog}`` substituted; ``None``: never listed."""
    supported: bool = True
    """Whether slirpy implements it; unsupported options are hidden and refused."""
    native: bool = True
    """slirp4netns has it; ``False`` for slirpy's own options."""
    warning: str | None = None
    """Printed to stdout when the option is given (and supported)."""

    @property
    def takes_arg(self) -> bool:
        return self.metavar is not None

    @property
    def listed(self) -> bool:
        """Whether ``--help`` shows it."""
        return self.supported and self.help is not None

    def column(self) -> str:
        """The option column of ``--help``, e.g. ``-m, --mtu=MTU``."""
        long = (
            f"--{self.name}"
            if self.metavar is None
            else f"--{self.name}={self.metavar}"
        )
        return long if self.short is None else f"-{self.short}, {long}"


OPTIONS: Final[tuple[OptionSpec, ...]] = (
    OptionSpec(name="configure", short="c", help="bring up the interface"),
    OptionSpec(
        name="exit-fd",
        short="e",
        metavar="FD",
        help="specify the FD for terminating {prog}",
    ),
    OptionSpec(
        name="ready-fd",
        short="r",
        metavar="FD",
        help="specify the FD to write to when the initialization steps are finished",
    ),
    OptionSpec(
        name="mtu",
        short="m",
        metavar="MTU",
        help=f"specify MTU (default={DEFAULT_MTU}, max={MAX_MTU}, min={MIN_MTU})",
    ),
    OptionSpec(
        name="enable-ipv6",
        short="6",
        help="enable IPv6 (experimental)",
        warning="WARNING: Support for IPv6 is experimental",
    ),
    OptionSpec(
        name="api-socket",
        short="a",
        metavar="PATH",
        help="specify API socket path",
    ),
    OptionSpec(
        name="cidr",
        metavar="CIDR",
        help=f"specify network address CIDR (default={DEFAULT_CIDR})",
    ),
    OptionSpec(
        name="disable-host-loopback",
        help="prohibit connecting to 127.0.0.1:* on the host namespace",
    ),
    OptionSpec(
        name="no-host-loopback",
        warning=(
            "WARNING: --no-host-loopback is deprecated and will be removed in "
            "future releases, please use --disable-host-loopback instead."
        ),
    ),
    OptionSpec(
        name="netns-type",
        metavar="TYPE",
        help="specify network namespace type ([path|pid|tapfd], default=pid)",
    ),
    OptionSpec(name="userns-path", metavar="PATH", help="specify user namespace path"),
    OptionSpec(
        name="enable-sandbox",
        help=(
            "create a new mount namespace (and drop all caps except "
            "CAP_NET_BIND_SERVICE if running as the root)"
        ),
    ),
    OptionSpec(
        name="create-sandbox",
        warning=(
            "WARNING: --create-sandbox is deprecated and will be removed in "
            "future releases, please use --enable-sandbox instead."
        ),
    ),
    OptionSpec(
        name="enable-seccomp",
        help="enable seccomp to limit syscalls (experimental)",
        warning="WARNING: Support for seccomp is experimental",
    ),
    OptionSpec(
        name="outbound-addr",
        metavar="IPv4",
        help="sets outbound ipv4 address to bound to (experimental)",
        warning="WARNING: Support for --outbound-addr is experimental",
    ),
    OptionSpec(
        name="outbound-addr6",
        metavar="IPv6",
        help="sets outbound ipv6 address to bound to (experimental)",
        warning="WARNING: Support for --outbound-addr6 is experimental",
    ),
    OptionSpec(
        name="disable-dns",
        help=(
            "disables 10.0.2.3 (or configured internal ip) to host dns redirect "
            "(experimental)"
        ),
    ),
    OptionSpec(
        name="macaddress",
        metavar="MAC",
        help="specify the MAC address of the TAP (only valid with -c)",
    ),
    OptionSpec(
        name="target-type",
        metavar="TYPE",
        help="specify the target type ([netns|bess], default=netns)",
        supported=False,
    ),
    OptionSpec(
        name="netns-path",
        metavar="PATH",
        help="same as --netns-type=path PATH; TAPNAME is then the only argument",
        native=False,
    ),
    OptionSpec(
        name="port-splice",
        help=(
            "forward TCP clients on host loopback with a socket inside the "
            "namespace and splice(2): faster, but the guest sees them come from "
            "its own address"
        ),
        native=False,
    ),
    OptionSpec(
        name="cidr6",
        metavar="CIDR",
        help=f"IPv6 prefix with -6, a /64 (default={DEFAULT_CIDR6})",
        native=False,
    ),
    OptionSpec(
        name="publish",
        short="p",
        metavar="SPEC",
        help=(
            "with a COMMAND: forward [IP:]HOST:GUEST[/udp] from the host to the "
            "namespace (repeatable)"
        ),
        native=False,
    ),
    OptionSpec(
        name="pcap",
        metavar="FILE",
        help="write every frame on the TAP to FILE (libpcap format)",
        native=False,
    ),
    OptionSpec(
        name="max-flows",
        metavar="N",
        help="TCP connections tracked at once (default=4096)",
        native=False,
    ),
    OptionSpec(
        name="max-half-open",
        metavar="N",
        help="guest SYNs waiting for the host's connect (default=256)",
        native=False,
    ),
    OptionSpec(
        name="max-udp-flows",
        metavar="N",
        help="UDP and ping flows, one host socket each (default=1024)",
        native=False,
    ),
    OptionSpec(
        name="tcp-buffer",
        metavar="BYTES",
        help="per-connection receive window and send buffer (default=1048576)",
        native=False,
    ),
    OptionSpec(name="debug", help="log debugging messages to stderr", native=False),
    OptionSpec(name="help", short="h", help="show this help and exit"),
    OptionSpec(name="version", short="v", help="show version and exit"),
)
"""Every option, in ``--help`` order."""

_BY_LONG: Final = {spec.name: spec for spec in OPTIONS}
_BY_SHORT: Final = {spec.short: spec for spec in OPTIONS if spec.short is not None}
SHORT_OPTIONS: Final = "".join(
    spec.short + (":" if spec.takes_arg else "")
    for spec in OPTIONS
    if spec.short is not None
)
"""The ``getopt`` short-option string: slirp4netns's ``ce:r:m:a:6hv`` reordered."""


class _Exit(Exception):
    """Stop parsing: print ``message`` to stderr, maybe the usage, exit ``code``."""

    def __init__(
        self, code: int, message: str | None = None, *, usage: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.usage = usage


def _usage_error(message: str | None = None) -> _Exit:
    return _Exit(1, message, usage=True)


@dataclass(slots=True)
class _Options:
    """What the option loop collected, before any cross-option checks."""

    configure: bool = False
    exit_fd: int | None = None
    ready_fd: int | None = None
    mtu: int | None = None
    """``--mtu``; None: the default of the form used."""
    cidr: str = DEFAULT_CIDR
    disable_host_loopback: bool = False
    netns_type: str | None = None
    netns_path: str | None = None
    cidr6: str = DEFAULT_CIDR6
    port_splice: bool = False
    userns_path: str | None = None
    api_socket: str | None = None
    enable_ipv6: bool = False
    enable_sandbox: bool = False
    enable_seccomp: bool = False
    outbound_addr: str | None = None
    outbound_addr6: str | None = None
    disable_dns: bool = False
    macaddress: str | None = None
    target_type: str | None = None
    debug: bool = False
    pcap: str | None = None
    limits: dict[str, int] = field(default_factory=dict)
    """``--max-flows`` and the like, by option name."""
    publish: list[str] = field(default_factory=list)
    quiet: bool = False
    """``slirpy -- COMMAND``: no option warnings on stdout."""
    unsupported: list[str] = field(default_factory=list)
    """Long names of the unsupported options given, in order, without repeats."""


def prog_name(argv0: str | None = None) -> str:
    """The name messages start with: the basename of ``argv[0]``, else ``slirpy``.

    A ``slirp4netns`` symlink to slirpy therefore prints ``slirp4netns: ...``
    like the original; ``python -m slirpy`` prints ``slirpy: ...``.
    """
    if argv0 is None:
        argv0 = sys.argv[0] if sys.argv else ""
    base = os.path.basename(argv0)
    if not base or base in ("-c", "-m") or base.endswith(".py"):
        return DEFAULT_PROG
    return base


def usage_text(prog: str = DEFAULT_PROG) -> str:
    """The ``--help`` text, also printed after most usage errors."""
    lines = [
        f"Usage: {prog} [OPTION]... PID|PATH|FD [TAPNAME]",
        f"   or: {prog} [OPTION]... -- [COMMAND [ARG]...]",
        "User-mode networking for unprivileged network namespaces.",
        "",
    ]
    for spec in OPTIONS:
        if spec.listed:
            description = (spec.help or "").format(prog=prog)
            lines.append(f"{spec.column():<{_HELP_COLUMN - 1}} {description}")
    return "\n".join(lines) + "\n"


def version_text() -> str:
    """The ``--version`` text in slirp4netns's machine-parsable layout."""
    return (
        f"slirpy version {__version__}\n"
        "commit: unknown\n"
        f"libslirp: none (slirpy {__version__})\n"
        f"SLIRP_CONFIG_VERSION_MAX: {SLIRP_CONFIG_VERSION_MAX}\n"
        f"core: {core_kind()}\n"
    )


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def _limits(given: dict[str, int]) -> Limits:
    """The stack's bounds, with the options given on the command line."""
    buffer = given.get("tcp-buffer")
    changes: dict[str, int] = {
        field_name: given[option]
        for option, field_name in (
            ("max-flows", "max_tcp_flows"),
            ("max-half-open", "max_half_open"),
            ("max-udp-flows", "max_udp_flows"),
        )
        if option in given
    }
    if buffer is not None:
        changes["tcp_rcv_window"] = changes["tcp_snd_buffer"] = buffer
    return dataclasses.replace(Limits(), **changes)


def _strtol(text: str) -> int | None:
    """C ``strtol(text, &end, 10)`` that must consume the whole string.

    Leading white space and a sign are accepted as in C. Unlike C, the empty
    string is refused rather than read as 0.
    """
    match = _STRTOL_RE.fullmatch(text)
    if match is None:
        return None
    value = int(match.group(1))
    if not _LONG_MIN <= value <= _LONG_MAX:
        return None
    return value


def _parse_fd(text: str, message: str) -> int:
    value = _strtol(text)
    if value is None or not 0 <= value <= _INT_MAX:
        raise _usage_error(message)
    return value


def _match_long(name: str, body: str, prog: str) -> OptionSpec:
    """Resolve a long option like ``getopt_long``: exact name, else a unique prefix."""
    exact = _BY_LONG.get(name)
    if exact is not None:
        return exact
    candidates = [spec for spec in OPTIONS if spec.name.startswith(name)]
    native = [spec for spec in candidates if spec.native]
    if native:
        candidates = native
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise _usage_error(f"{prog}: unrecognized option '--{body}'")
    possibilities = "".join(f" '--{spec.name}'" for spec in candidates)
    raise _usage_error(
        f"{prog}: option '--{body}' is ambiguous; possibilities:{possibilities}"
    )


def _iter_options(
    args: Sequence[str],
    positionals: list[str],
    prog: str,
    separator: list[int] | None = None,
) -> Iterator[tuple[OptionSpec, str | None]]:
    """Yield ``(option, argument)`` pairs in argv order, GNU ``getopt_long`` style.

    Non-option arguments are appended to ``positionals`` (options may follow
    them unless ``POSIXLY_CORRECT`` is set); ``--`` ends the options. Errors
    raise at the point glibc would report them, so earlier options have been
    acted on. ``separator`` gets how many positionals came before ``--``.
    """
    posixly_correct = "POSIXLY_CORRECT" in os.environ
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            if separator is not None:
                separator.append(len(positionals))
            positionals.extend(args[index:])
            return
        if arg.startswith("--"):
            body = arg[2:]
            name, has_value, value = body.partition("=")
            spec = _match_long(name, body, prog)
            if not spec.takes_arg:
                if has_value:
                    raise _usage_error(
                        f"{prog}: option '--{spec.name}' doesn't allow an argument"
                    )
                yield spec, None
                continue
            if not has_value:
                if index >= len(args):
                    raise _usage_error(
                        f"{prog}: option '--{spec.name}' requires an argument"
                    )
                value = args[index]
                index += 1
            yield spec, value
        elif arg.startswith("-") and arg != "-":
            pos = 1
            while pos < len(arg):
                char = arg[pos]
                pos += 1
                short = _BY_SHORT.get(char)
                if short is None:
                    raise _usage_error(f"{prog}: invalid option -- '{char}'")
                if not short.takes_arg:
                    yield short, None
                    continue
                if pos < len(arg):
                    value = arg[pos:]
                elif index < len(args):
                    value = args[index]
                    index += 1
                else:
                    raise _usage_error(
                        f"{prog}: option requires an argument -- '{char}'"
                    )
                yield short, value
                break
        else:
            positionals.append(arg)
            if posixly_correct:
                positionals.extend(args[index:])
                return


def _apply(opts: _Options, spec: OptionSpec, value: str | None, prog: str) -> None:
    """Act on one option as soon as it is parsed (``main.c: parse_args`` switch)."""
    if not spec.supported and spec.name not in opts.unsupported:
        opts.unsupported.append(spec.name)
    if spec.warning is not None and spec.supported and not opts.quiet:
        _out(spec.warning)
    arg = value if value is not None else ""
    match spec.name:
        case "configure":
            opts.configure = True
        case "exit-fd":
            opts.exit_fd = _parse_fd(arg, "exit-fd must be a non-negative integer")
        case "ready-fd":
            opts.ready_fd = _parse_fd(arg, "ready-fd must be a non-negative integer")
        case "mtu":
            mtu = _strtol(arg)
            if mtu is None or not 0 < mtu <= MAX_MTU:
                raise _usage_error(f"MTU must be a positive integer (< {MAX_MTU + 1})")
            if mtu < MIN_MTU:
                raise _usage_error(f"MTU must be at least {MIN_MTU}")
            opts.mtu = mtu
        case "cidr":
            opts.cidr = arg
        case "disable-host-loopback" | "no-host-loopback":
            opts.disable_host_loopback = True
        case "netns-type":
            opts.netns_type = arg
        case "netns-path":
            opts.netns_path = arg
        case "cidr6":
            opts.cidr6 = arg
        case "port-splice":
            opts.port_splice = True
        case "userns-path":
            if not os.access(arg, os.F_OK):
                raise _usage_error(f"userns path doesn't exist: {arg}")
            opts.userns_path = arg
        case "api-socket":
            opts.api_socket = arg
        case "enable-ipv6":
            opts.enable_ipv6 = True
        case "enable-sandbox" | "create-sandbox":
            opts.enable_sandbox = True
        case "enable-seccomp":
            opts.enable_seccomp = True
        case "outbound-addr":
            opts.outbound_addr = arg
        case "outbound-addr6":
            opts.outbound_addr6 = arg
        case "disable-dns":
            opts.disable_dns = True
        case "macaddress":
            opts.macaddress = arg
        case "target-type":
            opts.target_type = arg
        case "debug":
            opts.debug = True
        case "pcap":
            opts.pcap = arg
        case "max-flows" | "max-half-open" | "max-udp-flows" | "tcp-buffer":
            number = _strtol(arg)
            if number is None or not 1 <= number <= _INT_MAX:
                raise _usage_error(f"--{spec.name} must be a positive integer")
            opts.limits[spec.name] = number
        case "publish":
            opts.publish.append(arg)
        case "help":
            _out(usage_text(prog))
            raise _Exit(0)
        case "version":
            _out(version_text())
            raise _Exit(0)
        case _:  # pragma: no cover - every OPTIONS entry has a case
            raise AssertionError(spec.name)


def parse_cidr(text: str) -> ipaddress.IPv4Network:
    """``--cidr`` exactly as ``main.c: parse_cidr`` checks it.

    Raises ``ValueError`` carrying slirp4netns's message.
    """
    match = _CIDR_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid CIDR: {text}")
    address, prefix_text = match.groups()
    try:
        packed = socket.inet_pton(socket.AF_INET, address)
    except OSError:
        raise ValueError(f"invalid network address: {address}") from None
    prefix = int(prefix_text)
    if not _NETWORK_PREFIX_MIN <= prefix <= _NETWORK_PREFIX_MAX:
        raise ValueError(
            f"prefix length needs to be {_NETWORK_PREFIX_MIN}-{_NETWORK_PREFIX_MAX}"
        )
    network = int.from_bytes(packed, "big")
    netmask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    if network & netmask != network:
        raise ValueError(
            "CIDR needs to be a network address like 10.0.2.0/24, "
            "not like 10.0.2.100/24"
        )
    return ipaddress.IPv4Network((network, prefix))


def parse_mac(text: str) -> bytes:
    """``--macaddress`` as slirp4netns reads it: up to six ``:``-separated hex bytes.

    Each byte is read like C ``sscanf("%x")`` (so trailing junk after the digits
    is ignored); fewer than six bytes are accepted and the rest are zero. Raises
    ``ValueError`` carrying slirp4netns's message.
    """
    data = bytearray()
    pos: int | None = 0
    while pos is not None and len(data) < 6:
        if pos != 0:
            pos += 1  # step over the ':'
        match = _HEX_RE.match(text, pos)
        value = -1
        if match is not None:
            sign, digits = match.groups()
            value = -int(digits, 16) if sign == "-" else int(digits, 16)
        if not 0 <= value <= 255:
            raise ValueError(f'"{text}" is an invalid MAC address.')
        data.append(value)
        colon = text.find(":", pos)
        pos = None if colon < 0 else colon
    if pos is not None:
        raise ValueError(f'"{text}" is an invalid MAC address.  Is it too long?')
    return bytes(data.ljust(6, b"\0"))


def _truncate_ifname(name: str) -> str:
    """Cut an interface name to ``IFNAMSIZ - 1`` bytes, as ``strncpy`` into ifr_name."""
    return os.fsdecode(os.fsencode(name)[: IFNAMSIZ - 1])


def _check_path(path: str, what: str) -> None:
    try:
        os.stat(path)
    except OSError as exc:
        raise _usage_error(
            f"existing path expected when {what}: {exc.strerror}"
        ) from None


def _target(
    opts: _Options, positionals: list[str]
) -> tuple[NetnsType, str, str | None, bool]:
    """The namespace and TAP the positionals name: type, target, TAPNAME, ``-c``."""
    if opts.netns_path is not None:
        netns_type = NetnsType.PATH
    elif opts.netns_type is None or opts.netns_type == "pid":
        netns_type = NetnsType.PID
    elif opts.netns_type == "tapfd":
        netns_type = NetnsType.TAPFD
    else:
        netns_type = NetnsType.PATH  # any other value, as in slirp4netns

    # How many positionals are required, and how many are expected at most.
    if opts.netns_path is not None:
        required, expected = 1, 1
    elif netns_type is NetnsType.TAPFD:
        required, expected = 1, 2
    else:
        required, expected = 2, 2
    if len(positionals) < required:
        raise _usage_error()
    if len(positionals) > expected:
        # Not an error in slirp4netns, "for preventing potential compatibility issue".
        _out("WARNING: too many arguments")

    tap_name: str | None
    configure = opts.configure
    if opts.netns_path is not None:
        _check_path(opts.netns_path, "--netns-path")
        target = opts.netns_path
        tap_name = positionals[0]
    elif netns_type is NetnsType.PID:
        pid = _strtol(positionals[0])
        if pid is None or not 0 < pid <= _INT_MAX:
            raise _usage_error("PID must be a positive integer")
        target = str(pid)
        tap_name = positionals[1]
    elif netns_type is NetnsType.TAPFD:
        tapfd = _strtol(positionals[0])
        if tapfd is None or not 0 <= tapfd <= _INT_MAX:
            raise _usage_error("TAPFD must a file descriptor")
        target = str(tapfd)
        tap_name = None  # the TAP is already open; a TAPNAME is ignored
        configure = False  # slirp4netns ignores -c here too
    else:
        _check_path(positionals[0], "--netns-type=path")
        target = positionals[0]
        tap_name = positionals[1]
    if tap_name is not None:
        tap_name = _truncate_ifname(tap_name)
    return netns_type, target, tap_name, configure


def _build(
    opts: _Options,
    positionals: list[str],
    prog: str,
    command: list[str] | None = None,
) -> DaemonConfig:
    """Everything after the option loop, in slirp4netns's order.

    ``command``: the COMMAND of the ``slirpy -- COMMAND`` form (``-c`` implied).
    """
    if command is not None:
        opts.configure = True
    if opts.macaddress is not None and not opts.configure:
        raise _usage_error(
            "--macaddr cannot be specified when --configure or -c is not specified"
        )
    if opts.target_type is not None and opts.target_type not in ("netns", "bess"):
        raise _usage_error('--target-type must be either "netns" or "bess"')
    if opts.target_type == "bess":
        # BESS mode takes different positionals; refuse before checking them.
        raise _Exit(1, f"{prog}: option '--target-type=bess' is not supported yet")
    if opts.netns_path is not None and opts.netns_type not in (None, "path"):
        raise _usage_error(
            f"--netns-path conflicts with --netns-type={opts.netns_type}"
        )

    tap_name: str | None
    if command is not None:
        if opts.userns_path is not None:
            raise _Exit(1, "--userns-path cannot be used with a COMMAND")
        netns_type, target, tap_name, configure = NetnsType.PID, "", RUN_TAP_NAME, True
    elif opts.publish:
        raise _Exit(1, f"--publish needs a COMMAND: {prog} [OPTION]... -- COMMAND")
    else:
        netns_type, target, tap_name, configure = _target(opts, positionals)

    try:
        network = parse_cidr(opts.cidr)
    except ValueError as exc:
        raise _Exit(1, str(exc)) from None
    macaddress: bytes | None = None
    if opts.macaddress is not None:
        try:
            macaddress = parse_mac(opts.macaddress)
        except ValueError as exc:
            raise _Exit(
                1,
                f"{exc}\nmacaddress has to be a valid MAC address (hex string, "
                "6 bytes, each byte separated by a ':').",
            ) from None

    try:
        network6 = ipaddress.IPv6Network(opts.cidr6)
    except ValueError:
        network6 = None
    if network6 is None or network6.prefixlen != 64:
        raise _Exit(
            1, f"invalid IPv6 prefix: {opts.cidr6} (a /64 like {DEFAULT_CIDR6})"
        )

    if opts.port_splice and netns_type is NetnsType.TAPFD:
        raise _Exit(1, "--port-splice needs a PID or a namespace path, not a TAP fd")

    outbound_addr = None
    if opts.outbound_addr is not None:
        from slirpy.proxy.outbound import resolve_ipv4

        outbound_addr = resolve_ipv4(opts.outbound_addr)
        if outbound_addr is None:
            raise _Exit(
                1, "outbound-addr has to be valid ipv4 address or interface name."
            )
    outbound_addr6 = None
    if opts.outbound_addr6 is not None:
        from slirpy.proxy.outbound import resolve_ipv6

        outbound_addr6 = resolve_ipv6(opts.outbound_addr6)
        if outbound_addr6 is None:
            raise _Exit(
                1, "outbound-addr6 has to be valid ipv6 address or interface name."
            )

    publish: list[Publish] = []
    if opts.publish:
        from slirpy.run import parse_publish

        for spec in opts.publish:
            try:
                publish.append(parse_publish(spec))
            except ValueError as exc:
                raise _Exit(1, str(exc)) from None

    if opts.unsupported:
        raise _Exit(
            1,
            "\n".join(
                f"{prog}: option '--{name}' is not supported yet"
                for name in opts.unsupported
            ),
        )

    return DaemonConfig(
        netns_type=netns_type,
        target=target,
        tap_name=tap_name,
        userns_path=opts.userns_path,
        configure=configure,
        macaddress=macaddress,
        ready_fd=opts.ready_fd,
        exit_fd=opts.exit_fd,
        api_socket=opts.api_socket,
        port_splice=opts.port_splice,
        outbound_addr=outbound_addr,
        outbound_addr6=outbound_addr6,
        enable_sandbox=opts.enable_sandbox,
        enable_seccomp=opts.enable_seccomp,
        debug=opts.debug,
        pcap=opts.pcap,
        command=None if command is None else tuple(command),
        publish=tuple(publish),
        stack=StackConfig(
            network=network,
            mtu=opts.mtu
            if opts.mtu is not None
            else (DEFAULT_MTU if command is None else RUN_MTU),
            disable_host_loopback=opts.disable_host_loopback,
            disable_dns=opts.disable_dns,
            enable_ipv6=opts.enable_ipv6,
            network6=network6,
            limits=_limits(opts.limits),
        ),
    )


def _command(args: Sequence[str], prog: str) -> list[str] | None:
    """The COMMAND of ``slirpy [OPTION]... -- [COMMAND [ARG]...]`` (maybe empty),
    or None for slirp4netns's form; see the module docstring for the rule."""
    words: list[str] = []
    separator: list[int] = []
    names: set[str] = set()
    try:
        for spec, _ in _iter_options(args, words, prog, separator):
            names.add(spec.name)
    except _Exit:
        return None  # the real pass reports it
    if separator != [0] or names & {"netns-type", "netns-path"}:
        return None
    if words and _strtol(words[0]) is not None:
        return None  # "slirpy -- PID TAPNAME"
    return words


def parse_args(args: Sequence[str], *, prog: str | None = None) -> DaemonConfig | int:
    """Parse the arguments after the program name.

    Returns the daemon's config, or an exit code once ``--help``/``--version``
    or an error message has been printed (to stdout/stderr as slirp4netns
    does). ``prog`` defaults to ``prog_name()``.
    """
    if prog is None:
        prog = prog_name()
    command = _command(args, prog)
    opts = _Options(quiet=command is not None)
    positionals: list[str] = []
    try:
        for spec, value in _iter_options(args, positionals, prog):
            _apply(opts, spec, value, prog)
        return _build(opts, positionals, prog, command)
    except _Exit as stop:
        if stop.message is not None:
            _err(stop.message)
        if stop.usage:
            _out(usage_text(prog))
        return stop.code


def setup_logging(*, debug: bool, prog: str = DEFAULT_PROG) -> None:
    """Log to stderr: slirpy's loggers at WARNING, or DEBUG with ``--debug``."""
    name = prog.replace("%", "%%")
    fmt = f"{name}: %(name)s: %(message)s" if debug else f"{name}: %(message)s"
    logging.basicConfig(
        level=logging.WARNING, format=fmt, stream=sys.stderr, force=True
    )
    logging.getLogger("slirpy").setLevel(logging.DEBUG if debug else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """The ``slirpy`` command: parse ``argv`` (default ``sys.argv[1:]``) and run."""
    prog = prog_name()
    result = parse_args(sys.argv[1:] if argv is None else argv, prog=prog)
    if isinstance(result, int):
        return result
    setup_logging(debug=result.debug, prog=prog)
    log.debug("config: %s", result)

    # Imported here so that --help and usage errors never load the daemon.
    if result.command is not None:
        from slirpy import run

        return run.run_command(result, prog=prog)
    from slirpy import daemon

    return daemon.run(result)
