"""The Django side of the shadow marker: a shadow write is answered, then rolled back.

The proxy copies live traffic to a service in shadow mode, each copy marked with a signed
``X-Strangler-Shadow`` marker (ARCHITECTURE.md, contract 7; ``strangler_proxy.shadow_marker``).
Only a marker whose HMAC checks out against the shared secret (the Django setting or the
environment variable ``STRANGLER_SHADOW_SECRET``) and whose time is within
``STRANGLER_SHADOW_SKEW`` seconds (default 30) counts: an unsigned, forged or stale marker is
logged and ignored, and the request is served as a normal one, so no client can have its
writes silently undone. The monolith and every extracted service install
:class:`ShadowRollbackMiddleware`, so such a copy cannot change data: it runs in one
transaction that is always rolled back, so validation, status codes and bodies are real but
nothing is stored, outbox rows included (the outbox is written in the same transaction, so
shadow traffic publishes no events). Safe methods too: a GET should write nothing, but the
shop's ``GET /api/cart/`` creates the cart on the first look, in the monolith and in the
ordering service alike, and a committed copy of it made the service allocate a cart of its
own beside the monolith's (same id, two rows) while the monolith still owned ordering. The answer
carries ``X-Strangler-Shadow-Rolled-Back: 1`` and, in ``X-Strangler-Shadow-Changes``, the
rows and outbox events the write made before they were undone (``shadow_changes``), for the
proxy to compare with the monolith's. Every request, shadow or not, runs with its
``X-Request-ID`` as the id the outbox writers stamp on their events (contract 5, format 3).
Known wart: side effects outside the database (none in this repo today) would still happen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from strangler.shadow_changes import attach, capturing, request_scope
from strangler_proxy import ROLLED_BACK_HEADER, SHADOW_HEADER, check_marker, secret_from

log = logging.getLogger("strangler.shadow_marker")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1


def is_shadow_write(request: HttpRequest) -> bool:
    """True for a request carrying a valid signed shadow marker, whatever its method (see
    ``strangler_proxy.shadow_marker``; a safe method that writes is rolled back too); an
    unsigned, forged or stale marker is logged and ignored, so the request is a normal one."""
    value = request.headers.get(SHADOW_HEADER)
    if value is None:
        return False
    secret = secret_from(getattr(settings, "STRANGLER_SHADOW_SECRET", None), os.environ)
    why = check_marker(value, secret, request.method or "", request.path,
                       skew=getattr(settings, "STRANGLER_SHADOW_SKEW", 30.0))
    if why:
        log.warning("ignored %s on %s %s: %s", SHADOW_HEADER, request.method, request.path, why)
    return not why


class ShadowRollbackMiddleware:
    """Roll back every database change of a shadow write; the response is still sent."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        shadow = is_shadow_write(request)
        with request_scope(request, shadow) as request_id:
            if not shadow:
                return self.get_response(request)
            with transaction.atomic(), capturing(request_id) as changes:
                response = self.get_response(request)
                # render inside the transaction: a lazy DRF response may still query
                if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                    response.render()
                attach(response, changes)  # what the rollback below undoes
                transaction.set_rollback(True)
        response[ROLLED_BACK_HEADER] = "1"
        return response


__all__ = ["SAFE_METHODS", "ShadowRollbackMiddleware", "is_shadow_write"]
