"""Live flips and reloads under sustained load: nothing dropped, one side per response."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from proxy_harness import Running, answer_with, running_proxy

from strangler_proxy.control import apply_route_change
from strangler_proxy.control.reload import Reloader

ROUTES = """
[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/" }
mode = "monolith"   # flipped by the test
target = "catalog"
"""


class Load:
    """Client threads hammering the proxy on keep-alive connections, recording every answer."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.stop = threading.Event()
        self.results: list[tuple[int, str, str]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=5) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    got = client.get(f"{self.url}/api/products/{index}-{n}")
                    item = (got.status_code, got.text, got.headers.get("x-strangler-route", ""))
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors.append(repr(exc))
                    continue
                with self.lock:
                    self.results.append(item)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def _handlers() -> dict:  # type: ignore[type-arg]
    return {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}


def _flip(run: Running, mode: str) -> None:
    apply_route_change(run.config_path, "catalog", mode, None, force=True)
    ok, message = run.loop.call(lambda: run.app.reload(force=True))
    assert ok, message


def test_100_flips_under_load_drop_nothing_and_each_answer_has_one_side(tmp_path: Path) -> None:
    with running_proxy(tmp_path, _handlers(), ROUTES) as run, Load(run.url) as load:
        time.sleep(0.1)
        for i in range(100):
            _flip(run, "service" if i % 2 == 0 else "monolith")
            time.sleep(0.01)
        time.sleep(0.1)
        load.stop.set()
        for thread in load.threads:
            thread.join(10)
        served = {n: len(u.requests) for n, u in run.upstreams.items()}
        version = run.app.reloader.status.version
    assert load.errors == []
    assert all(status == 200 for status, _, _ in load.results)
    sides = Counter(body for _, body, _ in load.results)
    assert set(sides) == {"monolith", "catalog"}, sides
    # the header names the side whose body came back: no mixed or duplicated answers
    assert all(header == f"catalog;target={body}" for _, body, header in load.results)
    assert sum(served.values()) == len(load.results)
    assert served == {"monolith": sides["monolith"], "catalog": sides["catalog"]}
    assert version == 101
    assert len(load.results) > 300


def _wait_status(run: Running, done: Callable[[dict[str, Any]], bool],
                 timeout: float = 10.0) -> dict[str, Any]:
    """Poll the proxy's status until ``done`` holds (bounded: fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = run.loop.call(run.app.status)
        if done(status):
            return status
        assert time.monotonic() < deadline, f"status never reached the expected state: {status}"
        time.sleep(0.02)


def _wait_more_results(load: Load, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(load.results) < count:
        assert time.monotonic() < deadline, f"load stalled at {len(load.results)} answers"
        time.sleep(0.01)


def test_broken_file_under_load_keeps_serving_the_last_good_table(tmp_path: Path) -> None:
    with running_proxy(tmp_path, _handlers(), ROUTES) as run, Load(run.url) as load:
        _flip(run, "service")
        # answers before the flip came from the monolith, and each client thread may have had
        # one request in flight on the old table: the service side is checked from here on
        flipped_at = len(load.results) + len(load.threads)
        good = run.config_path.read_text()
        _wait_more_results(load, flipped_at + 10)
        run.config_path.write_text(good.replace('target = "catalog"', 'target = "nowhere"'))
        status = _wait_status(run, lambda s: bool(s["last_error"]))  # the watcher saw it
        _wait_more_results(load, len(load.results) + 10)  # served while the file is broken
        bad_count = len(load.results)
        run.config_path.write_text(good.replace('mode = "service"', 'mode = "monolith"'))
        fixed = _wait_status(run, lambda s: s["version"] >= 3)
        _wait_more_results(load, len(load.results) + 10)  # answers from the fixed table
        load.stop.set()
        for thread in load.threads:
            thread.join(10)
        results = list(load.results)
    assert load.errors == []
    assert "routes[0].target: 'nowhere' is not an upstream" in status["last_error"]
    assert status["version"] == 2
    served_while_broken = results[flipped_at:bad_count]
    assert len(served_while_broken) >= 10
    wrong = [r for r in served_while_broken if r != (200, "catalog", "catalog;target=catalog")]
    assert wrong == [], f"{len(wrong)} of {len(served_while_broken)} answers left the good table"
    assert fixed["last_error"] is None
    assert fixed["version"] == 3
    assert results[-1][1] == "monolith"


GOOD = """
[admin]
token = "secret"

[upstreams.monolith]
url = "http://127.0.0.1:9"
"""


def test_the_watcher_waits_until_a_file_being_written_has_settled(tmp_path: Path) -> None:
    """A poll that catches an in-place write half done (empty here) is not a reload error."""
    path = tmp_path / "strangler.toml"
    path.write_text(GOOD)
    applied: list[object] = []
    counted: list[str] = []
    reloader = Reloader(path, applied.append, counted.append, GOOD)
    new = GOOD + '\n[proxy]\nlisten = "127.0.0.1:8080"\n'
    # what successive reads of the file see: the writer truncated it, then finished the write
    seen = itertools.chain(["", new], itertools.repeat(new))

    def read() -> str | None:
        text = next(seen)
        path.write_text(text)
        return text

    reloader._read = read  # type: ignore[method-assign]

    async def two_polls() -> None:
        task = asyncio.create_task(reloader.watch(0.01))
        for _ in range(200):  # bounded: 2 s
            if applied:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(two_polls())
    assert counted == ["ok"], counted
    assert reloader.status.last_error == ""
    assert reloader.status.version == 2
    assert len(applied) == 1


def test_a_file_that_stays_broken_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "strangler.toml"
    path.write_text(GOOD)
    counted: list[str] = []
    reloader = Reloader(path, lambda config: None, counted.append, GOOD)
    path.write_text("")

    async def polls() -> None:
        task = asyncio.create_task(reloader.watch(0.01))
        await asyncio.sleep(0.3)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(polls())
    assert counted == ["error"]
    assert "needs [upstreams.monolith]" in reloader.status.last_error
    assert reloader.status.version == 1


def test_status_returns_to_ok_when_a_refused_file_is_reverted_or_fixed(tmp_path: Path) -> None:
    # given a proxy whose routes file was broken and refused
    path = tmp_path / "strangler.toml"
    path.write_text(GOOD)
    reloader = Reloader(path, lambda config: None, lambda outcome: None, GOOD)
    path.write_text(GOOD + "\nbroken = \n")
    assert reloader.check()[0] is False
    assert reloader.status.last_result == "error"
    # when the user puts the good text back
    path.write_text(GOOD)
    reloader.check()
    # then the status is ok again, with no error left
    assert (reloader.status.last_result, reloader.status.last_error) == ("ok", "")
    # and the same after a refused file is fixed with a new good text
    path.write_text(GOOD + "\nbroken = \n")
    reloader.check()
    path.write_text(GOOD + "\n# fixed\n")
    assert reloader.check()[0] is True
    assert (reloader.status.last_result, reloader.status.last_error) == ("ok", "")
