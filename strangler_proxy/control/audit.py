"""The audit trail of route flips: one JSON object per line in ``<config>.audit.jsonl``."""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who changed which route from what to what, when and why."""

    when: str
    who: str
    route: str
    old: dict[str, Any]
    new: dict[str, Any]
    reason: str = ""
    forced: bool = False
    via: str = "cli"  # "cli" or "admin"
    since: str | None = None  # the gate's evidence window (ISO start), when one was given


def audit_path(config_path: str | Path) -> Path:
    """``strangler.toml`` -> ``strangler.toml.audit.jsonl`` next to it."""
    path = Path(config_path)
    return path.with_name(path.name + ".audit.jsonl")


def current_user() -> str:
    """The OS user running the command (``unknown`` when it cannot be told)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def append_audit(config_path: str | Path, record: AuditRecord) -> Path:
    """Append ``record`` to the config's audit file (one write, so lines never interleave)."""
    path = audit_path(config_path)
    line = (json.dumps(asdict(record), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path


def read_audit(config_path: str | Path) -> list[dict[str, Any]]:
    """All audit records of a config, oldest first (empty when none)."""
    path = audit_path(config_path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
