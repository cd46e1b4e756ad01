"""Flip a route in the routes file: a round-trip TOML edit that keeps comments and layout.

The same path serves ``strangler routes set`` and the admin ``PUT /routes/NAME``::

    read text -> edit with tomlkit -> validate the result -> gate -> write atomically -> audit

A change that would make the file invalid is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import tomlkit

from strangler_proxy.config import MODES, ProxyConfig, load_config, parse_config
from strangler_proxy.control.audit import (
    AuditRecord,
    append_audit,
    current_user,
    now_iso,
    read_audit,
)
from strangler_proxy.errors import ConfigError, RouteEditError
from strangler_proxy.export.apply import stage_export
from strangler_proxy.shadow import check_promotion, parse_since
from strangler_proxy.write_atomic import write_atomic

PROMOTIONS = ("canary", "service")


@dataclass(frozen=True, slots=True)
class RouteChange:
    """What a flip changed (``old`` and ``new`` hold mode and percent)."""

    route: str
    old: dict[str, Any]
    new: dict[str, Any]
    forced: bool = False
    gate_reason: str = ""
    since: str | None = None  # the gate's evidence window (ISO start), when one was given
    engine: str = ""  # what the exported engine ([export]) did: "wrote ...; reloaded nginx"

    @property
    def stale_data_warning(self) -> str:
        """One line when traffic goes back from the service to the monolith, else ``""``.

        While the service served the route, the writes landed in the service's database;
        the monolith's copy is only as fresh as the reverse sync made it.
        """
        if self.old.get("mode") in PROMOTIONS and self.new.get("mode") in ("monolith",
                                                                          "shadow"):
            return (f"warning: {self.route} goes back to the monolith, whose copy of this "
                    "data may be stale: run `strangler reconcile` before relying on it")
        return ""

    @property
    def changed(self) -> bool:
        """False when the route already had the requested mode and percent."""
        return self.old != self.new

    def describe(self) -> str:
        """``catalog: monolith -> canary 10%``."""
        return f"{self.route}: {_show(self.old)} -> {_show(self.new)}"


def _show(state: dict[str, Any]) -> str:
    if state.get("mode") == "canary":
        percent = state.get("percent", 0)
        return f"canary {int(percent) if float(percent).is_integer() else percent}%"
    return str(state.get("mode"))


def edit_route_text(text: str, name: str, mode: str | None,
                    percent: float | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Return the file text with route ``name`` set to ``mode``/``percent``, and old/new state.

    Only the touched values change; every comment and blank line stays where it was.
    """
    if mode is not None and mode not in MODES:
        raise RouteEditError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    if percent is not None and not 0 <= percent <= 100:
        raise RouteEditError(f"--percent {percent} is not between 0 and 100")
    doc = tomlkit.parse(text)
    routes = doc.get("routes", [])
    table = next((r for r in routes if r.get("name") == name), None)
    if table is None:
        known = ", ".join(str(r.get("name")) for r in routes) or "none"
        raise RouteEditError(f"no route named {name!r} (routes: {known}); "
                             "see `strangler routes list`")
    old = {"mode": str(table.get("mode", "monolith")), "percent": _num(table.get("percent", 0))}
    new_mode = mode or old["mode"]
    if percent is not None and new_mode != "canary":
        raise RouteEditError(
            f"--percent applies only to canary mode, and {name} would be {new_mode}: the "
            f"share is ignored in other modes; add --mode canary to move that share of "
            "users, or drop --percent")
    if new_mode == "canary" and percent is None and "percent" not in table:
        raise RouteEditError("canary needs --percent N (the share of users sent to the service)")
    table["mode"] = new_mode
    if percent is not None:
        table["percent"] = int(percent) if float(percent).is_integer() else percent
    new = {"mode": new_mode, "percent": _num(table.get("percent", 0))}
    return tomlkit.dumps(doc), old, new


def _num(value: Any) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() else number


