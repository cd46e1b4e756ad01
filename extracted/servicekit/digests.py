"""A service's side of reconcile: normalised rows, digests and per-range summaries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.db.models import FloatField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from extracted.servicekit.apply import spec_for
from extracted.sync import TableSpec, normalize_row, row_digest, summarize

CHUNK = 2000


def _digests(spec: TableSpec, start: int | None = None, end: int | None = None
             ) -> Iterator[tuple[int, str, dict[str, Any]]]:
    query = _rows_of(spec)
    if start is not None:
        query = query.filter(pk__gte=start, pk__lt=end)
    names = ("pk", *spec.field_names)
    for values in query.values_list(*names).iterator(chunk_size=CHUNK):
        fields = normalize_row(spec, dict(zip(spec.field_names, values[1:], strict=True)))
        yield int(values[0]), row_digest(int(values[0]), fields), fields


def _rows_of(spec: TableSpec) -> QuerySet[Any]:
    """The rows of one aggregate type; a derived fact has a row for every ``keyed_by`` row.

    A product nobody has sent a stock or rating fact for shows ``in_stock: false`` and
    ``rating: null``, exactly like a product without stock levels or reviews in the monolith,
    so reconcile compares the value the API shows, not whether a signals row exists.
    """
    model = apps.get_model(spec.app_label, spec.model)
    if not spec.derived:
        rows: QuerySet[Any] = model._base_manager.order_by("pk")
        return rows
    keyed_by = apps.get_model(spec.app_label, spec.keyed_by)
    signals = model._base_manager.filter(pk=OuterRef("pk"))
    name = spec.fields[0]
    default = Value(None, output_field=FloatField()) if name.nullable else Value(
        {"bool": False}.get(name.kind, 0))
    value = Coalesce(Subquery(signals.values(name.name)[:1]), default)
    facts: QuerySet[Any] = keyed_by._base_manager.order_by("pk").annotate(**{name.name: value})
    return facts


def checksums(aggregate_type: str, range_size: int) -> dict[str, Any]:
    """``{"count", "ranges": [{"start", "count", "digest"}]}`` for one aggregate type."""
    spec = spec_for(aggregate_type)
    summary = summarize(((k, d) for k, d, _ in _digests(spec)), range_size)
    return {
        "aggregate_type": aggregate_type,
        "count": sum(r.count for r in summary.values()),
        "ranges": [{"start": r.start, "count": r.count, "digest": r.digest}
                   for r in summary.values()],
    }


def rows(aggregate_type: str, start: int, end: int) -> dict[str, Any]:
    """``{"rows": {key: {"digest", "fields"}}}`` for keys in ``[start, end)``."""
    spec = spec_for(aggregate_type)
    return {
        "aggregate_type": aggregate_type,
        "rows": {str(k): {"digest": d, "fields": f} for k, d, f in _digests(spec, start, end)},
    }
