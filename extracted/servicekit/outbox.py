"""The service's own outbox: one event per row a write through its API changed.

After cutover the service owns its context, and these events are how the rest of the world
(the monolith's read-only copy) hears about changes. Every changed row gets an event with
the next sequence of its aggregate; the sequence continues the one the service followed
while the monolith owned the data (``AggregateVersion``), so a consumer sees one unbroken
history across the cutover.
"""

from __future__ import annotations

import uuid

from django.db import connection, models

from extracted.servicekit.apply import service_context
from extracted.servicekit.models import AggregateVersion, OutboxEvent, concrete
from extracted.sync import TableSpec, normalize_row
from strangler.shadow_changes import current_request_id


def _spec_of(instance: models.Model) -> TableSpec:
    name = type(instance).__name__
    for spec in service_context().tables:
        if spec.model == name:
            return spec
    raise LookupError(f"{name} is not one of the {service_context().name} context's tables")


def publish(instance: models.Model, event_type: str, payload: dict[str, object] | None = None
            ) -> OutboxEvent:
    """Write the outbox event for one changed row (call inside the change's transaction)."""
    spec = _spec_of(instance)
    key = str(instance.pk)
    version = _locked_version(spec.aggregate_type, key)
    sequence = (version.sequence if version else 0) + 1
    if payload is None:
        payload = normalize_row(spec, {f: getattr(instance, f) for f in spec.field_names})
    if version is None:
        concrete(AggregateVersion).objects.create(
            aggregate_type=spec.aggregate_type, aggregate_id=key, sequence=sequence,
            deleted=event_type == "deleted")
    else:
        version.sequence, version.deleted = sequence, event_type == "deleted"
        version.save(update_fields=["sequence", "deleted"])
    event: OutboxEvent = concrete(OutboxEvent).objects.create(
        event_id=str(uuid.uuid4()), aggregate_type=spec.aggregate_type, aggregate_id=key,
        sequence=sequence, event_type=event_type, payload=payload,
        request_id=current_request_id(),
    )
    return event


def publish_event(aggregate_type: str, key: str, event_type: str, payload: dict[str, object]
                  ) -> OutboxEvent:
    """Write an event that is no row of the context (a saga's request), in the caller's
    transaction, with the next sequence of its aggregate."""
    version = _locked_version(aggregate_type, key)
    sequence = (version.sequence if version else 0) + 1
    if version is None:
        concrete(AggregateVersion).objects.create(aggregate_type=aggregate_type,
                                                  aggregate_id=key, sequence=sequence)
    else:
        version.sequence = sequence
        version.save(update_fields=["sequence"])
    event: OutboxEvent = concrete(OutboxEvent).objects.create(
        event_id=str(uuid.uuid4()), aggregate_type=aggregate_type, aggregate_id=key,
        sequence=sequence, event_type=event_type, payload=payload,
        request_id=current_request_id())
    return event


def _locked_version(aggregate_type: str, key: str) -> AggregateVersion | None:
    query = concrete(AggregateVersion).objects.filter(aggregate_type=aggregate_type,
                                                      aggregate_id=key)
    if connection.features.has_select_for_update:
        query = query.select_for_update()
    version: AggregateVersion | None = query.first()
    return version
