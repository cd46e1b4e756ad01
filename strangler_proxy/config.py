"""The routes file (``strangler.toml``): schema, defaults and validation, with no I/O but reading.

Every table of the file is a frozen dataclass; :func:`parse_config` turns TOML text into a
:class:`ProxyConfig` or raises :class:`~strangler_proxy.errors.ConfigError` with one line that
names the key, the offending value, the line and the fix, e.g.::

    routes[2].percent: 150 is not between 0 and 100 (in strangler.toml, line 31)

Unknown keys are errors. Each key is declared once, as a field of its table's dataclass with
its documentation (``keys.py``); :data:`SCHEMA`, which the parser checks against, and the key
tables of ``docs/config.md`` follow from them (a test keeps the doc in step).
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import tomlkit

from strangler_proxy.errors import ConfigError
from strangler_proxy.keys import key_doc, key_table, keys_of
from strangler_proxy.match import Match, unreachable_routes
from strangler_proxy.rollout_plan import TABLES as ROLLOUT_TABLES
from strangler_proxy.rollout_plan import RolloutPlan, parse_rollout
from strangler_proxy.toml_check import check_toml

MODES = ("monolith", "shadow", "canary", "service")
MONOLITH = "monolith"
SERVICE = "service"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                          "CONNECT"})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """``[proxy]``: the client-facing listener and its limits."""

    listen: str = field(default="127.0.0.1:8080", metadata=key_doc(
        "where clients connect",
        kind='`"HOST:PORT"`'))
    workers: int = field(default=1, metadata=key_doc(
        "worker processes sharing the port with SO_REUSEPORT (`--workers` overrides)",
        kind="int 1..256"))
    trusted_proxies: tuple[IPNetwork, ...] = field(default=(), metadata=key_doc(
        "peers whose `X-Forwarded-*`/`Forwarded`/`X-Real-IP` are trusted and extended; from "
        "anyone else they are dropped and replaced",
        kind="list of CIDRs"))
    route_header: bool = field(default=True, metadata=key_doc(
        "add `X-Strangler-Route: NAME;target=UPSTREAM` to responses (`;fallback=WHY` when the "
        "monolith stepped in)",
        kind="bool"))
    max_header_bytes: int = field(default=65536, metadata=key_doc(
        "request line + headers larger than this get `431`",
        kind="int"))
    max_body_bytes: int = field(default=0, metadata=key_doc(
        "larger request bodies get `413` (checked on `Content-Length` up front and while "
        "streaming chunked bodies); nginx: `client_max_body_size` (its default is 1 MiB)",
        kind="int",
        note=" (no limit); bodies past the memory cap are spooled to disk"))
    access_log: str = field(default="off", metadata=key_doc(
        "one JSON line per request on stderr",
        kind='`"off"` or `"json"`'))
    reload_interval: float = field(default=1.0, metadata=key_doc(
        "how often the file is checked for changes",
        kind="seconds",
        note="; `0` = do not poll"))
    # slow and hostile clients (each names the nginx directive it corresponds to)
    client_header_timeout: float = field(default=10.0, metadata=key_doc(
        "a request head (or the first request on a new connection) must arrive within this, "
        "else `408` and close. nginx: `client_header_timeout` (60 s)",
        kind="seconds"))
    client_body_min_rate: int = field(default=1024, metadata=key_doc(
        "a request body must arrive at this average rate after a grace of "
        "`client_header_timeout` (each KiB earns one more second), else `408` and close. "
        "nginx: `client_body_timeout` (60 s between two reads)",
        kind="bytes/s",
        note="; `0` = off"))
    keepalive_timeout: float = field(default=75.0, metadata=key_doc(
        "an idle keep-alive client connection is closed after this. nginx: "
        "`keepalive_timeout` (75 s)",
        kind="seconds"))
    max_client_connections: int = field(default=1024, metadata=key_doc(
        "past it a new connection is answered `503` and closed. nginx: `worker_connections` "
        "(512; nginx drops past it with no answer)",
        kind="int",
        note=" (per worker)"))
    max_connections_per_ip: int = field(default=0, metadata=key_doc(
        "past this many open connections from one client address, a new one from it is "
        "answered `503` and closed; the address is the TCP peer's, so leave it off behind a "
        "load balancer, where every connection comes from the balancer. nginx: `limit_conn` "
        "with `limit_conn_zone $binary_remote_addr`",
        kind="int",
        note=" (off; per worker)"))
    max_response_header_bytes: int = field(default=65536, metadata=key_doc(
        "an upstream response head larger than this is a `502`. nginx: `proxy_buffer_size` "
        '(4 or 8 KiB, "upstream sent too big header")',
        kind="int"))
    request_buffer_bytes: int = field(default=65536, metadata=key_doc(
        "a buffered request body (see `routes[].buffer_request`) is held in memory up to "
        "this, then spooled to a temporary file (in `$TMPDIR`). nginx: "
        "`client_body_buffer_size` (8/16 KiB) and `client_body_temp_path`",
        kind="int"))
    send_timeout: float = field(default=60.0, metadata=key_doc(
        "a client that accepts none of its answer for this long is closed (the answer is "
        "cut). nginx: `send_timeout` (60 s)",
        kind="seconds",
        note="; `0` = off"))
    max_response_spool_bytes: int = field(default=1024 ** 3, metadata=key_doc(
        "when a client reads its answer slower than the upstream sends it, the rest is "
        "spooled (past the socket's buffer, to a temporary file in `$TMPDIR`) so the upstream "
        "connection goes back to the pool at once; past this many bytes per client the "
        "upstream waits for the client instead. nginx: `proxy_buffering` with "
        "`proxy_max_temp_file_size` (1 GiB)",
        kind="int",
        note=" (1 GiB); `0` = never spool"))


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """``[admin]``: the admin listener; a token (literal or from an env variable) is required."""

    listen: str = field(default="127.0.0.1:8081", metadata=key_doc(
        "the admin listener; keep it on 127.0.0.1 or a private network",
        kind='`"HOST:PORT"`'))
    token: str | None = field(default=None, metadata=key_doc(
        "the bearer token (`Authorization: Bearer TOKEN`)",
        kind="string"))
    token_env: str | None = field(default=None, metadata=key_doc(
        "name of an environment variable holding the token (preferred over writing it in the "
        "file)",
        kind="string"))
    token_name: str = field(default="admin", metadata=key_doc(
        "who flips made through the admin API are attributed to in the audit log",
        kind="string"))
    report: str | None = field(default=None, metadata=key_doc(
        "an analysis `report.json` (relative to the routes file): the strangulation meter "
        "(`GET /meter`, the dashboard's `/dashboard/meter`, `strangler status`) shows its "
        "contexts, moved or not", kind="path"))

    def report_path(self, config_path: Path) -> Path | None:
        """``report`` resolved against the routes file's folder (None when unset)."""
        return config_path.parent / self.report if self.report else None

    def resolve_token(self, environ: Mapping[str, str]) -> str | None:
        """The bearer token: ``token`` if set, else the value of ``token_env`` in ``environ``."""
        if self.token:
            return self.token
        if self.token_env:
            return environ.get(self.token_env) or None
        return None


