# SPDX-License-Identifier: GPL-2.0-or-later
"""``LossyLink``: one direction of a virtual wire that drops, duplicates and
reorders frames, after smoltcp's ``FaultInjector``, on a seeded RNG.

Frames are delivered after ``delay`` seconds of virtual time; a reordered
frame is held back by up to ``reorder_spread`` more, so frames sent after it
overtake it. Frames are never corrupted: corruption is the checksum's job,
and the stack (rightly, on a TAP) does not verify checksums.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field


@dataclass
class LossyLink:
    rng: random.Random
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.001
    reorder_spread: float = 0.004
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    _queue: list[tuple[float, int, bytes]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def transmit(self, frame: bytes, now: float) -> None:
        self.sent += 1
        if self.rng.random() < self.drop:
            self.dropped += 1
            return
        copies = 1
        if self.rng.random() < self.duplicate:
            self.duplicated += 1
            copies = 2
        for _ in range(copies):
            at = now + self.delay
            if self.rng.random() < self.reorder:
                self.reordered += 1
                at += self.rng.uniform(0, self.reorder_spread)
            heapq.heappush(self._queue, (at, next(self._order), frame))

    def due(self, now: float) -> list[bytes]:
        """Frames whose delivery time has come, in arrival order."""
        out = []
        queue = self._queue
        while queue and queue[0][0] <= now:
            out.append(heapq.heappop(queue)[2])
        return out

    def next_delivery(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)
