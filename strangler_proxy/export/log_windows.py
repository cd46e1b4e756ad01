"""Rollout windows from an exported engine's JSON access log, for routes nginx serves.

With ``[export] engine = "nginx"`` the clients talk to nginx, not to this proxy: the proxy's
own counters see none of the route's traffic, so a rollout would wait for ever. nginx writes
one JSON object per request to ``runtime_dir/access.log`` (``export/logs.py`` reads that
format); :class:`LogWindows` follows the file as ``tail -f`` does (each call reads only the
bytes added since the last one, starting over when the file shrinks: rotated or truncated)
and answers the same :class:`~strangler_proxy.live_evidence.Window` the proxy's counters
give, so the checks do not know where the evidence came from.

Known gaps: nginx buffers the log (``buffer=64k flush=1s``), so the newest second may be
missing; on a route with ``fallback = true`` a service failure nginx covered with the
monolith (its backup server, ``proxy_next_upstream``) is logged with the monolith's status
on the service side, so it counts as a success, not as a service error (the proxy's own
counters do count it); a request's time is when nginx logged it, to the
second (``$time_iso8601``). HAProxy logs to its standard output and Envoy is not a flip
engine: only nginx is read here.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from strangler_proxy.config import MONOLITH, ProxyConfig
from strangler_proxy.export.logs import parse_engine_line
from strangler_proxy.live_evidence import RING_SECONDS, SideCounts, Window
from strangler_proxy.metrics import LATENCY_BUCKETS

READ_LIMIT = 8 << 20  # bytes read per call at most: a huge backlog is caught up over ticks


def engine_log_path(config: ProxyConfig) -> Path | None:
    """Where the exported nginx writes its access log, or None when no nginx serves.

    ``runtime_dir/access.log``, resolved as ``export/apply.py`` does: relative paths are
    relative to the routes file, and the runtime directory defaults to ``output``'s.
    """
    settings = config.export
    if settings.engine != "nginx" or not settings.output:
        return None
    base = Path(config.source).parent
    output = Path(settings.output) if Path(settings.output).is_absolute() \
        else base / settings.output
    runtime = output.parent if not settings.runtime_dir else (
        Path(settings.runtime_dir) if Path(settings.runtime_dir).is_absolute()
        else base / settings.runtime_dir)
    return runtime / "access.log"


_FIELDS = 6 + len(LATENCY_BUCKETS) + 1  # requests, errors, 4 status classes, latency bins


@dataclass
class LogWindows:
    """An access log's requests, counted per route, side and second, read incrementally.

    Counts, not records: an hour of any rate is ``3600 x routes x 2`` small arrays. nginx
    logs to the second, so a window starts at the first whole second after its start (a
    second that may hold the step before is left out, never mixed in).
    """

    path: Path
    keep_seconds: float = RING_SECONDS
    offset: int = 0
    partial: bytes = b""
    seconds: dict[tuple[str, str], dict[int, list[int]]] = field(default_factory=dict)
    skipped: int = 0  # lines that were not records
    newest: int = 0

    def read_new(self) -> int:
        """Read what the engine appended since the last call; the number of records added."""
        try:
            with self.path.open("rb") as handle:
                size = handle.seek(0, 2)
                if size < self.offset:  # rotated or truncated: start over with the new file
                    self.offset, self.partial = 0, b""
                handle.seek(self.offset)
                data = handle.read(READ_LIMIT)
        except OSError:
            return 0  # not written yet (nginx creates it on its first request)
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # an unfinished line waits for the rest of it
        added = 0
        for line in lines:
            if self._count(line):
                added += 1
            else:
                self.skipped += bool(line.strip())
        self._forget()
        return added

    def _count(self, line: bytes) -> bool:
        record = parse_engine_line(line.decode("utf-8", "replace"))
        if record is None:
            return False
        try:
            second = int(datetime.fromisoformat(record.time).timestamp())
        except ValueError:
            return False
        side = MONOLITH if record.side == MONOLITH else "service"
        acc = self.seconds.setdefault((record.route, side), {}).get(second)
        if acc is None:
            acc = self.seconds[(record.route, side)][second] = [0] * _FIELDS
        status = record.status
        acc[0] += 1
        acc[1] += status >= 500 or status == 0
        acc[2 + min(3, max(0, status // 100 - 2))] += 1
        acc[6 + bisect_left(LATENCY_BUCKETS, record.latency_ms / 1000)] += 1
        self.newest = max(self.newest, second)
        return True

    def _forget(self) -> None:
        oldest = self.newest - self.keep_seconds
        for per_second in self.seconds.values():
            for second in [s for s in per_second if s < oldest]:
                del per_second[second]

    def between(self, route: str, start: float, end: float) -> Window:
        """What ``route`` saw from ``start`` to ``end`` (Unix seconds), by side."""
        first = math.ceil(start)
        return Window(route, max(0.0, end - start),
                      self._side(route, MONOLITH, first, end),
                      self._side(route, "service", first, end))

    def _side(self, route: str, side: str, first: int, end: float) -> SideCounts:
        total = [0] * _FIELDS
        for second, acc in self.seconds.get((route, side), {}).items():
            if first <= second <= end:
                for index, n in enumerate(acc):
                    total[index] += n
        return SideCounts(total[0], total[1], (total[2], total[3], total[4], total[5]),
                          tuple(total[6:]))


__all__ = ["LogWindows", "engine_log_path"]
