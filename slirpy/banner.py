# SPDX-License-Identifier: GPL-2.0-or-later
"""The start-up banner: the text slirp4netns prints to stdout once the TAP is open.

Layout and wording follow ``main.c: parent()`` of slirp4netns v1.3: a
``Starting slirp`` line, one ``* Label:`` line per setting with the values
aligned in one column, and the host-loopback warning unless
``--disable-host-loopback`` is given. Nothing parses the banner, but people
read it in podman's and rootlesskit's logs, so it keeps the familiar shape.
"""

from __future__ import annotations

from typing import Final

from slirpy.config import DaemonConfig
from slirpy.stack import COMPILED

VALUE_COLUMN: Final = 19
"""Where values start: ``printf("* MTU:             %d")`` puts them at column 19."""


def _row(label: str, value: object) -> str:
    return f"{f'* {label}:':<{VALUE_COLUMN}}{value}"


def core_kind() -> str:
    """How the sans-IO core runs: mypyc-compiled, or plain Python."""
    return "compiled (mypyc)" if COMPILED else "Python"


def format_banner(
    config: DaemonConfig, *, offload: bool | None = None, core: str | None = None
) -> str:
    """The banner for ``config``, lines joined by ``\\n``, with no final newline.

    ``offload`` adds slirpy's own ``* Offloads:`` line: whether the TAP carries
    the virtio-net header with checksum and segmentation offloads. ``None``
    leaves the line out; so does ``core`` for the ``* Core:`` line (how the
    sans-IO core runs, ``core_kind()``).
    """
    stack = config.stack
    lines = [
        "Starting slirp",
        _row("MTU", stack.mtu),
        _row("Network", stack.network.network_address),
        _row("Netmask", stack.network.netmask),
        _row("Gateway", stack.gateway),
        _row("DNS", stack.dns),
        _row("DHCP begin", stack.dhcp_start),
        _row("DHCP end", stack.dhcp_end),
        _row("Recommended IP", stack.guest),
    ]
    if config.api_socket is not None:
        lines.append(_row("API Socket", config.api_socket))
    if config.macaddress is not None:
        lines.append(_row("MAC address", config.macaddress.hex(":")))
    if offload is not None:
        lines.append(_row("Offloads", "on" if offload else "off"))
    if core is not None:
        lines.append(_row("Core", core))
    if not stack.disable_host_loopback:
        lines.append(
            f"WARNING: 127.0.0.1:* on the host is accessible as {stack.gateway} "
            "(set --disable-host-loopback to prohibit connecting to 127.0.0.1:*)"
        )
    return "\n".join(lines)
