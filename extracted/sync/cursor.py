"""Where the relay is in a stream: a low-water mark that never steps over a young hole.

Outbox positions come from an auto-increment id. On PostgreSQL two transactions can take
ids 10 and 11 and commit 11 first: for a moment 10 is a *hole*, and a cursor that simply
jumped to 11 would lose event 10 for ever. So the cursor keeps

* ``low_water``: every position at or below it is delivered (or a hole old enough to be a
  rolled-back transaction, see ``hole_grace``), and
* ``delivered``: positions above it that are already delivered.

Events above a hole are still delivered at once (per-aggregate order is kept by the
producer: two changes of one row serialise on the row lock, so the later one always has the
higher position); only the saved position waits. A hole older than ``hole_grace`` seconds is
treated as a rolled-back transaction and stepped over (counted in ``holes_skipped``). On
SQLite writers are serialised, so holes only come from rollbacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class DeliveryCursor:
    """The relay's position in one stream (mutable: it is the relay's working state)."""

    low_water: int = 0
    hole_grace: float = 5.0
    delivered: set[int] = field(default_factory=set)
    holes_first_seen: dict[int, float] = field(default_factory=dict)
    holes_skipped: int = 0

    @property
    def top(self) -> int:
        """The highest delivered position (the low-water mark when nothing is above it)."""
        return max(self.delivered, default=self.low_water)

    @property
    def has_holes(self) -> bool:
        """True while a position below ``top`` is neither delivered nor skipped."""
        return self.top > self.low_water

    def pending(self, positions: Iterable[int]) -> list[int]:
        """The positions still to deliver, in order.

        >>> DeliveryCursor(low_water=3, delivered={5}).pending([4, 5, 6])
        [4, 6]
        """
        return sorted(p for p in positions if p > self.low_water and p not in self.delivered)

    def preview(self, positions: Iterable[int], now: float) -> int:
        """The low-water mark ``mark(positions, now)`` would reach, without changing it."""
        copy = DeliveryCursor(self.low_water, self.hole_grace, set(self.delivered),
                              dict(self.holes_first_seen), self.holes_skipped)
        return copy.mark(positions, now)

    def mark(self, positions: Iterable[int], now: float) -> int:
        """Record delivered positions and advance the low-water mark; return it.

        >>> c = DeliveryCursor(low_water=0, hole_grace=5.0)
        >>> c.mark([1, 2, 4], now=100.0)   # 3 is a hole: wait
        2
        >>> c.mark([], now=106.0)          # older than the grace: a rollback, step over
        4
        """
        self.delivered.update(p for p in positions if p > self.low_water)
        return self.advance(now)

    def advance(self, now: float) -> int:
        """Move the low-water mark over delivered positions and over holes past their grace."""
        top = self.top
        while self.low_water < top:
            nxt = self.low_water + 1
            if nxt in self.delivered:
                self.delivered.discard(nxt)
            else:
                first = self.holes_first_seen.setdefault(nxt, now)
                if now - first < self.hole_grace:
                    break
                self.holes_first_seen.pop(nxt)
                self.holes_skipped += 1
            self.low_water = nxt
        for hole in [h for h in self.holes_first_seen if h <= self.low_water]:
            self.holes_first_seen.pop(hole)
        return self.low_water