@dataclass(frozen=True, slots=True)
class Upstream:
    """``[upstreams.NAME]``: where a side lives and how patiently we talk to it."""

    name: str
    url: str = field(metadata=key_doc(
        "where the upstream listens; a path prefix is prepended to forwarded paths",
        kind='`"http(s)://HOST:PORT[/prefix]"`'))
    host: str = field(default="keep", metadata=key_doc(
        "forward the client's `Host`, or replace it with the upstream's `HOST:PORT`",
        kind='`"keep"` or `"rewrite"`'))
    connect_timeout: float = field(default=5.0, metadata=key_doc(
        "connecting longer answers `504` (a refused connection answers `502`)",
        kind="seconds"))
    read_timeout: float = field(default=30.0, metadata=key_doc(
        "the upstream silent for longer answers `504` (or cuts a started response)",
        kind="seconds"))
    total_timeout: float = field(default=300.0, metadata=key_doc(
        "a whole exchange longer than this answers `504`",
        kind="seconds"))
    max_connections: int = field(default=100, metadata=key_doc(
        "size of the keep-alive pool; further requests wait for a free connection",
        kind="int"))
    pool_timeout: float = field(default=5.0, metadata=key_doc(
        "longest wait for a free connection when `max_connections` are busy; then `504` (or "
        "the monolith, with `fallback`). nginx: no direct equivalent (`queue ... timeout=` in "
        "nginx Plus's `upstream`)",
        kind="seconds"))
    health_path: str | None = field(default=None, metadata=key_doc(
        "probed by the admin `GET /readyz` (one GET, 1 s); the proxy is unready while the "
        "monolith's probe fails",
        kind="string"))

    @property
    def scheme(self) -> str:
        """``http`` or ``https``."""
        return urlsplit(self.url).scheme

    @property
    def hostname(self) -> str:
        """The host part of the URL."""
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """The port, defaulted from the scheme."""
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def netloc(self) -> str:
        """``host:port`` as written in the URL (used for Host rewriting and Location)."""
        return urlsplit(self.url).netloc

    @property
    def base_path(self) -> str:
        """A path prefix from the URL (``""`` when the URL has none)."""
        return urlsplit(self.url).path.rstrip("/")


@dataclass(frozen=True, slots=True)
class CanarySettings:
    """``[canary]``: the tester override that forces a side, accepted only with the secret."""

    override_header: str = field(default="X-Strangler-Side", metadata=key_doc(
        "a tester sends `service:SECRET` or `monolith:SECRET` to force a side",
        kind="string"))
    override_cookie: str | None = field(default=None, metadata=key_doc(
        "the same override as a cookie",
        kind="string"))
    override_secret: str | None = field(default=None, metadata=key_doc(
        "the secret; without one overrides are ignored",
        kind="string"))
    override_secret_env: str | None = field(default=None, metadata=key_doc(
        "environment variable holding the secret",
        kind="string"))

    def resolve_secret(self, environ: Mapping[str, str]) -> str | None:
        """The override secret, literal or from the environment; None disables overrides."""
        if self.override_secret:
            return self.override_secret
        if self.override_secret_env:
            return environ.get(self.override_secret_env) or None
        return None


@dataclass(frozen=True, slots=True)
class GateSettings:
    """``[gate]``: evidence needed before a route may move to canary or service."""

    min_compared: int = field(default=200, metadata=key_doc(
        "shadow comparisons needed before a promotion",
        kind="int"))
    min_match_rate: float = field(default=0.99, metadata=key_doc(
        "share of those that must match",
        kind="0..1"))


