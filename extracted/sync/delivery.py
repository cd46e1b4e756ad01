"""Delivering event batches to a consumer's apply endpoint over HTTP.

The endpoint protocol (both the catalog service's ``/internal/events/`` and the monolith's
read-copy consumer speak it): ``GET ?stream=S`` returns ``{"position": N}``, where the relay
resumes; ``POST {"stream", "position", "events": [...]}`` applies a batch atomically and
returns ``{"applied", "duplicates", "stale", "position"}``; 409 means an aggregate's sequence
has a gap; ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from extracted.sync.errors import DeliveryFailed, SequenceGap
from extracted.sync.events import OutboxEvent


@dataclass(frozen=True)
class BatchResult:
    """What the consumer did with one batch."""

    applied: int
    duplicates: int
    stale: int
    position: int
    dead_letters: int = 0


class EventsEndpoint:
    """The consumer's apply endpoint, with one pooled HTTP client."""

    def __init__(self, url: str, token: str, stream: str, timeout: float = 10.0) -> None:
        self.url, self.stream = url, stream
        self._client = httpx.Client(
            timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def position(self) -> int:
        """Where the consumer says this stream is."""
        data = self._call("GET", params={"stream": self.stream})
        return int(data.get("position", 0))

    def deliver(self, events: Sequence[OutboxEvent], position: int) -> BatchResult:
        """POST one batch; raises ``DeliveryFailed`` (retryable) or ``SequenceGap``."""
        body = {"stream": self.stream, "position": position,
                "events": [e.to_json() for e in events]}
        data = self._call("POST", json=body)
        return BatchResult(int(data["applied"]), int(data["duplicates"]), int(data["stale"]),
                           int(data["position"]), int(data.get("dead_letters", 0)))

    @property
    def dead_letters_url(self) -> str:
        """The consumer's dead-letter endpoint, next to its events endpoint."""
        base = self.url.rstrip("/")
        return base.rsplit("/", 1)[0] + "/dead-letters/"

    def dead_letters(self, status: str = "open") -> list[dict[str, Any]] | None:
        """The consumer's dead letters; None when it keeps none (no such endpoint)."""
        try:
            answer = self._client.get(self.dead_letters_url, params={"status": status})
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{self.dead_letters_url} unreachable: {exc}") from None
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise DeliveryFailed(f"{self.dead_letters_url} answered {answer.status_code}: "
                                 f"{_detail(answer)}")
        letters: list[dict[str, Any]] = answer.json()["dead_letters"]
        return letters

    def act_on_dead_letters(self, action: str, ids: Sequence[int], actor: str
                            ) -> dict[str, Any]:
        """Retry or skip dead letters at the consumer (it audits the action)."""
        try:
            answer = self._client.post(self.dead_letters_url,
                                       json={"action": action, "ids": list(ids), "actor": actor})
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{self.dead_letters_url} unreachable: {exc}") from None
        if answer.status_code != 200:
            raise DeliveryFailed(f"{self.dead_letters_url} answered {answer.status_code}: "
                                 f"{_detail(answer)}")
        data: dict[str, Any] = answer.json()
        return data

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer = self._client.request(method, self.url, **kwargs)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{self.url} unreachable: {exc.__class__.__name__}: {exc}"
                                 ) from None
        if answer.status_code == 409:
            raise SequenceGap(f"{self.url}: {_detail(answer)}")
        if answer.status_code == 403:
            raise DeliveryFailed(f"{self.url} answered 403: the sync token is wrong (--token / "
                                 "CATALOG_SYNC_TOKEN must match the service's)")
        if answer.status_code != 200:
            raise DeliveryFailed(f"{self.url} answered {answer.status_code}: {_detail(answer)}")
        try:
            data: dict[str, Any] = answer.json()
        except ValueError:
            raise DeliveryFailed(f"{self.url} answered 200 but not JSON; is --target the "
                                 "service's /internal/events/ endpoint?") from None
        return data

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail", answer.text[:200]))
    except ValueError:
        return answer.text[:200]
