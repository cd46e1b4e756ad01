"""The shadow marker: a write carrying a signed ``X-Strangler-Shadow`` is answered, then undone.

The proxy copies live traffic to a service in shadow mode; services in this repo must not
let that copy change data. Here the whole request runs in one transaction that is always
rolled back, so validation, status codes and bodies are real but nothing is stored.
Known wart: side effects outside the database (none in this shop today) would still happen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from strangler_proxy import check_marker, secret_from

log = logging.getLogger("strangler.shadow_marker")

SHADOW_HEADER = "X-Strangler-Shadow"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def is_shadow_write(request: HttpRequest) -> bool:
    """True for an unsafe method carrying a valid signed shadow marker (see
    ``strangler_proxy.shadow_marker``); an unsigned, forged or stale marker is logged and
    ignored, so the write is a normal one."""
    value = request.headers.get(SHADOW_HEADER)
    if value is None or request.method in SAFE_METHODS:
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
        if not is_shadow_write(request):
            return self.get_response(request)
        with transaction.atomic():
            response = self.get_response(request)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            transaction.set_rollback(True)
        response[f"{SHADOW_HEADER}-Rolled-Back"] = "1"
        return response