@dataclass(frozen=True, slots=True)
class ShadowSettings:
    """``[shadow]``: the shadow copier, comparator and diff store (used by ``shadow.py``)."""

    store: str = field(default="strangler-diffs.sqlite3", metadata=key_doc(
        "the diff store",
        kind="path or `postgresql://` URL"))
    queue_size: int = field(default=1000, metadata=key_doc(
        "exchanges waiting to be copied; more are dropped (counted), never blocking",
        kind="int"))
    concurrency: int = field(default=4, metadata=key_doc(
        "copies in flight to the service",
        kind="int"))
    timeout: float = field(default=5.0, metadata=key_doc(
        "time the service gets to answer a copy",
        kind="seconds"))
    max_body_bytes: int = field(default=1024 * 1024, metadata=key_doc(
        "bytes of each body kept for comparison (`routes[].shadow.max_body_bytes` overrides it "
        "per route, for the proxy's copy, the service's answer and replay alike). A longer "
        "response is still hashed in full (SHA-256) on both sides as it streams: equal bodies "
        "match; unequal ones are a difference of kind `truncated` (\"differs beyond N bytes\", "
        "N the bytes kept), or `digest` when the kept bytes already differ. A request body "
        "longer than this is not copied (`skipped_body_too_large`)",
        kind="int"))
    retention_count: int = field(default=100_000,
        metadata=key_doc("diff records kept", kind="int"))
    retention_days: float = field(default=14.0, metadata=key_doc(
        "age of diff records kept",
        kind="days"))
    noise_percent: float = field(default=5.0, metadata=key_doc(
        "share of requests also sent twice to the monolith to learn which fields differ anyway",
        kind="0..100"))
    redact_headers: tuple[str, ...] = field(
        default=("authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"),
        metadata=key_doc("headers never stored", kind="list"))
    redact_fields: tuple[str, ...] = field(
        default=("password", "token", "secret", "access_token", "refresh_token"),
        metadata=key_doc("JSON fields never stored", kind="list"))
    # the worker is one thread, so 100 means no cap
    worker_cpu_percent: float = field(default=100.0, metadata=key_doc(
        "CPU the shadow worker may use, averaged; over it the worker pauses and copies wait in "
        "the proxy's buffer, then are dropped before copying (`dropped_queue_full`). 100 = no "
        "cap. Lower it when shadowing a busy route on a small machine "
        "([shadow.md](shadow.md#never-in-the-clients-way))",
        kind="percent of one core",
        note=" (1–100)"))
    # -- the standalone comparator (issue 16a; serve.py, remote.py) --
    comparator_url: str | None = field(default=None, metadata=key_doc(
        "the standalone comparator, `strangler shadow serve` "
        "([shadow.md](shadow.md#the-standalone-comparator)): where an exported engine "
        "(`strangler export`) mirrors the safe requests of shadow routes, and where our proxy "
        "sends its copies with `proxy_sends_to = \"comparator\"`. Without it, exporting a "
        "shadow route is refused",
        kind='`"http(s)://HOST:PORT"`'))
    comparator_baseline_url: str | None = field(default=None, metadata=key_doc(
        "the monolith instance the standalone comparator asks for baselines and noise "
        "repeats, instead of `upstreams.monolith`: an instance that serves no clients (as "
        "Diffy's primary and secondary), so that comparing adds no load to the one that does "
        "([shadow.md](shadow.md#the-standalone-comparator)). Same code and database as the "
        "monolith; its path prefix, timeouts and `Host` rule are the monolith's",
        kind='`"http(s)://HOST:PORT"`'))
    comparator_max_per_second: float = field(default=0.0, metadata=key_doc(
        "the most copies the standalone comparator takes a second (token bucket, one second "
        "of burst); past it, copies are counted `dropped_rate_limited` and its answers "
        "pace our proxy down to the same rate. Bounds the load comparing puts on the "
        "service, the baseline instance and the comparator's own host. 0 = no cap: it takes "
        "all it can compare",
        kind="copies per second"))
    proxy_sends_to: str = field(default="worker", metadata=key_doc(
        "where our proxy hands shadow copies: `worker` (its own worker process, same "
        "machine) or `comparator` (batched, signed with the marker secret, to "
        "`comparator_url`, which then needs a marker secret); read at start",
        kind='`"worker"` or `"comparator"`'))
    # the marker is made and checked by shadow_marker.py
    marker_secret: str | None = field(default=None, metadata=key_doc(
        "signs the `X-Strangler-Shadow` marker on every copy (HMAC-SHA256 over method, path "
        "and time); give the same secret to the services (`STRANGLER_SHADOW_SECRET` or the "
        "Django setting `STRANGLER_SHADOW_SECRET`) so that they roll back only signed copies. "
        "Without a secret copies carry an unsigned marker that services ignore, so shadow "
        "writes are **not** rolled back: set one before `routes[].shadow.writes = true`",
        kind="string"))
    marker_secret_env: str | None = field(default=None, metadata=key_doc(
        "environment variable holding the marker secret (preferred)",
        kind="string"))
    marker_skew: float = field(default=30.0, metadata=key_doc(
        "how far a marker's time may be from the service's clock",
        kind="seconds"))
    # read by shadow/changes.py: a shadowed write's events against the monolith's
    monolith_outbox: str | None = field(default=None, metadata=key_doc(
        "the monolith's database, whose outbox events (table `outbox_outboxevent`, contract "
        "5 format 3) are compared with the events a service rolled back for the same "
        "request id; differences are of kind `change` ([shadow.md](shadow.md#shadowed-writes)"
        "). Unset: shadowed writes compare answers only",
        kind="path or `postgresql://` URL"))
    changes_wait: float = field(default=1.0, metadata=key_doc(
        "how long to wait for the monolith's events of a shadowed write when the service "
        "wrote more events than the monolith's outbox shows yet",
        kind="seconds"))

    def resolve_marker_secret(self, environ: Mapping[str, str]) -> str | None:
        """The marker secret, literal or from the environment; None: copies are unsigned."""
        if self.marker_secret:
            return self.marker_secret
        if self.marker_secret_env:
            return environ.get(self.marker_secret_env) or None
        return None


EXPORT_ENGINES = ("nginx", "haproxy")  # the engines `strangler routes set` regenerates


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """``[export]``: the exported engine that flips regenerate, validate and reload."""

    engine: str | None = field(default=None, metadata=key_doc(
        "the engine flips drive", kind='`"nginx"` or `"haproxy"`'))
    output: str | None = field(default=None, metadata=key_doc(
        "the engine's config file (relative to the routes file); required with `engine`",
        kind="path"))
    listen: str | None = field(default=None, metadata=key_doc(
        "the engine's client listener; default: `proxy.listen`", kind='`"HOST:PORT"`'))
    runtime_dir: str | None = field(default=None, metadata=key_doc(
        "the engine's pid file, temp files and logs (`access.log` for nginx); default: "
        "`output`'s directory", kind="path"))
    binary: str | None = field(default=None, metadata=key_doc(
        "the engine's executable, used for the check; default: found on `PATH` or in "
        "`/usr/sbin`", kind="path"))
    reload_command: str | None = field(default=None, metadata=key_doc(
        "run instead of signalling the pid file (`nginx.pid`: `SIGHUP`; HAProxy's master "
        '`haproxy.pid`: `SIGUSR2`), e.g. `"systemctl reload nginx"`', kind="string"))


@dataclass(frozen=True, slots=True)
class ShadowRewrite:
    """``routes[].shadow.rewrite``: how the shadow copy differs from the client's request."""

    host: str | None = field(default=None, metadata=key_doc(
        "Host header for the copy", kind="string"))
    path_prefix: str | None = field(default=None, metadata=key_doc(
        "replaces the matched prefix in the copy's path", kind="string"))
    authorization: str | None = field(default=None, metadata=key_doc(
        "Authorization header for the copy", kind="string"))


@dataclass(frozen=True, slots=True)
class RouteShadow:
    """``routes[].shadow``: which requests are copied and how."""

    percent: float = field(default=100.0, metadata=key_doc(
        "share of requests copied", kind="0..100"))
    writes: bool = field(default=False, metadata=key_doc(
        "copy non-idempotent requests too (only when the service has its own isolated data)",
        kind="bool"))
    max_body_bytes: int | None = field(default=None, metadata=key_doc(
        "overrides `shadow.max_body_bytes` for this route (none: that one applies)",
        kind="int"))
    credentials: bool = field(default=True, metadata=key_doc(
        "pass the client's `Authorization` and `Cookie` on to the service copy; `false` sends "
        "the copy without them (then `rewrite.authorization` can give it its own)",
        kind="bool"))
    rewrite: ShadowRewrite = field(default_factory=ShadowRewrite, metadata=key_doc(
        "how the copy differs: `{ host, path_prefix, authorization }`", kind="inline table"))


@dataclass(frozen=True, slots=True)
class CompareRules:
    """``routes[].compare``: what the comparator ignores or treats as equal."""

    ignore: tuple[str, ...] = field(default=(), metadata=key_doc(
        'JSON paths whose differences do not count (`["served_at", "items[].etag"]`)'))
    headers: tuple[str, ...] = field(default=(), metadata=key_doc(
        "the response headers compared, replacing the default list `[\"content-type\", "
        "\"location\", \"cache-control\"]` (the status and the body are always compared). "
        "`Content-Type` is compared with parameters sorted and `charset=utf-8` dropped for "
        "JSON; `Location` by path and query only (the proxy rewrites its host)"))
    tolerance: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata=key_doc('`{ "price" = 0.01 }`: numbers equal within this'))
    unordered: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata=key_doc('`{ "items" = "id" }`: lists compared as sets keyed by this field'))
    formats: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata=key_doc('`{ "created" = "iso8601" }`, `"uuid"` or `"regex:..."`: values '
                         "equal when both have the format"))


