"""Runs every shell block of docs/walkthrough-2.md in order (the ordering extraction).

The same conventions and machinery as ``test_walkthrough.py`` (one bash session, a copy of
the repository, the demo's ports replaced by free ones, every process killed at the end);
the ordering service's port 8002 is one more demo port.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_walkthrough import (
    MARK,
    MARKER,
    ROOT,
    _marked_pids,
    copy_repository,
    free_ports,
    kill_everything,
    parse_blocks,
    with_ports,
)

DOC = ROOT / "docs" / "walkthrough-2.md"
DEMO_PORTS = (8000, 8002, 8080, 8081)


@pytest.mark.slow
@pytest.mark.timeout(330)
def test_walkthrough_2_runs_as_written(tmp_path: Path) -> None:
    blocks = parse_blocks(DOC.read_text())
    assert len(blocks) >= 6, "part 2 should carry a reader from analysis to the saga"
    copy = copy_repository(tmp_path / "repo")
    mapping = dict(zip(DEMO_PORTS, free_ports(len(DEMO_PORTS)), strict=True))
    marker = uuid.uuid4().hex
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(copy),
        "PYTHONDONTWRITEBYTECODE": "1",
        "STRANGLER_WALKTHROUGH_WORK": str(tmp_path / "work"),
        "STRANGLER_WALKTHROUGH_REQUESTS": "300",
        MARKER: marker,
    }
    for name in ("DATABASE_URL", "CATALOG_DATABASE_URL", "ORDERING_DATABASE_URL",
                 "STRANGLER_QUERY_LOG", "STRANGLER_CONFIG", "STRANGLER_ADMIN_TOKEN"):
        env.pop(name, None)  # the walkthrough runs on the embedded default, SQLite
    script = ["set -euo pipefail", f"cd {copy}"]
    for block in blocks:
        script += [f"echo '{MARK.format(block.index)}'", with_ports(block.commands, mapping)]
    script.append(f"echo '{MARK.format('end')}'")
    # when: the doc's commands run, in order, in one shell
    proc = subprocess.Popen(
        ["bash", "-c", "\n".join(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, cwd=copy, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=300)
        time.sleep(0.5)
        left_running = [pid for pid in _marked_pids(marker) if pid != proc.pid]
    except subprocess.TimeoutExpired:
        kill_everything(proc, marker)
        output, _ = proc.communicate()
        pytest.fail(f"walkthrough-2 did not finish in time\n--- output ---\n{output[-4000:]}")
    finally:
        kill_everything(proc, marker)
    (tmp_path / "walkthrough-2.log").write_text(output)
    # then: every block ran, printed what the doc says, and left nothing running
    parts = re.split(r"^=== strangler-walkthrough block (\w+) ===$", output, flags=re.M)
    outputs = dict(zip(parts[1::2], parts[2::2], strict=True))
    ran = [k for k in outputs if k != "end"]
    assert proc.returncode == 0, (
        f"block {ran[-1] if ran else '?'} failed (exit {proc.returncode}):\n"
        f"{blocks[int(ran[-1])].commands if ran else ''}\n--- output ---\n{output[-4000:]}"
    )
    missing = [
        f"block {block.index} should print {line!r}\n--- got ---\n"
        f"{outputs.get(str(block.index), '')[-3000:]}"
        for block in blocks for line in (with_ports(x, mapping) for x in block.expected)
        if line not in outputs.get(str(block.index), "")
    ]
    assert missing == [], "\n\n".join(missing)
    assert left_running == [], "the walkthrough's last block left processes running"
