"""Runs every shell block of docs/walkthrough.md in order, so the walkthrough cannot rot.

The doc's convention (see its introduction):
- a ```sh block is commands, run in one bash session (so `cd`, `export`, shell functions
  and background jobs carry over from block to block, as they do for a reader in one
  terminal);
- a ```output block right after it lists lines the reader will see: each non-empty line
  must appear in that block's output (``...`` lines are skipped).

The walkthrough patches the code (the fix of the deliberate discrepancy, the removal of dead
code), so it never runs in this checkout: the test copies the repository's files
(``git ls-files -co --exclude-standard``, so no .venv, caches or databases) into a temporary
directory and runs there with ``PYTHONPATH`` pointing at the copy, which makes the copy's
packages win over the editable install (checked before the run). The test changes only what
a machine must: the demo's fixed ports (8000, 8001, 8080, 8081) become free ports from the
OS, and sizes shrink through the environment variables the doc names
(STRANGLER_WALKTHROUGH_*). Every process the script started is killed at the end: the
script's process group, and any process that carries this run's marker in its environment
(in case one of them started a session of its own).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strangler_proxy import native

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "walkthrough.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
DEMO_PORTS = (8000, 8001, 8080, 8081)
PACKAGES = ("analysis", "extracted", "legacy_monolith", "strangler", "strangler_proxy")
MARKER = "STRANGLER_WALKTHROUGH_RUN"


@dataclass(frozen=True)
class Block:
    """One shell block of the doc and the output lines it promises."""

    index: int
    commands: str
    expected: tuple[str, ...]


def parse_blocks(text: str) -> list[Block]:
    """Pair each ```sh block with the ```output block that follows it, if any."""
    fences = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    blocks: list[Block] = []
    for i, (lang, body) in enumerate(fences):
        if lang != "sh":
            continue
        following = fences[i + 1] if i + 1 < len(fences) else ("", "")
        expected: tuple[str, ...] = ()
        if following[0] == "output":
            expected = tuple(
                line.strip() for line in following[1].splitlines()
                if line.strip() and line.strip() != "..."
            )
        blocks.append(Block(len(blocks), body, expected))
    return blocks


def test_parse_blocks_pairs_commands_with_their_output() -> None:
    text = "x\n```sh\necho hi\n```\n\n```output\nhi\n...\n```\n```sh\ntrue\n```\n"
    assert parse_blocks(text) == [Block(0, "echo hi\n", ("hi",)), Block(1, "true\n", ())]


def free_ports(n: int) -> list[int]:
    """N distinct ports the OS just handed out on 127.0.0.1."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def with_ports(text: str, mapping: dict[int, int]) -> str:
    """Replace each demo port that stands alone as a number (not 18000, not 0.8000)."""
    for old, new in mapping.items():
        text = re.sub(rf"(?<![\d.]){old}(?!\d)", str(new), text)
    return text


def test_with_ports_replaces_only_whole_port_numbers() -> None:
    text = "127.0.0.1:8000 http://127.0.0.1:8080/x 18000 80001 0.8000 :8001"
    assert with_ports(text, {8000: 1, 8001: 2, 8080: 3}) == (
        "127.0.0.1:1 http://127.0.0.1:3/x 18000 80001 0.8000 :2")


def copy_repository(dest: Path) -> Path:
    """Copy the files git knows about (tracked or not ignored) into DEST; return DEST."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
        capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if not source.is_file():  # deleted in the work tree but still in the index
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    # the compiled hot path `make install` built (ignored by git): the copy runs what users run
    for source in [*native.extensions(), native.MANIFEST]:
        if source.exists():
            shutil.copy2(source, dest / source.relative_to(ROOT))
    return dest


def copy_wins(copy: Path, env: dict[str, str]) -> dict[str, str]:
    """Where each package is imported from when the walkthrough runs in COPY."""
    code = ("import importlib\n"
            f"for n in {PACKAGES!r}: print(n, importlib.import_module(n).__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def _marked_pids(marker: str) -> Iterator[int]:
    """Processes whose environment carries this run's marker (ours, by construction)."""
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            yield int(entry.name)


