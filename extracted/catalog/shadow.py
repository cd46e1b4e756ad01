"""``X-Strangler-Shadow: 1``: a write is validated and answered, then rolled back.

The proxy copies live traffic to the service in shadow mode. Such a request runs in one
transaction that is always rolled back, so nothing changes — including the outbox rows the
write would have added, which is why shadow traffic publishes no events: the outbox is
written in the same transaction, there is no other side effect to suppress.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.http import HttpRequest, HttpResponse

SHADOW_HEADER = "X-Strangler-Shadow"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class ShadowRollbackMiddleware:
    """Roll back every database change made while answering a shadow write."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in SAFE_METHODS or request.headers.get(SHADOW_HEADER) != "1":
            return self.get_response(request)
        with transaction.atomic():
            response = self.get_response(request)
            transaction.set_rollback(True)
        return response
