"""Hot reload of the routes file: poll for changes, SIGHUP, or an admin call.

Validate first, then swap; a bad file never replaces a good one. The route table is one
immutable object that connections read per request, so the swap is a single assignment and
in-flight requests finish on the table they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from strangler_proxy.config import ProxyConfig, parse_config
from strangler_proxy.control.audit import now_iso
from strangler_proxy.errors import ConfigError


@dataclass(slots=True)
class ReloadStatus:
    """What the admin ``/status`` shows about reloads."""

    version: int = 1
    last_reload: str = ""
    last_error: str = ""
    last_result: str = "initial"


class Reloader:
    """Reads the routes file when it changed and hands a validated config to ``apply``."""

    def __init__(self, path: str | Path, apply: Callable[[ProxyConfig], None],
                 count: Callable[[str], None], initial_text: str) -> None:
        self.path = Path(path)
        self.apply = apply
        self.count = count
        self.seen_text = self.active_text = initial_text
        self.status = ReloadStatus(last_reload=now_iso())

    def check(self, force: bool = False, text: str | None = None) -> tuple[bool, str]:
        """Reload when the text changed (or ``force``); return (ok, message).

        ``text`` is the file's content when the caller has just read it (the watcher).
        """
        if text is None:
            try:
                text = self.path.read_text(encoding="utf-8")
            except OSError as exc:
                return self._failed(text=None, message=f"{self.path}: cannot read: {exc}")
        if text == self.active_text:
            if self.seen_text != text:  # a bad edit was reverted: nothing to apply
                self.seen_text = text
                self.status.last_error = ""
                self.status.last_result = "ok"  # the file is good again: /status says so
            return True, "unchanged"
        if text == self.seen_text and not force:
            return False, self.status.last_error  # the bad file seen before, logged once
        try:
            config = parse_config(text, source=str(self.path))
        except ConfigError as exc:
            return self._failed(text, str(exc))
        self.seen_text = self.active_text = text
        self.apply(config)
        self.status.version += 1
        self.status.last_reload = now_iso()
        self.status.last_error = ""
        self.status.last_result = "ok"
        self.count("ok")
        return True, f"route table version {self.status.version} active"

    def _failed(self, text: str | None, message: str) -> tuple[bool, str]:
        if text is not None:
            self.seen_text = text  # log a bad file once, not on every poll
        self.status.last_error = message
        self.status.last_result = "error"
        self.count("error")
        sys.stderr.write(f"strangler proxy: reload refused, keeping route table version "
                         f"{self.status.version}: {message}\n")
        return False, message

    async def watch(self, interval: float) -> None:
        """Poll the file every ``interval`` seconds until cancelled.

        An editor or ``echo > file`` that writes in place lets a poll see a half-written file
        (often empty). A changed file is therefore read twice, ``settle`` apart, and acted on
        only when both reads agree; one still being written waits for the next poll, so a
        write in progress never shows up as a reload error.
        """
        settle = min(0.05, interval / 2)
        while True:
            await asyncio.sleep(interval)
            first = self._read()
            if first is not None and first not in (self.active_text, self.seen_text):
                await asyncio.sleep(settle)
                if self._read() != first:
                    continue
            self.check(text=first)  # None (unreadable): check reads it and reports why

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError:
            return None

    def install_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP (where signals can be handled)."""
        import signal

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: self.check(force=True))
