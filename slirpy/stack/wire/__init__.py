# SPDX-License-Identifier: GPL-2.0-or-later
"""Byte layouts of the protocols the stack speaks: parse and emit, no state.

Each module offers a frozen header value with a checked ``parse`` that takes a
``memoryview`` and returns the header and the rest of the buffer, and emitters
that build bytes. Parsers raise only ``slirpy.stack.errors.WireError`` subclasses.
"""
