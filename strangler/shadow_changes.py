"""What a shadow write would have changed, told to the proxy before it is rolled back.

A shadowed write is answered and then undone (``shadow_rollback``), so comparing responses
alone would miss a service that answers right but writes wrong. While the rollback's
transaction is still open, :func:`capturing` collects what the request wrote:

* **events**: the rows of every installed outbox model (a model named ``OutboxEvent`` with a
  ``request_id`` column: contract 5, format 3) that carry this request's id;
* **rows**: each model row saved or deleted through the ORM (``post_save`` /
  ``post_delete``), as ``{"model", "pk", "action"}``. Known wart: ``QuerySet.update`` and raw
  SQL send no signal, so they appear only through the events they publish.

:func:`changes_header` puts them in ``X-Strangler-Shadow-Changes`` (compact JSON, ASCII, at
most :data:`MAX_HEADER_BYTES`; past that, whole entries are dropped from the end and
``"truncated": true`` is set with the full counts). The proxy reads the header, compares the
events with the monolith's outbox events of the same request id
(``strangler_proxy.shadow.changes``) and never passes the header on.

The request id is the ``X-Request-ID`` the proxy sends to both sides; :func:`request_scope`
makes it :func:`current_request_id` for the outbox writers (the monolith's
``outbox.publish``, a service's ``actions.publish``) and one is made up when it is missing.

A shadowed write's calls to other contexts must roll back too: :func:`shadow_headers` gives
the headers to forward (a marker signed for the *outgoing* method and path, and the request
id), and :func:`httpx_event_hooks` adds them to every request of an ``httpx.Client``.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse

from strangler_proxy import SHADOW_HEADER, secret_from, sign_marker

CHANGES_HEADER = "X-Strangler-Shadow-Changes"
REQUEST_ID_HEADER = "X-Request-ID"
MAX_HEADER_BYTES = 32 * 1024  # proxies and servers commonly refuse header blocks past 32-64 KB
MAX_REQUEST_ID = 64  # the outbox column's width
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,64}")

_REQUEST_ID: ContextVar[str] = ContextVar("strangler_request_id", default="")
_SHADOW: ContextVar[bool] = ContextVar("strangler_shadow_write", default=False)
_CAPTURE: ContextVar[Changes | None] = ContextVar("strangler_shadow_capture", default=None)


@dataclass
class Changes:
    """What one shadow write did before its rollback."""

    request_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def current_request_id() -> str:
    """The id of the request being served (``X-Request-ID``), or "" outside a request."""
    return _REQUEST_ID.get()


def in_shadow_write() -> bool:
    """True while a signed shadow write is being served (its changes will be undone)."""
    return _SHADOW.get()


@contextmanager
def request_scope(request: HttpRequest, shadow: bool = False) -> Iterator[str]:
    """Make the request's ``X-Request-ID`` (or a new id) current while the block runs."""
    given = request.headers.get(REQUEST_ID_HEADER) or ""
    request_id = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
    id_token, shadow_token = _REQUEST_ID.set(request_id), _SHADOW.set(shadow)
    try:
        yield request_id
    finally:
        _REQUEST_ID.reset(id_token)
        _SHADOW.reset(shadow_token)


@contextmanager
def capturing(request_id: str) -> Iterator[Changes]:
    """Collect the rows saved and deleted while the block runs (this context only); call
    :func:`collect_events` before leaving the transaction."""
    _connect_once()
    changes = Changes(request_id)
    token = _CAPTURE.set(changes)
    try:
        yield changes
    finally:
        _CAPTURE.reset(token)


def collect_events(changes: Changes) -> None:
    """Add the outbox events this request wrote (inside its still-open transaction)."""
    for model in outbox_models():
        rows = model._base_manager.filter(request_id=changes.request_id).order_by("pk")
        changes.events += [_event(row) for row in rows]


@cache  # the app registry does not change once Django is set up
def outbox_models() -> tuple[type[models.Model], ...]:
    """Every installed outbox model: named ``OutboxEvent``, with a ``request_id`` column."""
    return tuple(model for model in apps.get_models() if model.__name__ == "OutboxEvent"
                 and "request_id" in {f.name for f in model._meta.concrete_fields})


def _event(row: Any) -> dict[str, Any]:
    return {"aggregate_type": row.aggregate_type, "aggregate_id": str(row.aggregate_id),
            "sequence": row.sequence, "type": row.event_type, "payload": row.payload}


