"""The relay's cursor: never steps over a hole that may still commit."""

from __future__ import annotations

from extracted.sync.cursor import DeliveryCursor


def test_low_water_follows_consecutive_deliveries() -> None:
    cursor = DeliveryCursor(low_water=10)
    assert cursor.mark([11, 12, 13], now=0.0) == 13
    assert cursor.delivered == set()


def test_young_hole_holds_the_low_water_but_not_delivery() -> None:
    # given positions 1, 2 and 4 delivered while 3 is still in flight
    cursor = DeliveryCursor(hole_grace=5.0)
    assert cursor.mark([1, 2, 4], now=100.0) == 2
    # then 4 is not pending again, 3 is, and the cursor reports holes
    assert cursor.pending([3, 4, 5]) == [3, 5]
    assert cursor.has_holes
    # when 3 commits late and is delivered, the mark jumps over both
    assert cursor.mark([3], now=101.0) == 4
    assert not cursor.has_holes
    assert cursor.holes_skipped == 0


def test_old_hole_is_taken_for_a_rollback_and_counted() -> None:
    cursor = DeliveryCursor(hole_grace=2.0)
    cursor.mark([1, 3], now=10.0)
    assert cursor.advance(now=11.9) == 1
    assert cursor.advance(now=12.0) == 3
    assert cursor.holes_skipped == 1


def test_preview_does_not_change_the_cursor() -> None:
    cursor = DeliveryCursor(low_water=5)
    assert cursor.preview([6, 7], now=0.0) == 7
    assert cursor.low_water == 5
    assert cursor.pending([6, 7]) == [6, 7]


def test_positions_at_or_below_the_mark_are_ignored() -> None:
    cursor = DeliveryCursor(low_water=5)
    assert cursor.mark([3, 4, 6], now=0.0) == 6
    assert cursor.delivered == set()


def test_a_pruned_gap_settles_in_one_grace_not_one_per_position() -> None:
    # a service re-created after `outbox prune` starts below a gap of every pruned event:
    # stepping over it one position per grace took a minute for 60 events (days for a big outbox)
    cursor = DeliveryCursor(low_water=0, hole_grace=1.0)
    assert cursor.mark([1001, 1002], now=10.0) == 0
    assert cursor.advance(now=10.5) == 0  # younger than the grace: wait
    assert cursor.advance(now=11.0) == 1002
    assert cursor.holes_skipped == 1000
    # with a horizon: one mark for the gap, settled by one snapshot past it
    cursor = DeliveryCursor(low_water=0)
    assert cursor.mark([501], now=0.0, horizon=(100, 105)) == 0
    assert cursor.advance(now=0.1, horizon=(104, 110)) == 0  # a transaction < 105 still runs
    assert cursor.advance(now=0.2, horizon=(105, 110)) == 501
