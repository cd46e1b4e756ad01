"""Where the relay is in a stream: a low-water mark that never steps over a young hole.

Outbox positions come from an auto-increment id. On PostgreSQL two transactions can take
ids 10 and 11 and commit 11 first: for a moment 10 is a *hole*, and a cursor that simply
jumped to 11 would lose event 10 for ever. So the cursor keeps

* ``low_water``: every position at or below it is delivered (or a hole old enough to be a
  rolled-back transaction, see ``hole_grace``), and
* ``delivered``: positions above it that are already delivered.

Events above a hole are still delivered at once (per-aggregate order is kept by the
producer: two changes of one row serialise on the row lock, so the later one always has the
higher position); only the saved position waits.

When is a hole a rolled-back transaction rather than a slow one? On PostgreSQL the database
says so: the relay passes the write horizon (``xmin``, ``xmax`` of a snapshot, see
``Database.write_horizon``). A hole is marked with the ``xmax`` read just after the fetch
that revealed it; once a later snapshot's ``xmin`` (read before a later fetch, which looked
below the top again) reaches the mark, every transaction that could hold the position has
ended, and the position is stepped over (counted in ``holes_skipped``). However long a
transaction stays open, its event is not skipped. Without a horizon (SQLite, where writers
are serialised and holes only come from deleted rows) a hole older than ``hole_grace``
seconds is stepped over.
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
    hole_marks: dict[int, int] = field(default_factory=dict)

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

    def preview(self, positions: Iterable[int], now: float,
                horizon: tuple[int, int] | None = None) -> int:
        """The low-water mark ``mark(positions, now, horizon)`` would reach, unchanged."""
        copy = DeliveryCursor(self.low_water, self.hole_grace, set(self.delivered),
                              dict(self.holes_first_seen), self.holes_skipped,
                              dict(self.hole_marks))
        return copy.mark(positions, now, horizon)

    def mark(self, positions: Iterable[int], now: float,
             horizon: tuple[int, int] | None = None) -> int:
        """Record delivered positions and advance the low-water mark; return it.

        >>> c = DeliveryCursor(low_water=0, hole_grace=5.0)
        >>> c.mark([1, 2, 4], now=100.0)   # 3 is a hole: wait
        2
        >>> c.mark([], now=106.0)          # older than the grace: a rollback, step over
        4
        """
        self.delivered.update(p for p in positions if p > self.low_water)
        return self.advance(now, horizon)

    def advance(self, now: float, horizon: tuple[int, int] | None = None) -> int:
        """Move the low-water mark over delivered positions and over settled holes.

        ``horizon`` is ``(xmin read before the last fetch, xmax read after it)``; without
        one, a hole settles after ``hole_grace`` seconds.

        >>> c = DeliveryCursor(low_water=0)
        >>> c.mark([1, 3], now=0.0, horizon=(100, 105))   # 2 is a hole, marked 105
        1
        >>> c.advance(now=999.0, horizon=(104, 110))       # a transaction < 105 still runs
        1
        >>> c.advance(now=999.0, horizon=(105, 110))       # all ended: a rollback
        3

        A gap settles as one: its positions were missing from the same fetches as its first
        hole (the fetch reads in order), so they are as old (a pruned outbox of N events
        would otherwise take N graces, one position at a time).

        >>> c = DeliveryCursor(low_water=0, hole_grace=5.0)
        >>> c.mark([4], now=100.0), c.advance(now=106.0)
        (0, 4)
        """
        top = self.top
        gap_seen: float | None = None  # when the gap being walked was first seen
        gap_mark: int | None = None  # and its horizon mark
        while self.low_water < top:
            nxt = self.low_water + 1
            if nxt in self.delivered:
                self.delivered.discard(nxt)
                gap_seen = gap_mark = None
            else:
                if gap_seen is not None:
                    self.holes_first_seen.setdefault(nxt, gap_seen)
                if gap_mark is not None:
                    self.hole_marks.setdefault(nxt, gap_mark)
                if not self._settled(nxt, now, horizon):
                    break
                gap_seen = self.holes_first_seen.get(nxt)
                gap_mark = self.hole_marks.get(nxt)
                self.holes_skipped += 1
            self.low_water = nxt
        for marks in (self.holes_first_seen, self.hole_marks):
            for hole in [h for h in marks if h <= self.low_water]:
                marks.pop(hole)
        return self.low_water

    def _settled(self, hole: int, now: float, horizon: tuple[int, int] | None) -> bool:
        if horizon is None:
            return now - self.holes_first_seen.setdefault(hole, now) >= self.hole_grace
        if hole not in self.hole_marks:
            self.hole_marks[hole] = horizon[1]
            return False
        return horizon[0] >= self.hole_marks[hole]
