"""The URLs every service mounts next to its API: health and the internal sync endpoints."""

from __future__ import annotations

from django.urls import URLPattern, path

from extracted.servicekit import health, internal


def service_urls() -> list[URLPattern]:
    """``/healthz``, ``/readyz`` and ``/internal/...`` (see ``internal``)."""
    return [
        path("healthz", health.healthz, name="healthz"),
        path("readyz", health.readyz, name="readyz"),
        path("internal/events/", internal.EventsView.as_view(), name="internal-events"),
        path("internal/snapshot/", internal.SnapshotView.as_view(), name="internal-snapshot"),
        path("internal/checksums/", internal.ChecksumsView.as_view(),
             name="internal-checksums"),
        path("internal/rows/", internal.RowsView.as_view(), name="internal-rows"),
        path("internal/versions/", internal.VersionsView.as_view(), name="internal-versions"),
        path("internal/dead-letters/", internal.DeadLettersView.as_view(),
             name="internal-dead-letters"),
        path("internal/ownership/", internal.OwnershipView.as_view(),
             name="internal-ownership"),
    ]
