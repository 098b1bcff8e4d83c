# SPDX-License-Identifier: GPL-2.0-or-later
"""The sans-IO network stack: bytes and ``now`` in; frames, events and a deadline out.

Nothing in this package does I/O or reads a clock; ``slirpy.driver`` feeds it.
Installed, its modules are compiled by mypyc (see ``setup.py``); ``COMPILED``
says whether this process runs them so or as plain Python.
"""

from typing import Final

from slirpy.stack import stack as _stack
from slirpy.stack.config import Limits, StackConfig
from slirpy.stack.stack import RejectReason, Stack

COMPILED: Final = not (_stack.__file__ or "").endswith(".py")
"""True when the stack's modules run as mypyc-compiled extension modules."""

__all__ = ["COMPILED", "Limits", "RejectReason", "Stack", "StackConfig"]
