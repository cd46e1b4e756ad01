"""The catalog's side of the AMQP transport: the messages received together, one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db import connection

from extracted.servicekit.apply import apply_partitions
from extracted.sync import PartitionBatch


def apply_messages(batches: Sequence[PartitionBatch]) -> Mapping[str, int]:
    """Apply the partitions' batches received together; a broken connection is dropped.

    Django reconnects on the next query once the broken connection is closed; without
    this a consumer whose database restarted would fail every message until restarted.
    """
    positions: dict[int, int] = {}
    for batch in batches:
        positions[batch.partition] = max(positions.get(batch.partition, 0), batch.position)
    try:
        return apply_partitions(batches[0].stream, batches[0].partitions,
                                [e for b in batches for e in b.events], positions).to_json()
    except Exception:
        connection.close()
        raise
