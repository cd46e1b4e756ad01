"""A write the database refused because the table is fenced answers 503, saying why.

While the monolith owns the catalog (after ``strangler cutover --undo``) the service's
tables are fenced: its database refuses API writes (``extracted/sync/fence.py``); only the
event consumer writes them. Without this, such a write would be a bare 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse


class FenceRefusalMiddleware:
    """Turn the fence's refusal into ``503 {"detail", "code": "fenced"}``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        if isinstance(exception, DatabaseError) and "is fenced" in str(exception):
            detail = " ".join(str(exception).split()).split(" CONTEXT:")[0]
            return JsonResponse({"detail": detail, "code": "fenced"}, status=503)
        return None
