"""The Django side of the shadow marker: a shadow write is answered, then rolled back.

The proxy copies live traffic to a service in shadow mode, each copy marked with
``X-Strangler-Shadow: 1`` (ARCHITECTURE.md, contract 7). The monolith and every extracted
service install :class:`ShadowRollbackMiddleware`, so such a copy cannot change data: a write
(any method but the safe ones) runs in one transaction that is always rolled back, so
validation, status codes and bodies are real but nothing is stored, outbox rows included (the
outbox is written in the same transaction, so shadow traffic publishes no events). The answer
carries ``X-Strangler-Shadow-Rolled-Back: 1``. Known wart: side effects outside the database
(none in this repo today) would still happen.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.http import HttpRequest, HttpResponse

from strangler_proxy import ROLLED_BACK_HEADER, SHADOW_HEADER

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1: no rollback


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
            # render inside the transaction: a lazy DRF response may still query
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            transaction.set_rollback(True)
        response[ROLLED_BACK_HEADER] = "1"
        return response


__all__ = ["SAFE_METHODS", "ShadowRollbackMiddleware", "is_shadow_write"]
