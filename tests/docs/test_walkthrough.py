"""Runs every shell block of docs/walkthrough.md in order, so the walkthrough cannot rot.

The doc's convention (see its introduction):
- a ```sh block is commands, run in one bash session (so `cd`, `export` and background
  jobs carry over from block to block, as they do for a reader in one terminal);
- a ```output block right after it lists lines the reader will see: each non-empty line
  must appear in that block's output (``...`` lines are skipped).
The test changes only what a machine must: the demo's fixed ports (8000, 8001, 8080, 8081)
become free ports from the OS, and waits and sizes shrink through the environment variables
the doc names (STRANGLER_WALKTHROUGH_*). Everything runs in a fresh temporary directory and
every process the script started is killed at the end.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "walkthrough.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
DEMO_PORTS = (8000, 8001, 8080, 8081)


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
        expected = ()
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
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def with_ports(text: str, mapping: dict[int, int]) -> str:
    for old, new in mapping.items():
        text = re.sub(rf"(?<![\d.]){old}(?!\d)", str(new), text)
    return text


MARK = "=== strangler-walkthrough block {} ==="


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if not DOC.exists():
        pytest.fail("docs/walkthrough.md is missing")
    blocks = parse_blocks(DOC.read_text())
    assert len(blocks) >= 8, "the walkthrough should carry a reader through the migration"
    mapping = dict(zip(DEMO_PORTS, free_ports(len(DEMO_PORTS)), strict=True))
    script = ["set -euo pipefail", f"cd {ROOT}"]
    for block in blocks:
        script += [f"echo '{MARK.format(block.index)}'", with_ports(block.commands, mapping)]
    script.append(f"echo '{MARK.format('end')}'")
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "STRANGLER_DATA_DIR": str(tmp_path / "data"),
        "STRANGLER_WALKTHROUGH_WORK": str(tmp_path / "work"),
        "STRANGLER_WALKTHROUGH_FAST": "1",
    }
    env.pop("DATABASE_URL", None)  # the walkthrough runs on the embedded default, SQLite
    proc = subprocess.Popen(
        ["bash", "-c", "\n".join(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, cwd=ROOT, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=400)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the background jobs the doc started
        except ProcessLookupError:
            pass
    parts = re.split(r"^=== strangler-walkthrough block (\w+) ===$", output, flags=re.M)
    outputs = dict(zip(parts[1::2], parts[2::2], strict=True))
    ran = [k for k in outputs if k != "end"]
    assert proc.returncode == 0, (
        f"block {ran[-1] if ran else '?'} failed (exit {proc.returncode}):\n"
        f"{blocks[int(ran[-1])].commands if ran else ''}\n--- output ---\n{output[-4000:]}"
    )
    for block in blocks:
        seen = outputs.get(str(block.index), "")
        for line in block.expected:
            line = with_ports(line, mapping)
            assert line in seen, (
                f"block {block.index} should print {line!r}\n{block.commands}\n--- got ---\n"
                f"{seen[-3000:]}"
            )
