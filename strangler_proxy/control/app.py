"""The proxy wired together in one place: config -> route table -> listener, admin, reload, shadow.

::

    ProxyApp(config_path)
      ├── state: ProxyState           route table (swapped on reload), upstream pools, metrics
      ├── server: ClientConnection    the forwarding listener        (server.py)
      ├── admin: AdminServer          status, routes, metrics, flips (admin.py)
      ├── reloader: Reloader          file polling + SIGHUP          (reload.py)
      ├── sink: ShadowSink            shadow copies and comparison   (shadow.py, optional)
      ├── rollouts: RolloutDriver     evidence ring, guarded rollouts (rollout.py, admin worker)
      └── group: WorkerGroup          siblings under --workers N: shared /metrics, reload fan-out

With ``--workers N`` every worker but the admin one (index 0) writes its counters to
``<group dir>/worker-<i>.json`` every :data:`PUBLISH_INTERVAL` seconds; the admin worker sums
them with its own live counters for ``GET /metrics``. A flip or reload through the admin API
SIGHUPs the supervisor, which forwards it to every worker, so all of them re-read the file at
once instead of at their next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strangler_proxy.config import ProxyConfig, load_config
from strangler_proxy.control.admin import AdminServer, route_record
from strangler_proxy.control.cluster import ClusterMember, ClusterRolloutDriver, build_member
from strangler_proxy.control.reload import Reloader
from strangler_proxy.control.rollout import RolloutDriver
from strangler_proxy.edge import (
    ProxyState,
    build_pools,
    describe,
    listen_socket,
    protocol_factory,
    watchdog,
)
from strangler_proxy.errors import StartupError
from strangler_proxy.exchange import ShadowSink
from strangler_proxy.meter_chart import meter_page, ownership, read_report
from strangler_proxy.metrics import Metrics
from strangler_proxy.routing import RouteTable
from strangler_proxy.shadow import build_sink
from strangler_proxy.write_atomic import write_atomic

SinkFactory = Callable[[ProxyConfig], ShadowSink]
PUBLISH_INTERVAL = 0.5  # seconds between a worker's metric snapshots


@dataclass(frozen=True)
class WorkerGroup:
    """Where one worker sits among ``--workers N`` siblings forked by one supervisor."""

    index: int  # 0 serves the admin API
    count: int
    directory: Path  # shared by the group: worker-<i>.json metric snapshots
    supervisor: int  # pid that forwards SIGHUP to every worker

    def snapshot_path(self, index: int) -> Path:
        """Where worker ``index`` publishes its counters."""
        return self.directory / f"worker-{index}.json"

    def publish(self, metrics: Metrics) -> None:
        """Write this worker's counters atomically (temp file + rename)."""
        write_atomic(self.snapshot_path(self.index), json.dumps(metrics.snapshot()))

    def collect(self, own: Metrics) -> tuple[Metrics, int]:
        """``own`` plus every sibling's last snapshot, and how many workers reported."""
        total = Metrics()
        total.absorb(own.snapshot())
        total.table_version = own.table_version
        reporting = 1
        for index in range(self.count):
            if index == self.index:
                continue
            try:
                snapshot = json.loads(self.snapshot_path(index).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not published yet, or restarting: its requests show up next time
            total.absorb(snapshot)
            reporting += 1
        return total, reporting


def default_sink_factory(config: ProxyConfig) -> ShadowSink:
    """The shadow side's sink (the process sink and its worker)."""
    return build_sink(config)


class ProxyApp:
    """One proxy process: forwarding listener, admin listener, reloads, shadow sink."""

    def __init__(self, config_path: str | Path, environ: Mapping[str, str] | None = None,
                 sink_factory: SinkFactory | None = None, admin: bool = True,
                 group: WorkerGroup | None = None) -> None:
        self.config_path = Path(config_path)
        self.environ = dict(os.environ if environ is None else environ)
        config = load_config(self.config_path)
        self.token = config.admin.resolve_token(self.environ)
        if admin and not self.token:
            where = f"${config.admin.token_env}" if config.admin.token_env else "[admin].token"
            raise StartupError(f"{self.config_path}: no admin token ({where} is empty); set it "
                               "so the admin API is protected, the proxy refuses to start "
                               "without one")
        self.with_admin = admin
        self.group = group
        self.metrics = Metrics()
        self.metrics.table_version = 1
        self.sink: Any = (sink_factory or default_sink_factory)(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state: ProxyState | None = None
        self.reloader = Reloader(self.config_path, self._apply, self.metrics.reload,
                                 self.config_path.read_text(encoding="utf-8"))
        self._initial = config
        self.server: asyncio.Server | None = None
        self.admin: AdminServer | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.ready = False
        self.started_at = time.time()
        self.proxy_address = ""
        self.admin_address = ""
        self.rollouts: RolloutDriver | None = None
        # [cluster]: the admin process links the replica to the others (cluster.py)
        self.cluster: ClusterMember | None = build_member(self, config, self.environ) \
            if admin else None

    @property
    def config(self) -> ProxyConfig:
        """The config of the active route table."""
        return self.state.table.config if self.state is not None else self._initial

    def _table(self, config: ProxyConfig, version: int) -> RouteTable:
        return RouteTable(config, version, config.canary.resolve_secret(self.environ))

    def _apply(self, config: ProxyConfig) -> None:
        assert self.state is not None
        assert self.loop is not None
        version = self.reloader.status.version + 1
        self.state.pools = build_pools(config, self.loop, self.metrics, self.state.pools)
        self.state.table = self._table(config, version)  # the atomic swap
        self.metrics.table_version = version
        with contextlib.suppress(Exception):
            self.sink.reconfigure(config)
        if self.cluster is not None:
            self.cluster.applied(self.reloader.active_text)

    async def start(self, proxy_sock: socket.socket | None = None,
                    admin_sock: socket.socket | None = None, reuse_port: bool = False,
                    watch: bool = True) -> None:
        """Bind (unless sockets are given), start the sink, listeners and the file watcher."""
        self.loop = loop = asyncio.get_running_loop()
        config = self._initial
        self.state = ProxyState(self._table(config, 1),
                                build_pools(config, loop, self.metrics), self.metrics,
                                self.sink, loop)
        try:
            proxy_sock = proxy_sock or listen_socket(config.proxy.listen, reuse_port)
            if self.with_admin:
                admin_sock = admin_sock or listen_socket(config.admin.listen)
        except OSError as exc:
            raise StartupError(f"cannot listen: {exc.strerror or exc} (check [proxy].listen "
                               "and [admin].listen, or stop what uses the port)") from None
        await self.sink.start()
        self.server = await loop.create_server(protocol_factory(self.state, loop),
                                               sock=proxy_sock, backlog=1024)
        self.proxy_address = describe(proxy_sock)
        self.tasks.append(loop.create_task(watchdog(self.state)))
        if self.with_admin and admin_sock is not None and self.token:
            self.admin = AdminServer(self, self.token)
            await self.admin.start(admin_sock)
            self.admin_address = describe(admin_sock)
        if watch and config.proxy.reload_interval > 0:
            self.tasks.append(loop.create_task(self.reloader.watch(config.proxy.reload_interval)))
        self.reloader.install_sighup(loop)
        if self.group is not None and self.group.index != 0:
            self.tasks.append(loop.create_task(self._publish(self.group)))
        if self.with_admin:  # one driver per group: the admin worker's, on summed counters
            self.rollouts = self._driver()
            self.tasks.append(loop.create_task(self.rollouts.run()))
        if self.cluster is not None:
            self.tasks.append(loop.create_task(self.cluster.run()))
        self.ready = True

    async def _publish(self, group: WorkerGroup) -> None:
        while True:
            with contextlib.suppress(OSError):
                group.publish(self.metrics)
            await asyncio.sleep(PUBLISH_INTERVAL)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace``), stop the sink."""
        self.ready = False
        for task in self.tasks:
            task.cancel()
        if self.group is not None and self.group.index != 0:
            with contextlib.suppress(OSError):
                self.group.publish(self.metrics)
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), grace)
        if self.admin is not None:
            await self.admin.stop()
        if self.state is not None:
            for pool in self.state.pools.values():
                pool.close()
        with contextlib.suppress(Exception):
            await self.sink.stop()

    def reload(self, force: bool = False) -> tuple[bool, str]:
        """Re-read the routes file now (admin ``PUT /routes``, ``POST /reload``).

        Under ``--workers N`` the supervisor is SIGHUPed too and forwards the signal, so every
        worker serves the new table within milliseconds rather than at its next poll.
        """
        result = self.reloader.check(force=force)
        if self.group is not None:
            with contextlib.suppress(OSError):
                os.kill(self.group.supervisor, signal.SIGHUP)
        return result

    def status(self) -> dict[str, Any]:
        """What ``GET /status`` shows."""
        config = self.config
        reload_status = self.reloader.status
        return {
            "status": "error" if reload_status.last_result == "error" else "ok",
            "version": reload_status.version, "last_reload": reload_status.last_reload,
            "last_error": reload_status.last_error or None,
            "last_result": reload_status.last_result, "config": str(self.config_path),
            "listen": self.proxy_address, "admin": self.admin_address, "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "routes": len(config.routes), "upstreams": {n: u.url for n, u in
                                                        config.upstreams.items()},
            "warnings": list(config.warnings), "shadow_sink": type(self.sink).__name__,
            "cluster": self.cluster.status() if self.cluster is not None else None,
        }

    def routes_view(self) -> dict[str, Any]:
        """What ``GET /routes`` shows."""
        return {"version": self.reloader.status.version,
                "routes": [route_record(r) for r in self.config.routes]}

    def total_metrics(self) -> Metrics:
        """This worker's counters, plus every sibling's last snapshot under ``--workers``."""
        return self.metrics if self.group is None else self.group.collect(self.metrics)[0]

    def _driver(self) -> RolloutDriver:
        if self.rollouts is None:
            self.rollouts = RolloutDriver(self) if self.cluster is None else \
                ClusterRolloutDriver(self, self.cluster)
        return self.rollouts

    async def rollout_action(self, name: str, action: str, who: str) -> dict[str, Any]:
        """Admin ``POST /rollouts/NAME``: start, pause, resume, promote or abort."""
        return await self._driver().act(name, action, who)

    def rollouts_view(self, name: str | None = None) -> dict[str, Any]:
        """Admin ``GET /rollouts[/NAME]``."""
        return self._driver().view(name)

    def evidence_view(self, seconds: float) -> dict[str, Any]:
        """Admin ``GET /evidence?window=S``: each route's sides over the last S seconds."""
        ring = self._driver().ring
        return {"window_seconds": seconds,
                "routes": {r.name: ring.window(r.name, seconds).as_json()
                           for r in self.config.routes}}

    def meter_view(self, report: dict[str, Any] | None = None,
                   step: float = 60.0) -> dict[str, Any]:
        """Admin ``GET /meter``: service share now and over time, and route ownership."""
        ring = self._driver().ring
        routes = self.config.routes
        error = None
        if report is None and (path := self.config.admin.report_path(self.config_path)):
            report, error = read_report(path)  # [admin] report: the same file status reads
        latest = {r.name: ring.window(r.name, 300.0) for r in routes}
        served = sum(w.service.requests for w in latest.values())
        total = served + sum(w.monolith.requests for w in latest.values())
        return {
            "overall": served / total if total else None,
            "routes": {r.name: (r.mode, latest[r.name].service_share if
                                latest[r.name].monolith.requests +
                                latest[r.name].service.requests else None) for r in routes},
            "ownership": ownership({r.name: r.mode for r in routes}, report,
                                   {r.name: r.match for r in routes}),
            "series": [[t, dict(s)] for t, s in ring.share_series(step, [r.name
                                                                      for r in routes])],
        } | ({"report_error": error} if error else {})

    def meter_html(self) -> str:
        """The dashboard's meter page (``GET /dashboard/meter``)."""
        view = self.meter_view(step=self._meter_step())
        return meter_page([(t, s) for t, s in view["series"]], view)

    def _meter_step(self) -> float:
        ring = self._driver().ring
        span = ring.times[-1] - ring.times[0] if len(ring.times) > 1 else 0.0
        return max(1.0, span / 60)

    def meter_prometheus(self) -> str:
        """The meter and the rollouts as Prometheus gauges."""
        view = self.meter_view(step=3600.0)
        out = ["# HELP strangler_service_share Share of a route's requests the service "
               "answered over the last 5 minutes.", "# TYPE strangler_service_share gauge"]
        for name, (_mode, share) in sorted(view["routes"].items()):
            if share is not None:
                out.append(f'strangler_service_share{{route="{name}"}} {share:.6f}')
        out += ["# HELP strangler_service_share_overall Share of all routed requests the "
                "services answered over the last 5 minutes.",
                "# TYPE strangler_service_share_overall gauge",
                f"strangler_service_share_overall {view['overall'] or 0.0:.6f}",
                "# HELP strangler_routes_owned_ratio Share of routes in service mode.",
                "# TYPE strangler_routes_owned_ratio gauge",
                f"strangler_routes_owned_ratio {view['ownership']['routes']['share']}",
                "# HELP strangler_rollout_step Current step (1-based) of a route's rollout.",
                "# TYPE strangler_rollout_step gauge"]
        states = self._driver().states
        out += [f'strangler_rollout_step{{route="{n}",status="{s.status}"}} {s.step + 1}'
                for n, s in sorted(states.items())]
        return "\n".join(out) + "\n"

    def metrics_text(self) -> str:
        """Our Prometheus text (summed over the workers) plus the shadow sink's."""
        if self.group is None:
            text = self.metrics.render()
        else:
            total, reporting = self.group.collect(self.metrics)
            text = total.render() + (
                "# HELP strangler_workers_reporting Workers whose counters /metrics includes.\n"
                "# TYPE strangler_workers_reporting gauge\n"
                f"strangler_workers_reporting {reporting}\n"
                "# HELP strangler_workers Worker processes configured (--workers).\n"
                "# TYPE strangler_workers gauge\n"
                f"strangler_workers {self.group.count}\n")
        with contextlib.suppress(Exception):
            text += self.meter_prometheus()
        with contextlib.suppress(Exception):
            text += self.sink.prometheus_text()
        return text
