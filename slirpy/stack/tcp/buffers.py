# SPDX-License-Identifier: GPL-2.0-or-later
"""The send buffer of a TCP connection: bytes from the oldest unacknowledged
one on, kept as the chunks the host socket delivered.

Appending keeps a reference to the (immutable) chunk instead of copying it,
acknowledging drops whole chunks from the front, and a segment that lies in
one chunk is a ``memoryview`` of it, so the payload is copied only once, into
the frame. Small chunks are merged as they arrive, which bounds the number of
chunks a segment lookup walks.
"""

from __future__ import annotations

from collections import deque
from typing import Final

_MERGE_BELOW: Final = 16384


class SendBuffer:
    """A byte queue with cheap append, front removal and slicing."""

    __slots__ = ("_chunks", "_head", "_len")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._head = 0
        """Bytes of the first chunk already consumed."""
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def append(self, data: bytes | bytearray | memoryview) -> None:
        size = len(data)
        if not size:
            return
        chunks = self._chunks
        if size < _MERGE_BELOW and chunks and len(chunks[-1]) < _MERGE_BELOW:
            if len(chunks) == 1 and self._head:
                chunks[0] = chunks[0][self._head :]
                self._head = 0
            chunks[-1] = chunks[-1] + bytes(data)
        else:
            chunks.append(data if isinstance(data, bytes) else bytes(data))
        self._len += size

    def consume(self, n: int) -> None:
        """Drop the first ``n`` bytes (at most all of them)."""
        n = min(n, self._len)
        self._len -= n
        chunks = self._chunks
        head = self._head + n
        while chunks and head >= len(chunks[0]):
            head -= len(chunks.popleft())
        self._head = head if chunks else 0

    def peek(self, offset: int, n: int) -> bytes | memoryview:
        """``n`` bytes from ``offset`` on (both within the buffer)."""
        pos = self._head + offset
        chunks = self._chunks
        index = 0
        while pos >= len(chunks[index]):
            pos -= len(chunks[index])
            index += 1
        first = chunks[index]
        if pos + n <= len(first):
            return memoryview(first)[pos : pos + n]
        parts = [memoryview(first)[pos:]]
        need = n - (len(first) - pos)
        while need > 0:
            index += 1
            chunk = chunks[index]
            parts.append(memoryview(chunk)[:need])
            need -= len(chunk)
        return b"".join(parts)

    def clear(self) -> None:
        self._chunks.clear()
        self._head = 0
        self._len = 0