def kill_everything(proc: subprocess.Popen[str], marker: str) -> None:
    """SIGKILL the script's process group and every process that carries our marker."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    for _ in range(5):  # a dying parent may still spawn; look again until nothing is left
        found = list(_marked_pids(marker))
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not found:
            return
        time.sleep(0.2)


def patched_files() -> dict[Path, bytes]:
    """The files of this checkout that the walkthrough's patches change, with their bytes."""
    names = set()
    for patch in (ROOT / "docs" / "walkthrough").glob("*.patch"):
        names |= set(re.findall(r"^\+\+\+ b/(\S+)$", patch.read_text(), flags=re.M))
    return {ROOT / n: (ROOT / n).read_bytes() for n in sorted(names) if (ROOT / n).is_file()}


MARK = "=== strangler-walkthrough block {} ==="


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if not DOC.exists():
        pytest.fail("docs/walkthrough.md is missing")
    blocks = parse_blocks(DOC.read_text())
    assert len(blocks) >= 8, "the walkthrough should carry a reader through the migration"
    copy = copy_repository(tmp_path / "repo")
    mapping = dict(zip(DEMO_PORTS, free_ports(len(DEMO_PORTS)), strict=True))
    marker = uuid.uuid4().hex
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(copy),
        "PYTHONDONTWRITEBYTECODE": "1",
        "STRANGLER_WALKTHROUGH_WORK": str(tmp_path / "work"),
        "STRANGLER_WALKTHROUGH_REQUESTS": "300",
        MARKER: marker,
    }
    for name in ("DATABASE_URL", "CATALOG_DATABASE_URL", "STRANGLER_QUERY_LOG",
                 "STRANGLER_CONFIG", "STRANGLER_ADMIN_TOKEN"):
        env.pop(name, None)  # the walkthrough runs on the embedded default, SQLite
    # given: the copy's packages win over the editable install of this checkout
    where = copy_wins(copy, env)
    assert all(Path(f).is_relative_to(copy) for f in where.values()), where
    script = ["set -euo pipefail", f"cd {copy}"]
    for block in blocks:
        script += [f"echo '{MARK.format(block.index)}'", with_ports(block.commands, mapping)]
    script.append(f"echo '{MARK.format('end')}'")
    before = patched_files()
    assert before, "docs/walkthrough/*.patch should name the files they change"
    # when: the doc's commands run, in order, in one shell
    proc = subprocess.Popen(
        ["bash", "-c", "\n".join(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, cwd=copy, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=380)
        time.sleep(0.5)  # the doc's last block waits for its jobs; give the OS a moment
        left_running = [pid for pid in _marked_pids(marker) if pid != proc.pid]
    except subprocess.TimeoutExpired:
        kill_everything(proc, marker)
        output, _ = proc.communicate()
        pytest.fail(f"the walkthrough did not finish in time\n--- output ---\n{output[-4000:]}")
    finally:
        kill_everything(proc, marker)
    (tmp_path / "walkthrough.log").write_text(output)  # kept by pytest for a post-mortem
    # then: every block ran, printed what the doc says, and left nothing running
    parts = re.split(r"^=== strangler-walkthrough block (\w+) ===$", output, flags=re.M)
    outputs = dict(zip(parts[1::2], parts[2::2], strict=True))
    ran = [k for k in outputs if k != "end"]
    assert proc.returncode == 0, (
        f"block {ran[-1] if ran else '?'} failed (exit {proc.returncode}):\n"
        f"{blocks[int(ran[-1])].commands if ran else ''}\n--- output ---\n{output[-4000:]}"
    )
    missing = [
        f"block {block.index} should print {line!r}\n{block.commands}\n--- got ---\n"
        f"{outputs.get(str(block.index), '')[-3000:]}"
        for block in blocks for line in (with_ports(x, mapping) for x in block.expected)
        if line not in outputs.get(str(block.index), "")
    ]
    assert missing == [], "\n\n".join(missing)
    commands = {pid: _cmdline(pid) for pid in left_running}
    assert commands == {}, f"the walkthrough's last block left processes running: {commands}"
    assert patched_files() == before, "the walkthrough changed this checkout, not its copy"


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
