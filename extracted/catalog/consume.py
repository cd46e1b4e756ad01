"""The catalog's side of the AMQP transport: one broker message, one apply transaction."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import connection

from extracted.catalog.apply import apply_partition
from extracted.sync import PartitionBatch


def apply_message(batch: PartitionBatch) -> Mapping[str, int]:
    """Apply one partition's batch; a broken database connection is dropped for the next.

    Django reconnects on the next query once the broken connection is closed; without
    this a consumer whose database restarted would fail every message until restarted.
    """
    try:
        return apply_partition(batch.stream, batch.partition, batch.partitions, batch.events,
                               batch.position).to_json()
    except Exception:
        connection.close()
        raise
