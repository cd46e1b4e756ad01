"""Outbox rows (contract 5), per-aggregate sequence counters, and the consumer's tables."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """One change of one aggregate, written in the transaction of the change.

    The columns are contract 5 of ARCHITECTURE.md; ``id`` is the stream position the relay
    follows. Rows are never updated; prune delivered ones with care (see docs/reliability.md).
    """

    event_id = models.CharField(max_length=64, unique=True)
    aggregate_type = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=64)
    sequence = models.BigIntegerField()
    event_type = models.CharField(max_length=16)
    payload = models.JSONField()
    occurred_at = models.DateTimeField(default=timezone.now)
    # format 3: the X-Request-ID of the request that wrote it ("" outside a request); the
    # shadow comparison finds a request's events by it, hence the index
    request_id = models.CharField(max_length=64, blank=True, default="", db_default="",
                                  db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["aggregate_type", "aggregate_id", "sequence"],
                                    name="outbox_aggregate_sequence_unique")
        ]


class AggregateSequence(models.Model):
    """The last sequence given to an aggregate; its row lock orders concurrent changes."""

    aggregate_type = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=64)
    last = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["aggregate_type", "aggregate_id"],
                                    name="outbox_aggregate_sequence_key")
        ]


# --- after cutover: the monolith consumes the catalog service's events ---------------------


class CatalogProductCopy(models.Model):
    """Read-only copy of what ordering needs from the catalog: name and price of a product.

    Fed by the catalog service's events through ``strangler relay`` once the service owns
    the catalog; never written by the monolith's own code.
    """

    product_id = models.BigIntegerField(primary_key=True)
    sku = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
    is_active = models.BooleanField(default=True)
    sequence = models.BigIntegerField(default=0)


class ConsumedEvent(models.Model):
    """One row per consumed event id: at most once."""

    event_id = models.CharField(max_length=64, unique=True)
    stream = models.CharField(max_length=64)
    position = models.BigIntegerField()
    consumed_at = models.DateTimeField(default=timezone.now)


class ConsumerPosition(models.Model):
    """How far the relay has delivered one stream to the monolith."""

    stream = models.CharField(max_length=64, unique=True)
    position = models.BigIntegerField(default=0)
