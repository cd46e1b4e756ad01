"""Route matching and the per-request side decision: pure functions over the config.

A :class:`RouteTable` is compiled once per config load and swapped atomically on reload. For
each request it answers one question, :meth:`RouteTable.decide`: which route matched, and
which upstream serves the client. Canary routes pick a side from a sticky bucket::

    bucket = blake2b(salt + "\\0" + key) mod 10000        # salt: the route's group or name
    side   = "service" if bucket < percent * 100 else "monolith"

so one key always lands on one side, raising the percent only moves keys from the monolith
to the service (the buckets below the old threshold stay below the new one), and routes of
one group agree because they share the salt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from strangler_proxy.config import DEFAULT_ROUTE_NAME, MONOLITH, SERVICE, ProxyConfig, Route
from strangler_proxy.match import (
    Match,
    literal_prefix,
    match_regex,
)

BUCKETS: Final = 10_000
BUCKET_CACHE: Final = 65_536  # remembered (salt, key) -> bucket pairs per route table
MATCH_CACHE: Final = 16_384  # remembered (method, path) -> route pairs per route table
CACHED_KEY_CHARS: Final = 256  # longer paths / sticky keys are not cached: bounds the memory
DEFAULT_ROUTE = Route(name=DEFAULT_ROUTE_NAME, match=Match(path_prefix="/"))


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one request goes: the route, the upstream serving the client, and extras."""

    route: Route
    upstream: str  # name of the upstream whose answer the client gets
    side: str  # "monolith" or "service"
    shadow: bool = False  # offer the exchange to the shadow sink afterwards
    fallback: bool = False  # on connect failure or 5xx the monolith may answer instead
    reason: str = "mode"  # "mode" | "bucket" | "override"
    header: bytes = b""  # X-Strangler-Route value, filled in by the route table

    @property
    def header_value(self) -> str:
        """The ``X-Strangler-Route`` value: ``NAME;target=UPSTREAM``."""
        return f"{self.route.name};target={self.upstream}"

    @property
    def header_bytes(self) -> bytes:
        """:attr:`header_value` as bytes (precomputed: decisions are built once per table)."""
        return self.header or self.header_value.encode()


def bucket(salt: str, key: str) -> int:
    """The sticky bucket (0..9999) of ``key`` under ``salt``.

    >>> bucket("catalog", "user-1") == bucket("catalog", "user-1")
    True
    >>> 0 <= bucket("catalog", "user-1") < 10000
    True
    """
    digest = hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def canary_side(percent: float, salt: str, key: str) -> str:
    """``"service"`` when the key's bucket falls under ``percent``, else ``"monolith"``.

    >>> canary_side(0, "s", "k"), canary_side(100, "s", "k")
    ('monolith', 'service')
    """
    return SERVICE if bucket(salt, key) < round(percent * BUCKETS / 100) else MONOLITH