def is_promotion(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when a change sends more traffic to the service (the gate applies)."""
    if new["mode"] not in PROMOTIONS:
        return False
    if new["mode"] != old["mode"]:
        return not (old["mode"] == "service" and new["mode"] == "canary")
    return bool(new["mode"] == "canary" and new["percent"] > old["percent"])


class Verdict(Protocol):
    """What a gate answers (``shadow.gate.GateDecision``)."""

    @property
    def allowed(self) -> bool: ...
    @property
    def reason(self) -> str: ...


GateCheck = Callable[..., Verdict]  # (config, route, new_mode[, since]) -> a Verdict


def default_gate() -> GateCheck | None:
    """The shadow side's promotion gate."""
    return check_promotion


def apply_route_change(config_path: str | Path, name: str, mode: str | None,
                       percent: float | None, reason: str = "", force: bool = False,
                       who: str | None = None, via: str = "cli",
                       gate: GateCheck | None = None,
                       since: str | None = None) -> RouteChange:
    """Edit, validate, gate, write atomically and audit one route flip.

    ``since`` (``30m``, ``2h``, ``7d`` or an ISO-8601 time) is the gate's evidence window:
    only shadow exchanges recorded since then count. The window is kept in the audit record.

    Raises RouteEditError (unknown route, gate refused) or ConfigError (result invalid); the
    file is untouched then. A forced promotion past a refusing gate is written and audited
    with ``forced: true``.
    """
    path = Path(config_path)
    since_at = _parse_since(since)
    config = load_config(path)
    text = path.read_text(encoding="utf-8")
    new_text, old, new = edit_route_text(text, name, mode, percent)
    if via != "cutover" and old["mode"] == "service" and new["mode"] != "service":
        _refuse_if_cut_over(path, name)
    try:
        new_config = parse_config(new_text, source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"the change would make the file invalid: {exc}") from None
    gate_reason, forced = _check_gate(gate or default_gate(), config, new_config, name, old,
                                      new, force, since_at)
    change = RouteChange(name, old, new, forced=forced, gate_reason=gate_reason,
                         since=_since_iso(since_at))
    if not change.changed:
        return change
    # An exported engine ([export]) must accept the new config before the flip is written.
    staged = stage_export(new_config)
    write_atomic(path, new_text)
    append_audit(path, AuditRecord(when=now_iso(), who=who or current_user(), route=name,
                                   old=old, new=new, reason=reason, forced=forced, via=via,
                                   since=change.since))
    return replace(change, engine=staged.install()) if staged is not None else change


def cut_over_at(config_path: str | Path, name: str) -> str | None:
    """When route ``name``'s tables were cut over to the service and not moved back, or None.

    ``strangler cutover`` flips its routes through this editor with ``via="cutover"``; the
    last such audit record says where ownership is (the undo flips back the same way).
    """
    flips = [r for r in read_audit(config_path)
             if r.get("route") == name and r.get("via") == "cutover"]
    if flips and dict(flips[-1].get("new") or {}).get("mode") == "service":
        return str(flips[-1].get("when", "?"))
    return None


def _refuse_if_cut_over(path: Path, name: str) -> None:
    """A route whose tables the service owns goes back only with the cutover's undo."""
    when = cut_over_at(path, name)
    if when is not None:
        raise RouteEditError(
            f"{name}: its tables were cut over to the service ({when}) and the monolith's "
            "writes to them are fenced, so sending its traffic back would fail or lose "
            "writes; run `strangler cutover CONTEXT --undo`, which replays the service's "
            "changes into the monolith and then flips this route")


def _check_gate(gate: GateCheck | None, config: ProxyConfig, new_config: ProxyConfig,
                name: str, old: dict[str, Any], new: dict[str, Any],
                force: bool, since: float | None = None) -> tuple[str, bool]:
    if not is_promotion(old, new):
        return "", False
    if gate is None:
        return "no promotion gate installed", False
    decision = (gate(config, name, new["mode"]) if since is None
                else gate(config, name, new["mode"], since))
    if decision.allowed:
        return decision.reason, False
    why = decision.reason
    if not force:
        raise RouteEditError(f"the promotion gate refused {name} -> {new['mode']}: {why} "
                             "(gather more shadow evidence; after a fix, count only newer "
                             "evidence with --since; or pass --force, which is audited)")
    return why, True


def _parse_since(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    return parse_since(text)


def _since_iso(since: float | None) -> str | None:
    if since is None:
        return None
    return datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