@dataclass(frozen=True, slots=True)
class Route:
    """``[[routes]]``: a match, a mode and the upstream the service side lives on."""

    name: str = field(metadata=key_doc(
        "used by `strangler routes set NAME` and in metrics",
        kind="string",
        note=", unique"))
    match: Match = field(metadata=key_doc("what the route matches (below)", kind="inline table"))
    mode: str = field(default=MONOLITH, metadata=key_doc(
        "who answers",
        kind="`monolith`, `shadow`, `canary`, `service`"))
    target: str = field(default=MONOLITH, metadata=key_doc(
        "the service side of the route",
        kind="upstream name"))
    percent: float = field(default=0.0, metadata=key_doc(
        "canary: share of sticky keys sent to the service",
        kind="0..100"))
    sticky: str = field(default="client_ip", metadata=key_doc(
        "the canary key; without the header/cookie the client address is used",
        kind='`"header:NAME"`, `"cookie:NAME"` or `"client_ip"`'))
    group: str | None = field(default=None, metadata=key_doc(
        "routes with one group share the bucket salt, so a user is on one side for all of them",
        kind="string"))
    fallback: bool = field(default=False, metadata=key_doc(
        "service/canary: when the service is unreachable or answers 5xx, the monolith answers "
        "instead, only for idempotent requests or when no byte reached the service",
        kind="bool"))
    websocket: bool = field(default=False, metadata=key_doc(
        "pass `Upgrade: websocket` through on this route",
        kind="bool"))
    buffer_request: bool = field(default=True, metadata=key_doc(
        "hold a request body until it is complete (memory, then disk past "
        "`proxy.request_buffer_bytes`) before taking an upstream connection, so a slow upload "
        "cannot tie up the pool; `false` streams it as it arrives (for large or long uploads "
        "the service reads as they come). nginx: `proxy_request_buffering`",
        kind="bool"))
    shadow: RouteShadow = field(default_factory=RouteShadow, metadata=key_doc(
        "shadow copy settings (below)",
        kind="inline table"))
    compare: CompareRules = field(default_factory=CompareRules, metadata=key_doc(
        "comparison rules (below)",
        kind="inline table"))
    rollout: RolloutPlan | None = field(default=None, metadata=key_doc(
        "a guarded rollout plan, `[routes.rollout]` ([rollouts.md](rollouts.md))",
        kind="table"))
    line: int = 0  # where the route starts in the file (0: built in)

    @property
    def salt(self) -> str:
        """Routes of one group share a salt, so a user lands on one side across them."""
        return self.group or self.name

# -- [cluster]: several proxies sharing one flag state (control/cluster.py, issue 16) --------
CLUSTER_LOCAL_TABLES = ("proxy", "admin", "cluster")  # each replica's own; the rest is shared


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """``[cluster]``: replicas that share the routes through PostgreSQL (docs/scale-out.md)."""

    database: str | None = field(default=None, metadata=key_doc(
        "the PostgreSQL database every replica publishes each validated routes version and "
        "flip to (with its audit) and learns new ones from (LISTEN/NOTIFY, polled as a "
        "fallback); `database` or `database_env` turns clustering on",
        kind="`postgresql://` URL"))
    database_env: str | None = field(default=None, metadata=key_doc(
        "environment variable holding that URL (preferred: it may hold a password)",
        kind="string"))
    name: str = field(default="default", metadata=key_doc(
        "the cluster's name: replicas with the same name share routes, evidence and one "
        "rollout leader; several clusters may use one database",
        kind="string"))
    replica_id: str | None = field(default=None, metadata=key_doc(
        "how this replica is named in the versions, the evidence and `/status`",
        kind="string", note=" (`HOST-PID`)"))
    poll_interval: float = field(default=1.0, metadata=key_doc(
        "the poll that backs up LISTEN/NOTIFY; also how often the replica publishes its "
        "evidence and, when not leading, asks for the rollout leader's lock",
        kind="seconds", note=" (0.05–60)"))
    timeout: float = field(default=2.0, metadata=key_doc(
        "a database call slower than this counts as the database being away (the replica "
        "keeps serving its last good routes and reconnects)",
        kind="seconds"))

    def resolve_database(self, environ: Mapping[str, str]) -> str | None:
        """The database URL, literal or from the environment; None: not clustered."""
        if self.database:
            return self.database
        if self.database_env:
            return environ.get(self.database_env) or None
        return None

    @property
    def enabled(self) -> bool:
        """True when the table names a database (literally or through the environment)."""
        return bool(self.database or self.database_env)


def _parse_cluster(reader: _Reader, data: Any) -> ClusterSettings:
    path: tuple[str | int, ...] = ("cluster",)
    table = reader.table(data, path, "cluster")
    d = ClusterSettings()
    database = reader.text(table, path, "database", None)
    if database is not None and urlsplit(database).scheme not in ("postgresql", "postgres"):
        raise reader.error((*path, "database"), f"{database!r} is not a PostgreSQL URL, e.g. "
                           "\"postgresql://strangler@db:5432/strangler\"")
    settings = ClusterSettings(
        database=database,
        database_env=reader.text(table, path, "database_env", None),
        name=reader.text(table, path, "name", d.name),
        replica_id=reader.text(table, path, "replica_id", None),
        poll_interval=reader.number(table, path, "poll_interval", d.poll_interval, 0.05, 60),
        timeout=reader.number(table, path, "timeout", d.timeout, 0.1, 60),
    )
    if table and not settings.enabled:
        raise reader.error(path, "needs database = \"postgresql://...\" or database_env = "
                           "\"ENV_VAR\" (where the replicas share the routes)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", settings.name):
        raise reader.error((*path, "name"), f"{settings.name!r} must be 1-63 letters, digits, "
                           "'.', '_' or '-'")
    return settings



