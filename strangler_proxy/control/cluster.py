"""Several proxies sharing one flag state through PostgreSQL (``[cluster]`` in the routes file).

::

    local flip / edit / reload ──▶ Reloader ──▶ app._apply ──▶ member.applied(text)
                                                                   │ publish (with the audit)
                                                                   ▼
    strangler_versions (PostgreSQL) ──NOTIFY──▶ every replica's member.run()
                                   (+ a poll)       │ newest version not ours yet?
                                                    ▼
                      write <local tables> + <shared part> to the routes file, app.reload()

The routes file stays what people edit and review. Its **shared part** (everything but
``[proxy]``, ``[admin]`` and ``[cluster]``, which belong to each replica: listeners, token,
replica name) is what replicas publish and adopt. Each replica keeps its own file in step, so a
restarted replica starts from the last version it knew, and a replica whose database is away
keeps serving its last good table; it publishes what changed locally meanwhile and adopts what
it missed when the database returns. The newest version wins: two flips of the same moment on
two replicas are applied in the order the database took them.

At start a replica compares its file with the newest version: equal, nothing to do; a version
published before (an older file), it adopts the newest; never published (edited while the
replica was down), it publishes it.

One replica leads rollouts: the one holding the cluster's advisory lock (``cluster_store``).
Every replica reports its cumulative evidence counters each poll; a replica's rollout driver
sums its own live counters with every peer's last report, so the checks see the cluster's
traffic. Rollout states live in PostgreSQL; a new leader takes them over (each step's window
starts afresh, as after a restart). Known wart: a flip made with ``strangler routes set``
from another process is published when the file watcher sees the file, and its audit record
goes with the next publication if it was written after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict
from typing import Any, Protocol

import psycopg
import tomlkit

from strangler_proxy.config import (
    CLUSTER_LOCAL_TABLES,
    ClusterSettings,
    ProxyConfig,
    Route,
    parse_config,
)
from strangler_proxy.control import cluster_store as store
from strangler_proxy.control.audit import audit_path
from strangler_proxy.control.reload import Reloader
from strangler_proxy.control.rollout import Driven, RolloutDriver, RolloutError, RolloutState
from strangler_proxy.control.routes_edit import edit_route_text
from strangler_proxy.errors import ConfigError, RouteEditError
from strangler_proxy.live_evidence import RouteSample, SideCounts
from strangler_proxy.write_atomic import write_atomic

PEER_MAX_AGE = 3600.0  # a silent replica's last counters still count (they add no delta)


def shared_part(text: str) -> str:
    """The routes file without the replica's own tables (``[proxy]``, ``[admin]``, ``[cluster]``).

    >>> shared_part('# flags\\n[proxy]\\nlisten = "h:1"\\n[[routes]]\\nname = "a"\\n')
    '# flags\\n[[routes]]\\nname = "a"\\n'
    """
    doc = tomlkit.parse(text)
    for name in CLUSTER_LOCAL_TABLES:
        if name in doc:
            doc.remove(name)
    return doc.as_string()


def shared_digest(shared: str) -> str:
    """What tells versions apart: the shared part's values, not its comments or layout.

    >>> shared_digest('a = 1 # one\\n') == shared_digest('a    = 1\\n')
    True
    """
    data = tomlkit.parse(shared).unwrap()
    return store.digest(json.dumps(data, sort_keys=True, default=str))


def with_local(shared: str, local_text: str) -> str:
    """A published shared part with this replica's own tables (from ``local_text``) put in.

    The shared part's opening comment stays on top; the replica's tables follow it.

    >>> local = '[admin]\\ntoken = "t"\\n[[routes]]\\nname = "a"\\n'
    >>> print(with_local('# flags\\n\\n[[routes]]\\nname = "b"\\n', local))
    # flags
    <BLANKLINE>
    [admin]
    token = "t"
    <BLANKLINE>
    [[routes]]
    name = "b"
    <BLANKLINE>
    """
    local = tomlkit.parse(local_text)
    head = tomlkit.document()
    for name in CLUSTER_LOCAL_TABLES:
        if name in local:
            head.add(name, local[name])
    top = head.as_string().strip()
    if not top:
        return shared
    lines = shared.splitlines(keepends=True)
    opening = 0
    while opening < len(lines) and (not lines[opening].strip()
                                    or lines[opening].lstrip().startswith("#")):
        opening += 1
    preamble, rest = "".join(lines[:opening]), "".join(lines[opening:])
    return f"{preamble}{top}\n\n{rest}"


def replay_flips(shared: str, audit: list[dict[str, Any]]) -> str:
    """``shared`` with the flips recorded in ``audit`` made again, in order ("" if none).

    A flip of a route that is no longer there is left out.

    >>> body = '[[routes]]\\nname = "r"\\nmode = "monolith"\\n'
    >>> replay_flips(body, [{"route": "r", "new": {"mode": "canary", "percent": 5}}])
    '[[routes]]\\nname = "r"\\nmode = "canary"\\npercent = 5\\n'
    """
    flips = [r for r in audit if isinstance(r.get("new"), dict) and "mode" in r["new"]]
    if not flips:
        return ""
    for record in flips:
        mode = str(record["new"]["mode"])
        percent = record["new"].get("percent") if mode == "canary" else None
        with contextlib.suppress(RouteEditError, ValueError, TypeError):
            shared = edit_route_text(shared, str(record.get("route")), mode, percent)[0]
    return shared


def counts_json(counts: dict[str, RouteSample]) -> dict[str, Any]:
    """Evidence counters as JSON (the replicas table)."""
    return {route: {side: [c.requests, c.errors, list(c.classes), list(c.bins)]
                    for side, c in sides.items()} for route, sides in counts.items()}


def counts_from_json(data: dict[str, Any]) -> dict[str, RouteSample]:
    """The inverse of :func:`counts_json`; malformed entries are skipped."""
    out: dict[str, RouteSample] = {}
    for route, sides in data.items():
        for side, cell in dict(sides).items():
            with contextlib.suppress(TypeError, ValueError):
                requests, errors, classes, bins = cell
                out.setdefault(route, {})[side] = SideCounts(
                    int(requests), int(errors), tuple(classes), tuple(bins))  # type: ignore[arg-type]
    return out


def add_counts(total: dict[str, RouteSample], more: dict[str, RouteSample]) -> None:
    """Add ``more``'s cumulative counters into ``total`` (same histogram layout)."""
    for route, sides in more.items():
        mine = total.setdefault(route, {})
        for side, counts in sides.items():
            with contextlib.suppress(ValueError):
                mine[side] = mine[side] + counts if side in mine else counts


