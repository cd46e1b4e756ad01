"""The catalog service's internal endpoints, as the backfill and reconcile call them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from extracted.sync.errors import DeliveryFailed


class ServiceInternals:
    """``/internal/snapshot/``, ``/internal/checksums/``, ``/internal/rows/``, positions."""

    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
        )

    def snapshot(self, aggregate_type: str, rows: Sequence[dict[str, Any]],
                 key_range: tuple[int, int | None] | None = None,
                 deleted: Sequence[dict[str, Any]] = ()) -> dict[str, int]:
        """Upsert backfilled rows, drop deleted ones; ``{"copied", "skipped", "deleted"}``.

        ``key_range`` (inclusive, ``None`` = open end) is the key range the rows cover:
        the service drops its rows there that the producer never had.
        """
        body: dict[str, Any] = {"aggregate_type": aggregate_type, "rows": list(rows),
                                "deleted": list(deleted)}
        if key_range is not None:
            body["range"] = list(key_range)
        data: dict[str, int] = self._call("POST", "/internal/snapshot/", json=body)
        return data

    def set_position(self, stream: str, position: int) -> int:
        """Move a stream's position forward (never back) to ``position``."""
        data = self._call("POST", "/internal/events/",
                          json={"stream": stream, "position": position, "events": []})
        return int(data["position"])

    def position(self, stream: str) -> dict[str, Any]:
        """The stream's position and processed-event count."""
        data: dict[str, Any] = self._call("GET", "/internal/events/", params={"stream": stream})
        return data

    def checksums(self, aggregate_type: str, range_size: int) -> dict[str, Any]:
        """Per-range counts and digests of one aggregate type."""
        params = {"aggregate_type": aggregate_type, "range_size": range_size}
        data: dict[str, Any] = self._call("GET", "/internal/checksums/", params=params)
        return data

    def rows(self, aggregate_type: str, start: int, end: int) -> dict[str, Any]:
        """Per-row digests and fields of keys in ``[start, end)``."""
        params = {"aggregate_type": aggregate_type, "start": start, "end": end}
        data: dict[str, Any] = self._call("GET", "/internal/rows/", params=params)
        return data

    def versions(self, types: list[str] | None = None) -> dict[str, Any]:
        """Every aggregate's last applied sequence (of ``types``, when given)."""
        params = {"aggregate_type": types} if types else None
        data: dict[str, Any] = self._call("GET", "/internal/versions/", params=params)
        return data

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(
                f"catalog service at {self.base_url} unreachable ({exc}); start it with "
                "`strangler catalog serve` or fix --service-url"
            ) from None
        if answer.status_code == 403:
            raise DeliveryFailed(f"{self.base_url}{path}: 403, the sync token is wrong "
                                 "(--token / CATALOG_SYNC_TOKEN must match the service's)")
        if answer.status_code != 200:
            raise DeliveryFailed(f"{self.base_url}{path} answered {answer.status_code}: "
                                 f"{answer.text[:300]}")
        try:
            return answer.json()
        except ValueError:
            raise DeliveryFailed(f"{self.base_url}{path} answered 200 but not JSON; is "
                                 "--service-url the catalog service?") from None

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
