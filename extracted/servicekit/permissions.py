"""Who may call: the catalog's rule (anyone reads, staff write) and the sync token."""

from __future__ import annotations

import hmac
from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


class IsStaffOrReadOnly(BasePermission):
    """Reads are public; writes need an authenticated staff caller."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        user = request.user
        return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False))


class HasSyncToken(BasePermission):
    """The internal endpoints (relay, backfill, reconcile) need ``SERVICE_SYNC_TOKEN``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        from django.conf import settings

        header = request.headers.get("Authorization", "")
        expected = f"Bearer {settings.SERVICE_SYNC_TOKEN}"
        # constant time: the token must not leak one character at a time through timing
        return bool(settings.SERVICE_SYNC_TOKEN) and hmac.compare_digest(
            header.encode(), expected.encode())
