"""Applying the AMQP transport's partition messages: positions per partition, the stream's
position at the lowest of them, and the same at-most-once decisions as the HTTP endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from extracted.catalog.models import Brand, DeadLetter, StreamPosition
from extracted.servicekit.apply import apply_partitions, partition_stream
from extracted.sync import OutboxEvent

pytestmark = pytest.mark.django_db


def brand(key: int, sequence: int, position: int, name: str = "Acme") -> OutboxEvent:
    return OutboxEvent(id=f"e{position}", position=position, aggregate_type="store.Brand",
                       aggregate_id=str(key), sequence=sequence,
                       type="created" if sequence == 1 else "updated",
                       payload={"name": name, "slug": f"b{key}", "country": "DE"})


def positions() -> dict[str, int]:
    return dict(StreamPosition.objects.values_list("stream", "position"))


def test_the_stream_position_is_the_lowest_partition_position() -> None:
    # given two partitions; partition 0 has applied up to 5, partition 1 nothing yet
    first = apply_partitions("monolith", 2, [brand(1, 1, 1), brand(1, 2, 5)], {0: 5})
    # then the stream may not claim 5: partition 1 may still hold events below it
    assert first.position == 0
    assert positions()[partition_stream("monolith", 0, 2)] == 5
    # when partition 1 catches up to 7 (and partition 0 is still at 5)
    second = apply_partitions("monolith", 2, [brand(2, 1, 3)], {1: 7})
    # then the stream is at 5, what every partition has passed
    assert second.position == 5
    assert positions()["monolith"] == 5
    assert Brand.objects.get(pk=1).name == "Acme"


def test_messages_of_several_partitions_in_one_transaction_keep_each_order() -> None:
    # partition 0 brings brand 1's two changes, partition 1 brand 2's, received together
    result = apply_partitions("monolith", 2, [brand(1, 1, 1), brand(2, 1, 2),
                                              brand(1, 2, 3, "Acme Corp")], {0: 3, 1: 3})
    assert (result.applied, result.position) == (3, 3)
    assert Brand.objects.get(pk=1).name == "Acme Corp"
    # redelivered after a lost ack: duplicates, nothing changes, position never goes back
    again = apply_partitions("monolith", 2, [brand(1, 1, 1), brand(1, 2, 3)], {0: 1})
    assert (again.applied, again.duplicates, again.position) == (0, 2, 3)


def test_a_gap_is_a_dead_letter_that_holds_only_its_aggregate() -> None:
    apply_partitions("monolith", 1, [brand(1, 1, 1)], {0: 1})
    result: Any = apply_partitions("monolith", 1, [brand(1, 3, 2), brand(2, 1, 3)], {0: 3})
    assert (result.applied, result.dead_letters, result.position) == (1, 1, 3)
    assert DeadLetter.objects.get().aggregate_id == "1"
    assert Brand.objects.filter(pk=2).exists()
