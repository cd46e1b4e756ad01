"""The shadow marker: proof that a request is the proxy's shadow copy, not a client's.

A service rolls back every write that carries the marker, so a marker a client could send
would let anyone silently undo real writes. The proxy therefore strips every ``X-Strangler-*``
header a client sends (``headers.py``) and signs the marker on its own copies::

    X-Strangler-Shadow: v1;t=1733400000;sig=3f9a...   (HMAC-SHA256, hex)

over the method, the path as the service will see it (percent-decoded, as Django's
``request.path``) and the Unix time, with the secret from the routes file
(``shadow.marker_secret`` / ``marker_secret_env``) that the services are given too (setting or
environment ``STRANGLER_SHADOW_SECRET``). A service accepts a marker only when the signature
matches and the time is within ``skew`` seconds of its clock; anything else (no secret,
the old unsigned ``1``, a stale or forged marker) is ignored and logged, and the request is
served as a normal one. Known wart: a captured marker can be replayed for the same method
and path within the skew window; the copy goes service-side only, never through the proxy.

Pure functions, no Django and no I/O: the middlewares call :func:`check_marker`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote

from strangler_proxy.headers import SHADOW_HEADER

MARKER_HEADER: Final = SHADOW_HEADER  # said once, in headers.py
SECRET_ENV: Final = "STRANGLER_SHADOW_SECRET"
DEFAULT_SKEW: Final = 30.0
VERSION: Final = "v1"


def _digest(secret: str, method: str, path: str, stamp: int) -> str:
    message = f"{VERSION}\n{method.upper()}\n{unquote(path)}\n{stamp}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_marker(secret: str, method: str, path: str, now: float | None = None) -> str:
    """The marker value for a copy of ``method path`` sent at ``now`` (Unix seconds).

    >>> sign_marker("s", "POST", "/api/cart/", now=100)[:8]
    'v1;t=100'
    """
    stamp = int(time.time() if now is None else now)
    return f"{VERSION};t={stamp};sig={_digest(secret, method, path, stamp)}"


def check_marker(value: str | None, secret: str | None, method: str, path: str,
                 now: float | None = None, skew: float = DEFAULT_SKEW) -> str:
    """Why a marker is not valid, or ``""`` when it is (then the request is a shadow copy).

    >>> good = sign_marker("s", "POST", "/a/", now=100)
    >>> check_marker(good, "s", "POST", "/a/", now=110)
    ''
    >>> check_marker(good, "s", "POST", "/b/", now=110)
    'bad signature'
    >>> check_marker(good, "s", "POST", "/a/", now=200)
    'stale: 100 s from this clock (skew 30 s)'
    >>> check_marker("1", "s", "POST", "/a/")
    'unsigned or malformed'
    """
    if not value:
        return "absent"
    if not secret:
        return "no secret configured (set STRANGLER_SHADOW_SECRET)"
    fields = dict(part.partition("=")[::2] for part in value.split(";")[1:])
    if not value.startswith(VERSION + ";") or not fields.get("t", "").isdigit() \
            or "sig" not in fields:
        return "unsigned or malformed"
    stamp = int(fields["t"])
    if not hmac.compare_digest(fields["sig"], _digest(secret, method, path, stamp)):
        return "bad signature"
    drift = abs((time.time() if now is None else now) - stamp)
    if drift > skew:
        return f"stale: {drift:.0f} s from this clock (skew {skew:.0f} s)"
    return ""


def secret_from(settings_value: str | None, environ: Mapping[str, str]) -> str | None:
    """The service's secret: its setting if set, else ``STRANGLER_SHADOW_SECRET``."""
    return settings_value or environ.get(SECRET_ENV) or None


__all__ = ["DEFAULT_SKEW", "MARKER_HEADER", "SECRET_ENV", "check_marker", "secret_from",
           "sign_marker"]