DEFAULT_ROUTE_NAME = "default"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A whole routes file, validated. ``routes`` excludes the built-in default route."""

    proxy: ProxySettings = field(metadata=key_doc("the client-facing listener and its limits"))
    admin: AdminSettings = field(
        metadata=key_doc("the admin listener (required: it needs a token)"))
    upstreams: Mapping[str, Upstream] = field(metadata=key_doc(
        "one table per upstream, `[upstreams.NAME]`; `monolith` is required"))
    canary: CanarySettings = field(default_factory=CanarySettings, metadata=key_doc(
        "the tester override that forces a side"))
    gate: GateSettings = field(default_factory=GateSettings, metadata=key_doc(
        "evidence needed before promoting a route to canary or service"))
    shadow: ShadowSettings = field(default_factory=ShadowSettings, metadata=key_doc(
        "the shadow copier, comparator and diff store"))
    export: ExportSettings = field(default_factory=ExportSettings, metadata=key_doc(
        "the exported engine (nginx or HAProxy) that flips regenerate and reload "
        "([scale-out.md](scale-out.md))"))
    cluster: ClusterSettings = field(default_factory=ClusterSettings, metadata=key_doc(
        "replicas sharing the routes, the evidence and one rollout leader through PostgreSQL "
        "([scale-out.md](scale-out.md#several-proxies-one-flag-state))"))
    routes: tuple[Route, ...] = field(default=(), metadata=key_doc(
        "the ordered route list, `[[routes]]`; the first match wins"))
    source: str = "strangler.toml"
    warnings: tuple[str, ...] = ()

    def route(self, name: str) -> Route | None:
        """The route called ``name``, or None."""
        return next((r for r in self.routes if r.name == name), None)


# The tables of the routes file and the dataclass declaring each one's keys (keys.py). The
# parser accepts exactly these keys; "routes[]" is each [[routes]] entry.
TABLES: Mapping[str, type] = MappingProxyType({
    "": ProxyConfig,
    "proxy": ProxySettings,
    "admin": AdminSettings,
    "upstreams.NAME": Upstream,
    "canary": CanarySettings,
    "gate": GateSettings,
    "shadow": ShadowSettings,
    "export": ExportSettings,
    "cluster": ClusterSettings,
    "routes[]": Route,
    "routes[].match": Match,
    "routes[].shadow": RouteShadow,
    "routes[].shadow.rewrite": ShadowRewrite,
    "routes[].compare": CompareRules,
    **ROLLOUT_TABLES,
})
SCHEMA: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {table: keys_of(cls) for table, cls in TABLES.items()})


_DOC_TABLE = re.compile(r"^<!-- keys: (.+?) -->\n(?:\|.*\n?)*", re.M)


def with_key_tables(doc: str) -> str:
    """``doc`` (``docs/config.md``) with each table after ``<!-- keys: proxy -->`` regenerated.

    A marker names one or more tables of :data:`TABLES` (``top`` for the top level).
    """
    def table(m: re.Match[str]) -> str:
        names = [("" if n == "top" else n) for n in m.group(1).split()]
        rows = key_table([(n, TABLES[n]) for n in names])
        return f"<!-- keys: {m.group(1)} -->\n{rows}\n"
    return _DOC_TABLE.sub(table, doc)


# -- locating keys in the text --------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _split_dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def _inside_array(name: tuple[str, ...], counts: dict[tuple[str, ...], int],
                  ) -> tuple[str | int, ...]:
    """``[routes.rollout]`` after the third ``[[routes]]`` is ``("routes", 2, "rollout")``."""
    for end in range(len(name) - 1, 0, -1):
        if name[:end] in counts:
            return (*name[:end], counts[name[:end]] - 1, *name[end:])
    return name


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each table header and key path to its 1-based line (``("routes", 2, "percent")``).

    A light scan rather than a full parser: tomlkit keeps comments but not positions. Keys
    inside inline tables map to the line of the inline table's key, which is where a reader
    looks anyway.

    >>> key_lines('[proxy]\\nlisten = "x"\\n[[routes]]\\nname = "a"\\n')[("routes", 0, "name")]
    4
    """
    lines: dict[tuple[str | int, ...], int] = {}
    counts: dict[tuple[str, ...], int] = {}
    section: tuple[str | int, ...] = ()
    in_multiline = False
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if in_multiline:
            closed = stripped.endswith("]") or stripped.count("]") > stripped.count("[")
            in_multiline = not closed
            continue
        header = _HEADER.match(raw) if stripped.startswith("[") else None
        if header:
            name = _split_dotted(header.group(2))
            if header.group(1) == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                section = (*name, index)
            else:
                section = _inside_array(name, counts)
            lines.setdefault(section, number)
            continue
        key = _KEY.match(raw)
        if key:
            lines.setdefault((*section, *_split_dotted(key.group(1))), number)
            value = raw.split("=", 1)[1].split("#", 1)[0].strip()
            in_multiline = value.startswith("[") and value.count("[") > value.count("]")
    return lines


# -- parsing ----------------------------------------------------------------------------------


