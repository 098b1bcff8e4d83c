# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP connection states with their RFC 9293 names, and predicates over them."""

from __future__ import annotations

import enum


class TCPState(enum.Enum):
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"
    CLOSED = "CLOSED"

    @property
    def is_synchronized(self) -> bool:
        """States after the three-way handshake (RFC 9293 §3.5)."""
        return self not in (TCPState.SYN_SENT, TCPState.SYN_RECEIVED, TCPState.CLOSED)

    @property
    def receives_data(self) -> bool:
        """States in which the guest may still send data (it has sent no FIN)."""
        return self in (TCPState.ESTABLISHED, TCPState.FIN_WAIT_1, TCPState.FIN_WAIT_2)

    @property
    def sends_data(self) -> bool:
        """States in which slirpy may still send data (it has sent no FIN)."""
        return self in (TCPState.ESTABLISHED, TCPState.CLOSE_WAIT)