class Member(Driven, Protocol):
    """What the cluster needs from the app (:class:`~strangler_proxy.control.app.ProxyApp`)."""

    reloader: Reloader
    admin_address: str
    rollouts: RolloutDriver | None


class ClusterMember:
    """This replica's link to the cluster: publishes, adopts, reports, leads."""

    def __init__(self, app: Member, settings: ClusterSettings, database: str) -> None:
        self.app = app
        self.settings = settings
        self.database = database
        self.name = settings.name
        self.replica = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self.version = 0  # the newest published version this replica serves or saw
        self.digest = ""  # the digest of the shared part it serves
        self.pending: str | None = None  # a local change not published yet
        self.fresh = True  # the first sync decides between publishing and adopting
        self.up = False
        self.leader = False
        self.last_error = ""
        self.peers: list[store.Peer] = []
        self.peer_counts: dict[str, RouteSample] = {}
        self.rollouts_dirty: dict[str, Any] | None = None
        self.wake = asyncio.Event()
        self.audit_offset = _size(audit_path(app.config_path))

    # -- called by the app -----------------------------------------------------------------

    def applied(self, text: str) -> None:
        """The app swapped in the routes ``text``: publish its shared part if it is new."""
        shared = shared_part(text)
        key = shared_digest(shared)
        if key == self.digest:
            return  # adopted from the cluster, or only this replica's own tables changed
        self.digest = key
        self.pending = shared
        self.wake.set()

    def status(self) -> dict[str, Any]:
        """What ``GET /status`` shows under ``cluster``."""
        leader = next((p.replica for p in self.peers if p.leader and p.age < 10), None)
        return {"name": self.name, "replica": self.replica,
                "database": "up" if self.up else "away", "leader": self.leader,
                "leader_replica": self.replica if self.leader else leader,
                "version": self.version, "pending": self.pending is not None,
                "peers": len([p for p in self.peers if p.age < 10]),
                "last_error": self.last_error or None}

    def leader_admin(self) -> str:
        """The admin address of the replica leading rollouts ("" when unknown)."""
        return next((p.admin for p in self.peers if p.leader and p.age < 10), "")

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected (LISTEN + a poll) until cancelled; reconnect while the DB is away."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self._away(exc)
            except Exception as exc:  # noqa: BLE001 - a bug here must not end the link
                self._away(exc, f"unexpected {type(exc).__name__}, please report it: ")
            await asyncio.sleep(self.settings.poll_interval)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        timeout = max(1, round(self.settings.timeout))
        return await asyncio.wait_for(psycopg.AsyncConnection.connect(
            self.database, autocommit=True, connect_timeout=timeout,
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2),
            self.settings.timeout + 1)

    async def _session(self) -> None:
        listen = await self._connect()
        try:
            work = await self._connect()
        except BaseException:
            await listen.close()
            raise
        heard: asyncio.Task[None] | None = None
        try:
            await self._call(store.ensure_schema(work))
            await self._call(listen.execute(f"LISTEN {store.CHANNEL}"))
            heard = asyncio.create_task(self._listen(listen))
            while True:
                await self._sync(work)
                if not self.up:
                    sys.stderr.write(f"strangler proxy: cluster {self.name}: database "
                                     f"reachable, serving version {self.version}\n")
                    self.up, self.last_error = True, ""
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.settings.poll_interval)
                self.wake.clear()
                if heard.done():
                    heard.result()  # the listening connection died: raise, reconnect
                    raise OSError("the LISTEN connection ended")
        finally:
            self.leader = False  # the lock goes with the connection
            if heard is not None:
                heard.cancel()
                with contextlib.suppress(BaseException):
                    await heard
            for conn in (listen, work):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 1.0)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for notice in conn.notifies():
            if notice.payload == self.name:
                self.wake.set()

    async def _call(self, work: Any) -> Any:
        return await asyncio.wait_for(work, self.settings.timeout)

    def _away(self, exc: BaseException, prefix: str = "") -> None:
        text = str(exc).strip()
        message = prefix + (text.splitlines()[0] if text else type(exc).__name__)
        if self.up or not self.last_error:
            sys.stderr.write(f"strangler proxy: cluster {self.name}: database away "
                             f"({message}); serving route table version "
                             f"{self.app.reloader.status.version} until it returns\n")
        self.up, self.leader, self.last_error = False, False, message

    async def _sync(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self.fresh:
            await self._first(conn)
        if self.pending is not None:
            await self._publish(conn, self.pending)
        newest = await self._call(store.latest(conn, self.name))
        if newest is not None and newest.id > self.version and self.pending is None:
            if newest.digest != self.digest:
                records = await self._call(store.audit_since(conn, self.name, self.version,
                                                             newest.id))
                if self._adopt(newest, records):
                    self.version = newest.id
                # else: refused or unwritable; our last good table serves, the next poll retries
            else:
                self.version = newest.id
        await self._lead(conn)
        await self._report(conn)

    async def _publish(self, conn: psycopg.AsyncConnection[Any], pending: str) -> None:
        """Publish a local change; on top of what others published meanwhile, if they did.

        While the database was away, other replicas may have published versions this one never
        saw. Publishing our whole shared part would undo their flips, so our flips (from the
        audit records that go with the change) are replayed onto their newest version instead,
        and this replica then serves the result. A change with no flip in its audit (a hand
        edit of the file) is published as it is: the newest version wins.
        """
        audit = self._new_audit()
        newest = await self._call(store.latest(conn, self.name))
        merged, theirs = "", []
        if newest is not None and 0 < self.version < newest.id and \
                newest.digest != shared_digest(pending):
            merged = replay_flips(newest.body, audit)
            theirs = await self._call(store.audit_since(conn, self.name, self.version,
                                                        newest.id))
        body = merged or pending
        published = await self._call(store.publish(conn, self.name, body, shared_digest(body),
                                                   self.replica, audit))
        if self.pending is not pending:
            return  # changed again meanwhile: the next pass publishes that
        self.pending = None
        self.version = max(self.version, published.id)
        if merged:
            self._adopt(published, theirs)  # theirs plus our flips (our audit is local)

    async def _first(self, conn: psycopg.AsyncConnection[Any]) -> None:
        shared = shared_part(self.app.reloader.active_text)
        key = shared_digest(shared)
        self.digest = key
        newest = await self._call(store.latest(conn, self.name))
        if newest is None or (newest.digest != key and
                              not await self._call(store.known(conn, self.name, key))):
            self.pending = shared  # the first replica, or a file edited while it was down
        elif newest.digest == key:
            self.version = newest.id
        self.fresh = False

    def _adopt(self, version: store.Version, audit: list[dict[str, Any]]) -> bool:
        """Serve ``version``: write it under our own tables to the file, then reload."""
        path = self.app.config_path
        text = with_local(version.body, self.app.reloader.active_text)
        try:
            parse_config(text, source=str(path))
        except ConfigError as exc:
            self._note(f"version {version.id} from {version.replica} refused: {exc}")
            return False
        try:
            write_atomic(path, text)
        except OSError as exc:  # not the database's fault: say so, keep serving, retry
            self._note(f"cannot write {path} to take version {version.id}: {exc}")
            return False
        self.digest = version.digest  # before the reload: applied() must not publish it back
        self._append_audit(audit)
        self.app.reload()
        self.last_error = ""
        return True

    def _note(self, message: str) -> None:
        """Keep a problem for ``/status``; log it once, not on every poll."""
        if message != self.last_error:
            sys.stderr.write(f"strangler proxy: cluster {self.name}: {message}\n")
        self.last_error = message

    def _append_audit(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        path = audit_path(self.app.config_path)
        self._new_audit()  # our own unpublished lines stay ours: skip past them first
        with path.open("a", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, sort_keys=True) + "\n")
        self.audit_offset = _size(path)

    def _new_audit(self) -> list[dict[str, Any]]:
        """Audit lines appended locally since the last publication."""
        path = audit_path(self.app.config_path)
        try:
            with path.open("rb") as source:
                source.seek(self.audit_offset)
                data = source.read()
        except OSError:
            return []
        complete = data[:data.rfind(b"\n") + 1]
        self.audit_offset += len(complete)
        out = []
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    # -- rollouts: the leader, the evidence ----------------------------------------------

    async def _lead(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if not self.leader and await self._call(store.try_lead(conn, self.name)):
            states = await self._call(store.load_rollouts(conn, self.name))
            self.leader = True
            sys.stderr.write(f"strangler proxy: cluster {self.name}: {self.replica} leads "
                             "rollouts\n")
            if self.app.rollouts is not None and states is not None:
                self.app.rollouts.states = _states(states)
        if self.leader and self.rollouts_dirty is not None:
            states, self.rollouts_dirty = self.rollouts_dirty, None
            await self._call(store.save_rollouts(conn, self.name, self.replica, states))
        elif not self.leader and self.app.rollouts is not None:
            states = await self._call(store.load_rollouts(conn, self.name))
            if states is not None:  # a follower shows the leader's rollouts
                self.app.rollouts.states = _states(states)

    async def _report(self, conn: psycopg.AsyncConnection[Any]) -> None:
        counts = self.app.rollouts.own_sample() if isinstance(
            self.app.rollouts, ClusterRolloutDriver) else {}
        peers = await self._call(store.report(conn, self.name, self.replica,
                                              self.app.admin_address, self.leader,
                                              self.version, counts_json(counts)))
        self.peers = peers
        total: dict[str, RouteSample] = {}
        for peer in peers:
            if peer.age < PEER_MAX_AGE:
                add_counts(total, counts_from_json(peer.counts))
        self.peer_counts = total


def _states(data: dict[str, Any]) -> dict[str, RolloutState]:
    out = {}
    now = time.time()
    for name, item in dict(data.get("rollouts", {})).items():
        with contextlib.suppress(TypeError):
            state = RolloutState(**item)
            state.step_started = now  # evidence before the takeover is not ours: start afresh
            out[name] = state
    return out


class ClusterRolloutDriver(RolloutDriver):
    """The rollout driver of a clustered replica: cluster-wide evidence, one leader drives."""

    def __init__(self, app: Driven, member: ClusterMember) -> None:
        super().__init__(app)
        self.member = member

    def own_sample(self) -> dict[str, RouteSample]:
        """This replica's cumulative counters (what it reports to its peers)."""
        return super()._sample()

    def _sample(self) -> dict[str, RouteSample]:
        total = self.own_sample()
        add_counts(total, self.member.peer_counts)
        return total

    def _leads(self) -> bool:
        return self.member.leader

    def _save(self) -> None:
        super()._save()
        if self.member.leader:
            self.member.rollouts_dirty = {"version": 1, "rollouts": {
                n: asdict(s) for n, s in self.states.items()}}
            self.member.wake.set()

    async def _flip(self, state: RolloutState, route: Route, index: int, reason: str,
                    who: str = "rollout") -> None:
        await super()._flip(state, route, index, reason, who)
        self._save()  # at once (the base saves the first flip at the next tick): a leader
        # dying between the two would leave its successor a step behind the routes

    async def act(self, name: str, action: str, who: str) -> dict[str, Any]:
        """As :meth:`RolloutDriver.act`, on the leader only (a follower names it)."""
        if not self.member.leader:
            where = self.member.leader_admin()
            raise RolloutError(f"this replica ({self.member.replica}) does not lead rollouts "
                               f"in cluster {self.member.name}; send the action to the "
                               f"leader's admin API{f' at {where}' if where else ''}")
        return await super().act(name, action, who)


def build_member(app: Member, config: ProxyConfig,
                 environ: dict[str, str]) -> ClusterMember | None:
    """The replica's cluster member when ``[cluster]`` names a database, else None."""
    settings = config.cluster
    if not settings.enabled:
        return None
    database = settings.resolve_database(environ)
    if not database:
        raise ConfigError(f"{app.config_path}: [cluster].database_env names "
                          f"${settings.database_env}, which is empty; set it to the "
                          "cluster's postgresql:// URL")
    return ClusterMember(app, settings, database)


def _size(path: Any) -> int:
    try:
        return int(os.path.getsize(path))
    except OSError:
        return 0


__all__ = ["ClusterMember", "ClusterRolloutDriver", "add_counts", "build_member",
           "counts_from_json", "counts_json", "replay_flips", "shared_digest", "shared_part",
           "with_local"]
