"""A write the database refused because its table is fenced answers 503, saying why.

``strangler cutover`` fences the tables of a context on the side that no longer owns them
(``extracted/sync/fence.py`` installs the triggers): after a cutover the monolith's copy,
after ``--undo`` the service's. Any write there is refused by the database itself; this
middleware, installed by the monolith and by every extracted service, turns that refusal
into ``503 {"detail", "code": "fenced"}`` instead of a bare 500.
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
