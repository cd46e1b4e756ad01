"""Record with mitmproxy, replay flow and HAR files to the service, compare and store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from shadow_testkit import JsonServer, monolith_and_service, routes_toml

from strangler.cli import cli, main
from strangler_proxy.shadow import open_store
from strangler_proxy.shadow.replay import ReplayError, load_exchanges, record, record_command
from strangler_proxy.shadow_marker import check_marker

Server = JsonServer


@pytest.fixture
def shop() -> Iterator[tuple[Server, Server]]:
    with monolith_and_service() as pair:
        yield pair


def shadow_marks(server: Server) -> list[tuple[str, str, str | None]]:
    """(method, path, X-Strangler-Shadow) of each request the server got."""
    return [(m, p, headers.get("X-Strangler-Shadow")) for m, p, headers, _ in server.seen]


def write_config(tmp_path: Path, monolith: Server, service: Server) -> Path:
    path = tmp_path / "strangler.toml"
    path.write_text(routes_toml("diffs.sqlite3", monolith.url, service.url,
                                shadow={"timeout": 2.0, "marker_secret": "s"}))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"recorder exited early: {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("recorder did not start listening")


@pytest.mark.slow
def test_record_then_replay_end_to_end(tmp_path: Path, shop: tuple[Server, Server]) -> None:
    monolith, service = shop
    flows = tmp_path / "traffic.flows"
    port = free_port()
    # given `strangler record` in front of the monolith
    recorder = subprocess.Popen(
        [sys.executable, "-m", "strangler.cli", "record", "--upstream", monolith.url,
         "--listen", f"127.0.0.1:{port}", "--out", str(flows)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_port(port, recorder)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            for path in ("/api/products/1/", "/api/products/2/", "/about/"):
                assert client.get(path).json()["price"] == "9.50"
            assert client.post("/api/products/", json={"name": "x"}).status_code == 201
        # when the user stops it with Ctrl-C
        recorder.send_signal(signal.SIGINT)
        assert recorder.wait(timeout=20) == 0
    finally:
        if recorder.poll() is None:
            os.killpg(recorder.pid, signal.SIGKILL)
            recorder.wait(timeout=5)
        if recorder.stderr is not None:
            recorder.stderr.close()
    assert len(list(load_exchanges(flows))) == 4
    monolith.seen.clear()
    # then replaying the flow file to the service compares and stores
    config = write_config(tmp_path, monolith, service)
    result = CliRunner().invoke(cli, ["replay", str(flows), "--route", "products", "--config",
                                      str(config), "--against-monolith", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["replayed"] == 2
    assert summary["verdicts"] == {"mismatch": 2}
    assert summary["skipped"] == {"other_route": 1, "unsafe_method": 1}
    assert sorted(p for _, p, _ in shadow_marks(service)) == ["/api/products/1/",
                                                              "/api/products/2/"]
    assert all(check_marker(mark, "s", "GET", path) == ""
               for _, path, mark in shadow_marks(service) + shadow_marks(monolith))
    assert [m for m, _, _ in shadow_marks(monolith)] == ["GET", "GET"]  # writes never go back
    store = open_store(str(tmp_path / "diffs.sqlite3"))
    try:
        records = store.records(route="products")
    finally:
        store.close()
    assert {(r.origin, r.kind, r.verdict) for r in records} == {
        ("replay", "service", "mismatch"), ("replay", "self", "match")}
    assert records[0].differences[0]["path"] == "$.price"
    report = CliRunner().invoke(cli, ["shadow", "report", "--config", str(config), "--json"])
    assert json.loads(report.output)["routes"][0]["compared"] == 2


def har(entries: int) -> dict[str, object]:
    return {"log": {"version": "1.2", "entries": [{
        "time": 12.5,
        "request": {"method": "GET", "url": f"http://shop.example/api/products/{i}/?x=1",
                    "headers": [{"name": ":authority", "value": "shop.example"},
                                {"name": "Accept", "value": "application/json"}]},
        "response": {"status": 200, "headers": [
            {"name": "Content-Type", "value": "application/json"},
            {"name": "Content-Encoding", "value": "gzip"}],
            "content": {"text": json.dumps({"id": f"/api/products/{i}/?x=1",
                                            "price": 9.5})}}}
        for i in range(entries)]}}


def test_har_replay_is_paced_and_bounded(tmp_path: Path, shop: tuple[Server, Server]) -> None:
    monolith, service = shop
    har_file = tmp_path / "traffic.har"
    har_file.write_text(json.dumps(har(12)))
    config = write_config(tmp_path, monolith, service)
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["replay", str(har_file), "--route", "products",
                                      "--config", str(config), "--rate", "20", "--limit", "10",
                                      "--json"])
    elapsed = time.monotonic() - start
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["replayed"], summary["skipped"]) == (10, {"limit": 2})
    assert summary["verdicts"] == {"match": 10}  # the HAR answer matches the service
    assert elapsed >= 0.45  # 10 requests at 20/s: the last starts at 0.45 s
    # the first 10 entries, each with its query (up to 4 run at once: arrival order is free)
    assert sorted(seen[1] for seen in service.seen) == sorted(
        f"/api/products/{i}/?x=1" for i in range(10))
    assert monolith.seen == []


def test_unreadable_flow_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[
        str]) -> None:
    bad = tmp_path / "bad.flows"
    bad.write_bytes(b"this is not a flow file")
    with pytest.raises(ReplayError, match="not a mitmproxy flow file"):
        list(load_exchanges(bad))
    (tmp_path / "strangler.toml").write_text('[admin]\ntoken = "t"\n[upstreams.monolith]\n'
                                             'url = "http://127.0.0.1:9"\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(bad), "--route", "x", "--config", str(tmp_path / "strangler.toml")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "strangler: error:" in err


def test_bad_har_entry_names_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "bad.har"
    bad.write_text(json.dumps({"log": {"entries": [{"request": {"method": "GET"}}]}}))
    with pytest.raises(ReplayError, match=r"log.entries\[0\]"):
        list(load_exchanges(bad))


def test_record_command_validates_its_arguments() -> None:
    with pytest.raises(ReplayError, match="--upstream"):
        record_command("ftp://x", "127.0.0.1:1", "f")
    with pytest.raises(ReplayError, match="--listen"):
        record_command("http://127.0.0.1:1", "nope", "f")


def test_har_whose_entries_are_not_a_list_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.har"
    bad.write_text(json.dumps({"log": {"entries": 5}}))
    with pytest.raises(ReplayError, match="log.entries is a int, not a list"):
        list(load_exchanges(bad))


def test_record_refuses_a_busy_port_or_an_unwritable_file_before_starting(
        tmp_path: Path) -> None:
    # given a port someone listens on
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ReplayError, match=f"127.0.0.1:{port}: cannot listen there"):
            record("http://127.0.0.1:9", f"127.0.0.1:{port}", str(tmp_path / "f.flows"), 1.0)
    free = free_port()
    with pytest.raises(ReplayError, match="does not exist or is not writable"):
        record("http://127.0.0.1:9", f"127.0.0.1:{free}", str(tmp_path / "no" / "f.flows"), 1.0)
    with pytest.raises(ReplayError, match="needs a fixed port"):
        record("http://127.0.0.1:9", "127.0.0.1:0", str(tmp_path / "f.flows"), 1.0)
    # then nothing was written
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_record_writes_the_flow_file_only_when_it_stops(tmp_path: Path) -> None:
    out = tmp_path / "quiet.flows"
    announced: list[bool] = []
    status = record("http://127.0.0.1:9", f"127.0.0.1:{free_port()}", str(out), 0.5,
                    lambda: announced.append(out.exists()))
    assert (status, announced) == (0, [False])  # announced once listening, file not yet there
    assert out.exists()
    assert not (tmp_path / "quiet.flows.part").exists()
    assert list(load_exchanges(out)) == []