def cookie_value(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, or None.

    >>> cookie_value("a=1; sessionid=xyz", "sessionid")
    'xyz'
    """
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


class _CompiledRoute:
    """A route with its filters and fixed decisions prepared for the hot path."""

    __slots__ = ("route", "methods", "headers", "decisions", "sticky_kind", "sticky_name",
                 "threshold", "path_regex", "salt")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.methods = route.match.methods
        self.path_regex = re.compile(match_regex(route.match))
        self.salt = route.salt
        self.headers = tuple((k.encode("latin-1"), v) for k, v in route.match.headers.items())
        kind, _, name = route.sticky.partition(":")
        self.sticky_kind = kind
        self.sticky_name = name.lower().encode("latin-1") if kind == "header" else name
        self.threshold = round(route.percent * BUCKETS / 100)
        monolith = Decision(route, MONOLITH, MONOLITH)
        service = Decision(route, route.target, SERVICE, fallback=route.fallback)
        decisions = {
            "monolith": monolith,
            "service": service,
            "shadow": Decision(route, MONOLITH, MONOLITH, shadow=route.target != MONOLITH),
            "canary-monolith": Decision(route, MONOLITH, MONOLITH, reason="bucket"),
            "canary-service": Decision(route, route.target, SERVICE, fallback=route.fallback,
                                       reason="bucket"),
            "override-monolith": Decision(route, MONOLITH, MONOLITH, reason="override"),
            "override-service": Decision(route, route.target, SERVICE, fallback=route.fallback,
                                         reason="override"),
        }
        self.decisions = {key: replace(d, header=d.header_value.encode())
                          for key, d in decisions.items()}

    def accepts(self, method: str, headers: Mapping[bytes, bytes]) -> bool:
        if self.methods and method not in self.methods:
            return False
        for name, value in self.headers:
            got = headers.get(name)
            if got is None or got.decode("latin-1") != value:
                return False
        return True

    def sticky_key(self, headers: Mapping[bytes, bytes], client_ip: str) -> str:
        # Without the configured key (no header, no cookie) the client address decides, so
        # anonymous users are still sticky per address.
        if self.sticky_kind == "header":
            value = headers.get(self.sticky_name)  # type: ignore[arg-type]
            if value:
                return value.decode("latin-1")
        elif self.sticky_kind == "cookie":
            raw = headers.get(b"cookie")
            found = cookie_value(raw.decode("latin-1"), str(self.sticky_name)) if raw else None
            if found:
                return found
        return client_ip


def _key_end(path: str) -> int:
    """Where the first two path segments end: ``/api/products/1/`` -> 14 (``/api/products/``).

    Returns 0 when the path has fewer than two complete segments (no key).
    """
    first = path.find("/", 1)
    if first < 0:
        return 0
    second = path.find("/", first + 1)
    return second + 1 if second >= 0 else 0


def _dispatch(routes: tuple[Route, ...]) -> tuple[re.Pattern[str], dict[str, re.Pattern[str]]]:
    """One ordered alternation per two-segment key, plus one for the routes without a key.

    A route whose literal prefix spans two full segments (``/api/products/...``) can only match
    paths with that key, so a request tries only its key's routes and the keyless ones, in
    file order: a 50-route table costs about what a 1-route table costs.
    """
    keyed: dict[str, list[int]] = {}
    generic: list[int] = []
    for index, route in enumerate(routes):
        literal = literal_prefix(route.match)
        end = _key_end(literal)
        if end:
            keyed.setdefault(literal[:end], []).append(index)
        else:
            generic.append(index)

    def compile_alternation(indexes: list[int]) -> re.Pattern[str]:
        return re.compile("|".join(f"(?P<r{i}>{match_regex(routes[i].match)})"
                                   for i in sorted(indexes)))

    return compile_alternation(generic), {key: compile_alternation(indexes + generic)
                                          for key, indexes in keyed.items()}


class RouteTable:
    """The compiled, immutable route table of one config version."""

    def __init__(self, config: ProxyConfig, version: int = 1,
                 override_secret: str | None = None) -> None:
        self.config = config
        self.version = version
        self.routes = (*config.routes, DEFAULT_ROUTE)
        self._compiled = [_CompiledRoute(r) for r in self.routes]
        self._generic, self._by_key = _dispatch(self.routes)
        self._secret = override_secret
        self._override_header = config.canary.override_header.lower().encode("latin-1")
        self._override_cookie = config.canary.override_cookie
        self.route_header = config.proxy.route_header
        self._buckets: dict[tuple[str, str], int] = {}
        # Without header filters a route depends on method and path only: remember the
        # answers (bounded), as paths repeat far more often than they are new.
        self._matches: dict[tuple[str, str], _CompiledRoute] | None = \
            None if any(c.headers for c in self._compiled) else {}

    def match(self, method: str, path: str, headers: Mapping[bytes, bytes]) -> _CompiledRoute:
        """The first route whose path, methods and headers all match (the default at worst)."""
        regex = self._by_key.get(path[:_key_end(path)], self._generic)
        found = regex.match(path)
        if found is None or found.lastgroup is None:  # e.g. "OPTIONS *"
            return self._compiled[-1]
        start = int(found.lastgroup[1:])
        first = self._compiled[start]
        if first.accepts(method, headers):
            return first
        # The regex gave the first path match; a method or header filter refused it, so look
        # further down in order (rare: most routes have no filters).
        for compiled in self._compiled[start + 1:]:
            if compiled.path_regex.match(path) and compiled.accepts(method, headers):
                return compiled
        return self._compiled[-1]

    def decide(self, method: str, path: str, headers: Mapping[bytes, bytes],
               client_ip: str) -> Decision:
        """Route the request and pick the side that serves it.

        ``headers`` maps lower-cased header names to values (bytes, as on the wire).
        """
        matches = self._matches
        found_route = None if matches is None else matches.get((method, path))
        if found_route is not None:
            compiled = found_route
        else:
            compiled = self.match(method, path, headers)
            if matches is not None and len(path) <= CACHED_KEY_CHARS:
                if len(matches) >= MATCH_CACHE:
                    matches.clear()  # crude but bounded, like the bucket cache
                matches[(method, path)] = compiled
        decisions = compiled.decisions
        if self._secret is not None:
            forced = self._override(headers)
            if forced is not None:
                return decisions[f"override-{forced}"]
        mode = compiled.route.mode
        if mode == "canary":
            key = compiled.sticky_key(headers, client_ip)
            cache = self._buckets
            cache_key = (compiled.salt, key)
            found = cache.get(cache_key)
            if found is None:
                found = bucket(compiled.salt, key)
                if len(key) <= CACHED_KEY_CHARS:
                    if len(cache) >= BUCKET_CACHE:
                        cache.clear()  # crude but bounded; users repeat, so it refills fast
                    cache[cache_key] = found
            inside = found < compiled.threshold
            decision = decisions["canary-service" if inside else "canary-monolith"]
        else:
            decision = decisions[mode]
        return decision

    def _override(self, headers: Mapping[bytes, bytes]) -> str | None:
        raw = headers.get(self._override_header)
        value = raw.decode("latin-1") if raw else None
        if value is None and self._override_cookie:
            cookies = headers.get(b"cookie")
            value = cookie_value(cookies.decode("latin-1"), self._override_cookie) \
                if cookies else None
        if not value:
            return None
        side, _, secret = value.partition(":")
        if side not in (MONOLITH, SERVICE) or self._secret is None:
            return None
        if not hmac.compare_digest(secret.encode(), self._secret.encode()):
            return None
        return side


# -- static checks ------------------------------------------------------------------------------


__all__ = ["BUCKETS", "DEFAULT_ROUTE", "Decision", "RouteTable", "bucket", "canary_side",
           "cookie_value"]
