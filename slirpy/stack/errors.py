# SPDX-License-Identifier: GPL-2.0-or-later
"""The stack's exceptions: what the guest got wrong versus what slirpy got wrong.

``WireError`` and its subclasses mean the bytes from the guest are bad; the
stack catches them at its boundary, counts them and drops the frame.
``ProtocolStateError`` means the driver called the stack wrongly (a bug in
slirpy, never in the guest).
"""


class WireError(ValueError):
    """Bytes that cannot be a valid header or packet."""


class TruncatedError(WireError):
    """The buffer is shorter than the header or a length field claims."""


class MalformedError(WireError):
    """A field holds a value the protocol does not allow."""


class ChecksumError(WireError):
    """The checksum does not match the contents."""


class ProtocolStateError(RuntimeError):
    """The stack's API was used in a way its state does not allow."""
