"""The relay's endpoints on the monolith: ``/internal/catalog-events/`` (the catalog
service's outbox) and ``/internal/saga-events/`` (the ordering service's outbox: the saga's
requests and its ordering rows, the reverse stream of ``strangler cutover ordering``)."""

from __future__ import annotations

import os
from typing import Any

from django.db import IntegrityError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from legacy_monolith.outbox.consumer import apply_catalog_events, position_of
from legacy_monolith.outbox.participants import apply_saga_events


class HasSyncToken(BasePermission):
    """``Authorization: Bearer $CATALOG_SYNC_TOKEN`` (the demo token by default)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        token = os.environ.get("CATALOG_SYNC_TOKEN", "strangler-demo-sync-token")
        return request.headers.get("Authorization", "") == f"Bearer {token}"


class CatalogEventsView(APIView):
    """GET ``?stream=`` → position; POST a batch → counts (the relay protocol)."""

    apply = staticmethod(apply_catalog_events)

    authentication_classes: list[Any] = []
    permission_classes = [HasSyncToken]
    schema = None  # internal: not part of the shop's public API (nor of /api/schema/)

    def get(self, request: Request) -> Response:
        stream = str(request.query_params.get("stream", "catalog"))
        return Response({"stream": stream, "position": position_of(stream)})

    def post(self, request: Request) -> Response:
        body = request.data
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(events, list):
            return Response({"detail": 'body: expected {"stream", "position", "events"}'},
                            status=400)
        try:
            result = self.apply(str(body.get("stream", "catalog")), events,
                                int(body.get("position", 0)))
        except (KeyError, TypeError, ValueError, IntegrityError) as exc:
            return Response({"detail": f"bad event: {exc!r}"}, status=400)
        return Response(result)


class SagaEventsView(CatalogEventsView):
    """The same protocol for the ordering service's outbox (``participants``)."""

    apply = staticmethod(apply_saga_events)
