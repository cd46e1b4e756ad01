"""The shadow header: a write carrying ``X-Strangler-Shadow: 1`` is answered, then undone.

The proxy copies live traffic to a service in shadow mode; services in this repo must not
let that copy change data. Here the whole request runs in one transaction that is always
rolled back, so validation, status codes and bodies are real but nothing is stored.
Known wart: side effects outside the database (none in this shop today) would still happen.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.http import HttpRequest, HttpResponse

SHADOW_HEADER = "X-Strangler-Shadow"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def is_shadow_write(request: HttpRequest) -> bool:
    """True for an unsafe method carrying the shadow header set to 1."""
    return request.headers.get(SHADOW_HEADER) == "1" and request.method not in SAFE_METHODS


class ShadowRollbackMiddleware:
    """Roll back every database change of a shadow write; the response is still sent."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_shadow_write(request):
            return self.get_response(request)
        with transaction.atomic():
            response = self.get_response(request)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            transaction.set_rollback(True)
        response[f"{SHADOW_HEADER}-Rolled-Back"] = "1"
        return response
