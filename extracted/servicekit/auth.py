"""Who is calling: token callers checked without reading the users table (every service).

The monolith's clients send ``Authorization: Token <key>``. The service accepts the same
header and decides who it is from, in order: ``SERVICE_STAFF_TOKENS`` (service-local keys),
then the monolith's ``GET /api/me/`` with the caller's token when ``SERVICE_AUTH_URL`` names
the monolith (an API call to the customers context, cached for ``AUTH_CACHE_SECONDS``).
A key the monolith rejects is "Invalid token." (401), exactly as the monolith answers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

AUTH_CACHE_SECONDS = 30.0
_cache: dict[str, tuple[float, CallerIdentity | None]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class CallerIdentity:
    """An authenticated caller: enough of a user for DRF's permission checks."""

    username: str
    is_staff: bool
    id: int | None = None
    is_authenticated: bool = True
    is_active: bool = True


class BearerTokenAuthentication(BaseAuthentication):
    """``Authorization: Token <key>``, like DRF's TokenAuthentication in the monolith."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[CallerIdentity, str] | None:
        """Return the caller for a valid key, None without a header, 401 for a bad key."""
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid token header. No credentials provided."
                if len(parts) == 1 else "Invalid token header. Token string should not "
                "contain spaces."
            )
        key = parts[1].decode(errors="replace")
        caller = identify(key)
        if caller is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return caller, key

    def authenticate_header(self, request: Request) -> str:
        """Makes DRF answer 401 (not 403) when credentials are missing."""
        return self.keyword


def identify(key: str) -> CallerIdentity | None:
    """The caller behind ``key``, or None when nobody knows the key."""
    if key in settings.SERVICE_STAFF_TOKENS:
        return CallerIdentity(username=f"{settings.SERVICE_CONTEXT}-staff", is_staff=True)
    if not settings.SERVICE_AUTH_URL:
        return None
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < AUTH_CACHE_SECONDS:
        return hit[1]
    caller = _ask_monolith(key)
    with _lock:
        _cache[key] = (now, caller)
    return caller


def _ask_monolith(key: str) -> CallerIdentity | None:
    url = settings.SERVICE_AUTH_URL.rstrip("/") + "/api/me/"
    try:
        answer = httpx.get(url, headers={"Authorization": f"Token {key}"}, timeout=3.0)
    except httpx.HTTPError as exc:
        raise exceptions.AuthenticationFailed(f"Cannot check the token: {exc}") from None
    if answer.status_code != 200:
        return None
    data: dict[str, Any] = answer.json()
    user_id = data.get("id")
    return CallerIdentity(username=str(data.get("username", "")),
                          is_staff=bool(data.get("is_staff", False)),
                          id=user_id if isinstance(user_id, int) else None)
