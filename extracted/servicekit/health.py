"""``/healthz`` (the process answers) and ``/readyz`` (database reachable, migrated)."""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Always 200 while the process serves requests."""
    return JsonResponse({"status": "ok", "service": settings.SERVICE_CONTEXT})


def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and has no unapplied migrations, else 503 with why."""
    service = settings.SERVICE_CONTEXT
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return JsonResponse({"status": "unavailable", "reason": f"database: {exc}"}, status=503)
    if pending:
        reason = f"{len(pending)} migration(s) not applied: run `strangler {service} migrate`"
        return JsonResponse({"status": "unavailable", "reason": reason}, status=503)
    return JsonResponse({"status": "ready", "service": service})
