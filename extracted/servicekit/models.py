"""The bookkeeping that keeps a service in step, as abstract models each service subclasses.

Each service has its own tables (``catalog_aggregateversion``, ``ordering_aggregateversion``)
in its own database; each service's ``models.py`` declares its concrete classes with one call,
``declare_bookkeeping(globals())``, and the code that uses them (``apply``, ``digests``,
``internal``) finds them with ``concrete``. Field for field what the catalog had before
the move, so no migration of the catalog changed.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models
from django.utils import timezone


def concrete(abstract: Any) -> Any:
    """This service's subclass of a bookkeeping model (same class name, its own app).

    Typed ``Any``: the app is only known at run time (``SERVICE_CONTEXT``), and mypy's
    Django plugin has no managers on an abstract class to check the queries against.
    """
    return apps.get_model(settings.SERVICE_CONTEXT, abstract.__name__)


class AggregateVersion(models.Model):
    """The last applied sequence of one aggregate; outlives the row (a tombstone on delete).

    An event or a backfilled row whose sequence is not above this one is stale and skipped,
    which is what lets a backfill and the event stream overlap without a double apply.
    """

    aggregate_type = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=64)
    sequence = models.BigIntegerField()
    deleted = models.BooleanField(default=False)

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_type", "aggregate_id"],
                name="%(app_label)s_aggregate_version_key",
            )
        ]


class ProcessedEvent(models.Model):
    """One row per event id ever received: the at-most-once guard (unique ``event_id``)."""

    event_id = models.CharField(max_length=64, unique=True)
    stream = models.CharField(max_length=64)
    position = models.BigIntegerField()
    aggregate_type = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=64)
    sequence = models.BigIntegerField()
    outcome = models.CharField(max_length=16)  # "applied", "stale", "ignored", ...
    processed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class StreamPosition(models.Model):
    """How far the relay of one stream has delivered (its low-water mark), saved atomically
    with the events it covers."""

    stream = models.CharField(max_length=64, unique=True)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class OutboxEvent(models.Model):
    """The service's own transactional outbox (contract 5), written by API writes.

    After cutover the service owns its context; the relay reads this table and feeds the
    monolith's read-only copy. Events applied *from* the monolith are never republished.
    """

    event_id = models.CharField(max_length=64, unique=True)
    aggregate_type = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=64)
    sequence = models.BigIntegerField()
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    occurred_at = models.DateTimeField(default=timezone.now)
    # format 3: the request that wrote it (strangler.shadow_changes reads it before a rollback)
    request_id = models.CharField(max_length=64, blank=True, default="", db_default="",
                                  db_index=True)

    class Meta:
        abstract = True
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_type", "aggregate_id", "sequence"],
                name="%(app_label)s_outbox_aggregate_sequence",
            )
        ]


class DeadLetter(models.Model):
    """An event the service could not apply, with why; its aggregate waits, no other.

    ``status``: ``open`` (the aggregate is held: later events of it are parked here too,
    in order), ``retried`` (applied by a retry), ``skipped`` (given up, audited),
    ``superseded`` (a repair event carried a newer full state).
    """

    stream = models.CharField(max_length=64)
    position = models.BigIntegerField()
    event_id = models.CharField(max_length=64)
    aggregate_type = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=64)
    sequence = models.BigIntegerField(default=0)
    event = models.JSONField()
    reason = models.TextField()
    status = models.CharField(max_length=16, default="open", db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["id"]


class SyncAudit(models.Model):
    """Who did what to the sync by hand (dead-letter retries and skips, ownership flips)."""

    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=100)
    action = models.CharField(max_length=64)
    detail = models.JSONField(default=dict)

    class Meta:
        abstract = True
        ordering = ["id"]


class ContextOwnership(models.Model):
    """Which side writes a context's tables now: ``monolith`` or ``service`` (contract 6).

    While the monolith owns them the service only follows (events from the monolith apply);
    after cutover the service owns them and refuses the monolith's events for them.
    """

    context = models.CharField(max_length=64, unique=True)
    owner = models.CharField(max_length=16, default="monolith")
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


BOOKKEEPING = (AggregateVersion, ProcessedEvent, StreamPosition, OutboxEvent, DeadLetter,
               SyncAudit, ContextOwnership)


def declare_bookkeeping(namespace: dict[str, Any]) -> None:
    """Declares a service app's concrete bookkeeping models in its models module.

    Call it as ``declare_bookkeeping(globals())`` in ``extracted/<service>/models.py``: each
    abstract model above gets a subclass of the same name in that module (so in that app,
    with the abstract model's fields, ``Meta`` and table name ``<app>_<model>``), exactly as
    a hand-written ``class OutboxEvent(kit.OutboxEvent): ...`` per model would, without every
    service repeating the seven declarations.
    """
    module = namespace["__name__"]
    for abstract in BOOKKEEPING:
        name = abstract.__name__
        summary = (abstract.__doc__ or name).strip().splitlines()[0]
        namespace[name] = type(name, (abstract,), {"__module__": module, "__qualname__": name,
                                                   "__doc__": summary})