def changes_header(changes: Changes, limit: int = MAX_HEADER_BYTES) -> str:
    """The header value: compact ASCII JSON of at most ``limit`` bytes.

    >>> small = Changes("r1", [{"type": "created"}], [{"model": "a.B", "pk": "1"}])
    >>> changes_header(small)
    '{"v":1,"request_id":"r1","events":[{"type":"created"}],"rows":[{"model":"a.B","pk":"1"}]}'
    >>> big = Changes("r1", [{"payload": "x" * 100}] * 5)
    >>> cut = json.loads(changes_header(big, limit=300))
    >>> cut["truncated"], cut["events_total"], len(cut["events"])
    (True, 5, 2)
    """
    data: dict[str, Any] = {"v": 1, "request_id": changes.request_id,
                            "events": changes.events, "rows": changes.rows}
    if changes.note:
        data["note"] = changes.note
    text = _dumps(data)
    if len(text) <= limit:
        return text
    data.update(truncated=True, events_total=len(changes.events),
                rows_total=len(changes.rows))
    events, rows = list(changes.events), list(changes.rows)
    while len(text) > limit and (events or rows):
        # rows go first: the proxy compares events; rows are for the reader of a diff
        (rows if rows else events).pop()
        data.update(events=events, rows=rows)
        text = _dumps(data)
    return text


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)


def attach(response: HttpResponse, changes: Changes) -> None:
    """Collect the events and put the changes on the response (call before the rollback).

    A transaction already broken by a database error cannot be read, and would have written
    nothing: it is reported as no changes, with a ``note`` saying why.
    """
    if transaction.get_connection().needs_rollback:
        changes.events, changes.rows = [], []
        changes.note = "the transaction failed: nothing would have been written"
    else:
        collect_events(changes)
    response[CHANGES_HEADER] = changes_header(changes)


_connected: list[bool] = []


def _connect_once() -> None:
    if not _connected:
        post_save.connect(_saved, weak=False, dispatch_uid="strangler.shadow_changes.saved")
        post_delete.connect(_deleted, weak=False,
                            dispatch_uid="strangler.shadow_changes.deleted")
        _connected.append(True)


def _saved(sender: type[models.Model], instance: models.Model, created: bool = False,
           **kwargs: Any) -> None:
    _note(sender, instance, "created" if created else "updated")


def _deleted(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    _note(sender, instance, "deleted")


def _note(sender: type[models.Model], instance: models.Model, action: str) -> None:
    changes = _CAPTURE.get()
    if changes is not None and sender.__name__ != "OutboxEvent":
        changes.rows.append({"model": sender._meta.label, "pk": str(instance.pk),
                             "action": action})


# -- a shadow write's calls to other contexts ---------------------------------------------------


def shadow_headers(method: str, url: str) -> dict[str, str]:
    """Headers that make an outgoing call part of the current shadow write, or ``{}``.

    Inside a signed shadow write, the call gets its own signed marker (the marker is signed
    over the method and path it is sent with, so the one received cannot be forwarded) and
    the request id, so the other context rolls back its changes too and reports them under
    the same id. Outside one, nothing: the call is a normal one.
    """
    headers: dict[str, str] = {}
    if current_request_id():
        headers[REQUEST_ID_HEADER] = current_request_id()
    if not in_shadow_write():
        return headers
    secret = secret_from(getattr(settings, "STRANGLER_SHADOW_SECRET", None), os.environ)
    if secret:
        headers[SHADOW_HEADER] = sign_marker(secret, method, urlsplit(url).path or "/")
    return headers


def httpx_event_hooks() -> dict[str, list[Callable[[Any], None]]]:
    """``event_hooks`` for an ``httpx.Client`` whose calls forward the shadow marker.

    >>> sorted(httpx_event_hooks())
    ['request']
    """
    def forward(request: Any) -> None:
        for name, value in shadow_headers(request.method, str(request.url)).items():
            request.headers[name] = value

    return {"request": [forward]}


__all__ = ["CHANGES_HEADER", "MAX_HEADER_BYTES", "REQUEST_ID_HEADER", "Changes", "attach",
           "capturing", "changes_header", "collect_events", "current_request_id",
           "httpx_event_hooks", "in_shadow_write", "outbox_models", "request_scope",
           "shadow_headers"]
