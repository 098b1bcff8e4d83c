# SPDX-License-Identifier: GPL-2.0-or-later
"""The sans-IO network stack: bytes and ``now`` in; frames, events and a deadline out.

Nothing in this package does I/O or reads a clock; ``slirpy.driver`` feeds it.
"""

from slirpy.stack.config import Limits, StackConfig
from slirpy.stack.stack import RejectReason, Stack

__all__ = ["Limits", "RejectReason", "Stack", "StackConfig"]