class _Reader:
    """Reads plain TOML data into dataclasses, raising errors that point at the file."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = key_lines(text)

    def error(self, path: tuple[str | int, ...], message: str) -> ConfigError:
        where = self._line(path)
        at = f"line {where}" if where else "the file"
        return ConfigError(f"{_dotted(path)}: {message} (in {self.source}, {at})")

    def _line(self, path: tuple[str | int, ...]) -> int | None:
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found:
                return found
            inside = [n for key, n in self.lines.items() if key[:end] == path[:end]]
            if inside:
                return min(inside)
        return None

    def table(self, data: Any, path: tuple[str | int, ...], schema: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.error(path, f"{_show(data)} must be a table, e.g. {_dotted(path)} = {{}}")
        allowed = SCHEMA[schema]
        for key in data:
            if key not in allowed:
                raise self.error((*path, key), f"unknown key; the keys of [{schema or 'top'}] "
                                 f"are: {', '.join(allowed)} (see docs/config.md)")
        return data

    def text(self, data: dict[str, Any], path: tuple[str | int, ...], key: str,
            default: str | None, choices: tuple[str, ...] = ()) -> Any:
        value = data.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error((*path, key),
                             f"{_show(value)} must be a string, e.g. {key} = \"...\"")
        if choices and value not in choices:
            raise self.error((*path, key), f"{_show(value)} is not one of {', '.join(choices)}")
        return value

    def flag(self, data: dict[str, Any], path: tuple[str | int, ...], key: str,
             default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.error((*path, key), f"{_show(value)} must be true or false")
        return value

    def number(self, data: dict[str, Any], path: tuple[str | int, ...], key: str,
               default: float | None, low: float = 0.0, high: float = math.inf,
               integer: bool = False) -> Any:
        value = data.get(key, default)
        if value is None:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = "a whole number" if integer else "a number"
            raise self.error((*path, key), f"{_show(value)} must be {kind}")
        if not low <= value <= high:
            bound = f"between {_num(low)} and {_num(high)}" if high != math.inf \
                else f"at least {_num(low)}"
            raise self.error((*path, key), f"{_show(value)} is not {bound}")
        return value

    def strings(self, data: dict[str, Any], path: tuple[str | int, ...], key: str,
                default: tuple[str, ...]) -> tuple[str, ...]:
        value = data.get(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.error((*path, key), f"{_show(value)} must be a list of strings, "
                             f"e.g. {key} = [\"a\", \"b\"]")
        return tuple(value)

    def mapping(self, data: dict[str, Any], path: tuple[str | int, ...], key: str,
                kind: type | tuple[type, ...]) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.error((*path, key), f"{_show(value)} must be a table, "
                             f"e.g. {key} = {{ \"items[].price\" = ... }}")
        for sub, item in value.items():
            if isinstance(item, bool) or not isinstance(item, kind):
                raise self.error((*path, key, sub), f"{_show(item)} has the wrong type")
        return MappingProxyType(dict(value))


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "file"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() \
        if isinstance(value, bool) else str(value)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_listen(reader: _Reader, path: tuple[str | int, ...], value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise reader.error(path, f"{value!r} is not HOST:PORT, e.g. \"127.0.0.1:8080\"")
    return value


def _listen(reader: _Reader, table: dict[str, Any], path: tuple[str | int, ...],
            default: str) -> str:
    return _check_listen(reader, (*path, "listen"), reader.text(table, path, "listen", default))


def _parse_proxy(reader: _Reader, data: Any) -> ProxySettings:
    path: tuple[str | int, ...] = ("proxy",)
    table = reader.table(data, path, "proxy")
    d = ProxySettings()
    networks = []
    for index, cidr in enumerate(reader.strings(table, path, "trusted_proxies", ())):
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise reader.error((*path, "trusted_proxies", index), f"{cidr!r} is not an "
                               "address or CIDR, e.g. \"10.0.0.0/8\"") from None
    return ProxySettings(
        listen=_listen(reader, table, path, d.listen),
        workers=reader.number(table, path, "workers", d.workers, 1, 256, integer=True),
        trusted_proxies=tuple(networks),
        route_header=reader.flag(table, path, "route_header", d.route_header),
        max_header_bytes=reader.number(table, path, "max_header_bytes", d.max_header_bytes,
                                       1024, integer=True),
        max_body_bytes=reader.number(table, path, "max_body_bytes", d.max_body_bytes, 0,
                                     integer=True),
        access_log=reader.text(table, path, "access_log", d.access_log, ("off", "json")),
        reload_interval=reader.number(table, path, "reload_interval", d.reload_interval, 0),
        client_header_timeout=reader.number(table, path, "client_header_timeout",
                                            d.client_header_timeout, 0.001),
        client_body_min_rate=reader.number(table, path, "client_body_min_rate",
                                           d.client_body_min_rate, 0, integer=True),
        keepalive_timeout=reader.number(table, path, "keepalive_timeout", d.keepalive_timeout,
                                        0.001),
        max_client_connections=reader.number(table, path, "max_client_connections",
                                             d.max_client_connections, 1, integer=True),
        max_connections_per_ip=reader.number(table, path, "max_connections_per_ip",
                                             d.max_connections_per_ip, 0, integer=True),
        max_response_header_bytes=reader.number(table, path, "max_response_header_bytes",
                                                d.max_response_header_bytes, 1024,
                                                integer=True),
        request_buffer_bytes=reader.number(table, path, "request_buffer_bytes",
                                           d.request_buffer_bytes, 0, integer=True),
        send_timeout=reader.number(table, path, "send_timeout", d.send_timeout, 0),
        max_response_spool_bytes=reader.number(table, path, "max_response_spool_bytes",
                                               d.max_response_spool_bytes, 0, integer=True),
    )


def _parse_admin(reader: _Reader, data: Any) -> AdminSettings:
    path: tuple[str | int, ...] = ("admin",)
    table = reader.table(data, path, "admin")
    d = AdminSettings()
    settings = AdminSettings(
        listen=_listen(reader, table, path, d.listen),
        token=reader.text(table, path, "token", None),
        token_env=reader.text(table, path, "token_env", None),
        token_name=reader.text(table, path, "token_name", d.token_name),
        report=reader.text(table, path, "report", None),
    )
    if not settings.token and not settings.token_env:
        raise reader.error(path, "needs token = \"...\" or token_env = \"ENV_VAR\"; the admin "
                           "API refuses to run without a bearer token")
    return settings


def _parse_upstream(reader: _Reader, name: str, data: Any) -> Upstream:
    path: tuple[str | int, ...] = ("upstreams", name)
    table = reader.table(data, path, "upstreams.NAME")
    if "url" not in table:
        raise reader.error(path, "needs url = \"http://HOST:PORT\"")
    url = reader.text(table, path, "url", None)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.error((*path, "url"), f"{url!r} is not an http(s) URL, "
                           "e.g. \"http://127.0.0.1:8000\"")
    d = Upstream(name=name, url=url)
    return Upstream(
        name=name, url=url,
        host=reader.text(table, path, "host", d.host, ("keep", "rewrite")),
        connect_timeout=reader.number(table, path, "connect_timeout", d.connect_timeout, 0.001),
        read_timeout=reader.number(table, path, "read_timeout", d.read_timeout, 0.001),
        total_timeout=reader.number(table, path, "total_timeout", d.total_timeout, 0.001),
        max_connections=reader.number(table, path, "max_connections", d.max_connections, 1,
                                      integer=True),
        health_path=reader.text(table, path, "health_path", None),
        pool_timeout=reader.number(table, path, "pool_timeout", d.pool_timeout, 0.001),
    )


def _parse_canary(reader: _Reader, data: Any) -> CanarySettings:
    path: tuple[str | int, ...] = ("canary",)
    table = reader.table(data, path, "canary")
    d = CanarySettings()
    return CanarySettings(
        override_header=reader.text(table, path, "override_header", d.override_header),
        override_cookie=reader.text(table, path, "override_cookie", None),
        override_secret=reader.text(table, path, "override_secret", None),
        override_secret_env=reader.text(table, path, "override_secret_env", None),
    )


def _parse_gate(reader: _Reader, data: Any) -> GateSettings:
    path: tuple[str | int, ...] = ("gate",)
    table = reader.table(data, path, "gate")
    d = GateSettings()
    return GateSettings(
        min_compared=reader.number(table, path, "min_compared", d.min_compared, 0, integer=True),
        min_match_rate=reader.number(table, path, "min_match_rate", d.min_match_rate, 0, 1),
    )


def _parse_shadow(reader: _Reader, data: Any) -> ShadowSettings:
    path: tuple[str | int, ...] = ("shadow",)
    table = reader.table(data, path, "shadow")
    d = ShadowSettings()
    return ShadowSettings(
        store=reader.text(table, path, "store", d.store),
        queue_size=reader.number(table, path, "queue_size", d.queue_size, 1, integer=True),
        concurrency=reader.number(table, path, "concurrency", d.concurrency, 1, integer=True),
        timeout=reader.number(table, path, "timeout", d.timeout, 0.001),
        max_body_bytes=reader.number(table, path, "max_body_bytes", d.max_body_bytes, 0,
                                     integer=True),
        retention_count=reader.number(table, path, "retention_count", d.retention_count, 0,
                                      integer=True),
        retention_days=reader.number(table, path, "retention_days", d.retention_days, 0),
        noise_percent=reader.number(table, path, "noise_percent", d.noise_percent, 0, 100),
        redact_headers=reader.strings(table, path, "redact_headers", d.redact_headers),
        redact_fields=reader.strings(table, path, "redact_fields", d.redact_fields),
        worker_cpu_percent=reader.number(table, path, "worker_cpu_percent",
                                         d.worker_cpu_percent, 1, 100),
        comparator_url=_http_url(reader, table, path, "comparator_url"),
        comparator_baseline_url=_http_url(reader, table, path, "comparator_baseline_url"),
        comparator_max_per_second=reader.number(table, path, "comparator_max_per_second",
                                                d.comparator_max_per_second, 0),
        proxy_sends_to=_proxy_sends_to(reader, table, path),
        marker_secret=reader.text(table, path, "marker_secret", None),
        marker_secret_env=reader.text(table, path, "marker_secret_env", None),
        marker_skew=reader.number(table, path, "marker_skew", d.marker_skew, 1),
        monolith_outbox=reader.text(table, path, "monolith_outbox", None),
        changes_wait=reader.number(table, path, "changes_wait", d.changes_wait, 0, 60),
    )


def _proxy_sends_to(reader: _Reader, table: dict[str, Any],
                    path: tuple[str | int, ...]) -> str:
    sends_to: str = reader.text(table, path, "proxy_sends_to", "worker",
                                ("worker", "comparator"))
    if sends_to == "comparator" and not table.get("comparator_url"):
        raise reader.error((*path, "proxy_sends_to"), '"comparator" needs shadow.comparator_url '
                           '= "http://HOST:PORT" (where `strangler shadow serve` listens)')
    return sends_to


def _http_url(reader: _Reader, table: dict[str, Any], path: tuple[str | int, ...],
              key: str) -> str | None:
    url: str | None = reader.text(table, path, key, None)
    if url is not None and (urlsplit(url).scheme not in ("http", "https")
                            or not urlsplit(url).hostname):
        raise reader.error((*path, key), f"{url!r} is not an http(s) URL, "
                           "e.g. \"http://127.0.0.1:8090\"")
    return url


def _parse_export(reader: _Reader, data: Any) -> ExportSettings:
    path: tuple[str | int, ...] = ("export",)
    table = reader.table(data, path, "export")
    settings = ExportSettings(
        engine=reader.text(table, path, "engine", None, EXPORT_ENGINES),
        output=reader.text(table, path, "output", None),
        listen=_listen(reader, table, path, "") if "listen" in table else None,
        runtime_dir=reader.text(table, path, "runtime_dir", None),
        binary=reader.text(table, path, "binary", None),
        reload_command=reader.text(table, path, "reload_command", None),
    )
    if settings.engine and not settings.output:
        raise reader.error(path, "needs output = \"/path/to/engine.conf\" (where flips write "
                           f"the regenerated {settings.engine} config)")
    return settings


_TEMPLATE_VAR = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def _parse_match(reader: _Reader, path: tuple[str | int, ...], data: Any) -> Match:
    table = reader.table(data, path, "routes[].match")
    kinds = [k for k in ("path_prefix", "path", "path_template") if k in table]
    if len(kinds) != 1:
        raise reader.error(path, "needs exactly one of path_prefix, path or path_template, "
                           "e.g. match = { path_prefix = \"/api/products/\" }")
    kind = kinds[0]
    value = reader.text(table, path, kind, None)
    if not value.startswith("/"):
        raise reader.error((*path, kind), f"{value!r} must start with \"/\"")
    if kind == "path_template" and not _TEMPLATE_VAR.search(value):
        raise reader.error((*path, kind), f"{value!r} has no {{name}} segment; use path = "
                           "for an exact path")
    methods = reader.strings(table, path, "methods", ())
    for index, method in enumerate(methods):
        if method.upper() not in HTTP_METHODS:
            raise reader.error((*path, "methods", index), f"{method!r} is not an HTTP method")
    headers = reader.mapping(table, path, "headers", str)
    return Match(**{kind: value}, methods=frozenset(m.upper() for m in methods),
                 headers=MappingProxyType({k.lower(): v for k, v in headers.items()}))


def _parse_route_shadow(reader: _Reader, path: tuple[str | int, ...], data: Any) -> RouteShadow:
    table = reader.table(data, path, "routes[].shadow")
    rewrite_data = reader.table(table.get("rewrite", {}), (*path, "rewrite"),
                                "routes[].shadow.rewrite")
    rpath = (*path, "rewrite")
    return RouteShadow(
        percent=reader.number(table, path, "percent", 100.0, 0, 100),
        writes=reader.flag(table, path, "writes", False),
        max_body_bytes=reader.number(table, path, "max_body_bytes", None, 0, integer=True),
        credentials=reader.flag(table, path, "credentials", True),
        rewrite=ShadowRewrite(
            host=reader.text(rewrite_data, rpath, "host", None),
            path_prefix=reader.text(rewrite_data, rpath, "path_prefix", None),
            authorization=reader.text(rewrite_data, rpath, "authorization", None),
        ),
    )


def _parse_compare(reader: _Reader, path: tuple[str | int, ...], data: Any) -> CompareRules:
    table = reader.table(data, path, "routes[].compare")
    formats = reader.mapping(table, path, "formats", str)
    for key, value in formats.items():
        if value not in ("iso8601", "uuid") and not value.startswith("regex:"):
            raise reader.error((*path, "formats", key), f"{value!r} is not \"iso8601\", "
                               "\"uuid\" or \"regex:PATTERN\"")
        if value.startswith("regex:"):
            try:
                re.compile(value[6:])
            except re.error as exc:
                raise reader.error((*path, "formats", key), f"bad regex: {exc}") from None
    return CompareRules(
        ignore=reader.strings(table, path, "ignore", ()),
        headers=tuple(h.lower() for h in reader.strings(table, path, "headers", ())),
        tolerance=reader.mapping(table, path, "tolerance", (int, float)),
        unordered=reader.mapping(table, path, "unordered", str),
        formats=formats,
    )


_STICKY = re.compile(r"^(header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[^\s;=,]+|client_ip)$")


def _parse_route(reader: _Reader, index: int, data: Any,
                 upstreams: Mapping[str, Upstream]) -> Route:
    path: tuple[str | int, ...] = ("routes", index)
    table = reader.table(data, path, "routes[]")
    name = reader.text(table, path, "name", None)
    if not name:
        raise reader.error(path, "needs name = \"...\" (used by `strangler routes set NAME`)")
    if "match" not in table:
        raise reader.error(path, "needs match = { path_prefix = \"/...\" }")
    target = reader.text(table, path, "target", MONOLITH)
    if target not in upstreams:
        raise reader.error((*path, "target"), f"{target!r} is not an upstream; define "
                           f"[upstreams.{target}] or use one of: {', '.join(upstreams)}")
    sticky = reader.text(table, path, "sticky", "client_ip")
    if not _STICKY.match(sticky):
        raise reader.error((*path, "sticky"), f"{sticky!r} must be \"header:NAME\", "
                           "\"cookie:NAME\" or \"client_ip\"")
    return Route(
        name=name,
        match=_parse_match(reader, (*path, "match"), table["match"]),
        mode=reader.text(table, path, "mode", MONOLITH, MODES),
        target=target,
        percent=reader.number(table, path, "percent", 0.0, 0, 100),
        sticky=sticky,
        group=reader.text(table, path, "group", None),
        fallback=reader.flag(table, path, "fallback", False),
        websocket=reader.flag(table, path, "websocket", False),
        buffer_request=reader.flag(table, path, "buffer_request", True),
        shadow=_parse_route_shadow(reader, (*path, "shadow"), table.get("shadow", {})),
        compare=_parse_compare(reader, (*path, "compare"), table.get("compare", {})),
        rollout=(parse_rollout(reader, (*path, "rollout"), table["rollout"], target)
                 if "rollout" in table else None),
        line=reader.lines.get(path, 0),
    )


def parse_config(text: str, source: str = "strangler.toml") -> ProxyConfig:
    """Parse and validate a routes file's text; raise ConfigError naming key, line and fix.

    >>> cfg = parse_config('[admin]\\ntoken = "t"\\n[upstreams.monolith]\\nurl = "http://h:1"')
    >>> cfg.upstreams["monolith"].port, cfg.routes
    (1, ())
    """
    problem = check_toml(text)
    if problem:
        raise ConfigError(f"not valid TOML: {problem.message} (in {source}, line {problem.line})")
    try:
        data = tomlkit.parse(text).unwrap()
    except Exception:  # noqa: BLE001 - any parser failure, whatever its type or wording
        at = _parser_error_line(text)
        raise ConfigError(f"not valid TOML: check the quotes, brackets and commas "
                          f"(in {source}{f', line {at}' if at else ''})") from None
    reader = _Reader(text, source)
    reader.table(data, (), "")
    upstream_data = data.get("upstreams", {})
    if not isinstance(upstream_data, dict) or MONOLITH not in upstream_data:
        raise reader.error(("upstreams",), "needs [upstreams.monolith] with url = "
                           "\"http://HOST:PORT\" (the default route goes there)")
    upstreams = {n: _parse_upstream(reader, n, u) for n, u in upstream_data.items()}
    if "admin" not in data:
        raise reader.error(("admin",), "is missing; add [admin] with token = \"...\" or "
                           "token_env = \"ENV_VAR\"")
    routes_data = data.get("routes", [])
    if not isinstance(routes_data, list):
        raise reader.error(("routes",), "must be an array of tables: [[routes]]")
    routes = tuple(_parse_route(reader, i, r, upstreams) for i, r in enumerate(routes_data))
    _check_unique_names(reader, routes)
    config = ProxyConfig(
        proxy=_parse_proxy(reader, data.get("proxy", {})),
        admin=_parse_admin(reader, data["admin"]),
        upstreams=MappingProxyType(upstreams),
        routes=routes,
        canary=_parse_canary(reader, data.get("canary", {})),
        gate=_parse_gate(reader, data.get("gate", {})),
        shadow=_parse_shadow(reader, data.get("shadow", {})),
        export=_parse_export(reader, data.get("export", {})),
        cluster=_parse_cluster(reader, data.get("cluster", {})),
        source=source,
    )
    warnings = tuple(f"routes[{i}] ({later.name!r}, line {later.line}) can never match: "
                     f"{earlier.name!r} (line {earlier.line}) matches all its requests first; "
                     "move it above or narrow the earlier match"
                     for i, later, earlier in unreachable_routes(routes))
    return _replace_warnings(config, warnings + exposure_warnings(config))


# Tokens that appear as examples in our docs: a file that kept one is not protected.
EXAMPLE_TOKENS = frozenset({"change-me", "changeme", "walkthrough-admin-token", "secret",
                            "token", "admin"})
_ALL_INTERFACES = frozenset({"0.0.0.0", "::", "[::]", "*"})  # noqa: S104 - what we look for


def exposure_warnings(config: ProxyConfig) -> tuple[str, ...]:
    """Warnings for a deployment open to more than intended: listeners on every interface,
    an admin token copied from the docs.

    >>> cfg = parse_config('[admin]\\nlisten = "0.0.0.0:8081"\\ntoken = "change-me"\\n'
    ...                    '[upstreams.monolith]\\nurl = "http://h:1"')
    >>> len(exposure_warnings(cfg))
    2
    """
    out = []
    for key, listen in (("proxy.listen", config.proxy.listen),
                        ("admin.listen", config.admin.listen)):
        if listen.rpartition(":")[0] in _ALL_INTERFACES:
            out.append(f"{key} = {listen!r} listens on every interface"
                       + ("; the admin API can flip routes: keep it on 127.0.0.1 or a private "
                          "address" if key == "admin.listen" else
                          "; make sure only your load balancer can reach it, or use "
                          "127.0.0.1"))
    if config.admin.token in EXAMPLE_TOKENS:
        out.append(f"admin.token = {config.admin.token!r} is an example from the docs; set "
                   "a long random token (e.g. `openssl rand -hex 32`) via admin.token_env")
    return tuple(out)


def _parser_error_line(text: str) -> int | None:
    """The line the stdlib parser stopped at, for the rare mistake check_toml lets through.

    Python 3.14 gives it as an attribute; before that only inside the message, so a change
    of wording costs the line number, never the error.
    """
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as decode_error:
        line = getattr(decode_error, "lineno", None)
        if isinstance(line, int):
            return line
        found = re.search(r"line (\d+)", str(decode_error))
        return int(found.group(1)) if found else None
    return None


def _replace_warnings(config: ProxyConfig, warnings: tuple[str, ...]) -> ProxyConfig:
    from dataclasses import replace

    return replace(config, warnings=warnings)


def _check_unique_names(reader: _Reader, routes: tuple[Route, ...]) -> None:
    seen: set[str] = set()
    for index, route in enumerate(routes):
        if route.name in seen or route.name == DEFAULT_ROUTE_NAME:
            why = "is reserved for the built-in route to the monolith" \
                if route.name == DEFAULT_ROUTE_NAME else "is used by an earlier route"
            raise reader.error(("routes", index, "name"), f"{route.name!r} {why}; "
                               "route names must be unique")
        seen.add(route.name)


def load_config(path: str | Path) -> ProxyConfig:
    """Read and validate the routes file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such routes file; create one (see docs/config.md) "
                          "or pass --config FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the routes file: {exc}") from None
    return parse_config(text, source=str(file))


__all__ = [
    "EXPORT_ENGINES", "MODES", "SCHEMA", "TABLES", "AdminSettings", "CanarySettings",
    "ClusterSettings", "CompareRules", "ExportSettings", "GateSettings",
    "Match", "ProxyConfig", "ProxySettings", "Route", "RouteShadow", "ShadowRewrite",
    "ShadowSettings", "Upstream", "key_lines", "load_config", "parse_config", "with_key_tables",
]
