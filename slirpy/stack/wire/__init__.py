# SPDX-License-Identifier: GPL-2.0-or-later
"""Byte layouts of the protocols the stack speaks: parse and emit, no state.

Each module offers an immutable header value with a checked ``parse`` that
takes a ``memoryview`` and returns the header and the rest of the buffer, and
emitters that build bytes. Parsers raise only ``slirpy.stack.errors.WireError``
subclasses. The per-frame headers are named tuples: compiled, a tuple is built
in C where a frozen dataclass goes through ``object.__setattr__`` per field
(``bench/README.md``); the DHCP message, rare and with list fields, stays a
frozen dataclass.
"""
