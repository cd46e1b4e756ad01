"""Checks on the repository as a newcomer meets it: the CLI, the compose file, the README."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from strangler.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parent.parent


def test_every_listed_subcommand_loads_and_explains_itself() -> None:
    # given the command table, when each subcommand's --help runs, then it prints usage
    runner = CliRunner()
    listed = cli.list_commands(None)  # type: ignore[arg-type]
    assert "demo" in listed
    for name in listed:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, f"strangler {name} --help failed: {result.output}"
        assert "Usage: " in result.output, name
        assert len(result.output.splitlines()) > 3, f"strangler {name} --help says too little"


def test_unknown_subcommand_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output


def test_user_errors_print_one_line_without_traceback(tmp_path: Path) -> None:
    # given a port that is taken
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # when the demo is asked to use it
        done = subprocess.run(
            [sys.executable, "-m", "strangler.cli", "demo", "--port-base", str(port),
             "--data-dir", str(tmp_path / "demo")],
            capture_output=True, text=True, timeout=60, check=False,
        )
    # then one line names the port and the fix, and nothing was set up
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"strangler: error: port {port} ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "demo" / "strangler.toml").exists()


def test_command_table_points_at_real_modules() -> None:
    missing = [n for n, (path, _) in COMMANDS.items()
               if not (ROOT / (path.partition(":")[0].replace(".", "/") + ".py")).exists()]
    assert missing == [], f"COMMANDS rows whose module does not exist yet: {missing}"


def test_readme_shows_the_two_commands_and_ci_runs_make_test() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def _compose_tool() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_file_is_valid_and_names_only_what_exists(tmp_path: Path) -> None:
    tool = _compose_tool()
    if tool is None:
        pytest.skip("docker-compose is not installed (make sysdeps installs it with apt-get)")
    done = subprocess.run(
        [*tool, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    import yaml  # docker-compose depends on PyYAML; config prints the resolved YAML

    resolved = yaml.safe_load(done.stdout)
    services = resolved["services"]
    assert {"postgres", "monolith"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = Path(build["context"] if isinstance(build, dict) else build)
            dockerfile = context / (build.get("dockerfile", "Dockerfile")
                                    if isinstance(build, dict) else "Dockerfile")
            assert dockerfile.exists(), f"service {name}: {dockerfile} does not exist"
        command = service.get("command") or []
        words = command if isinstance(command, list) else command.split()
        if words[:1] == ["strangler"] and len(words) > 1:
            assert words[1] in COMMANDS, f"service {name} runs unknown `strangler {words[1]}`"


def _free_port_base(avoid: set[int] | None = None) -> int:
    """A base port B with B, B+1, B+80 and B+81 all free (the demo's layout)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + 81 > 65535 or base in (avoid or set()):
            continue
        if all(_can_listen(base + offset) for offset in (0, 1, 80, 81)):
            return base
    pytest.fail("no free block of ports for the demo")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_starts_everything_and_serves_through_the_proxy(tmp_path: Path) -> None:
    # given a fresh data directory, when the demo runs in --check mode, then again on other
    # ports after the user flipped a route in the kept routes file
    data = tmp_path / "demo"
    config = data / "strangler.toml"
    used: set[int] = set()
    for run in (1, 2):
        base = _free_port_base(avoid=used)
        used.add(base)
        argv = [sys.executable, "-m", "strangler.cli", "demo", "--check",
                "--data-dir", str(data), "--port-base", str(base)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False,
                              cwd=ROOT)
        # then the stack came up, answered through the proxy, and stopped cleanly
        assert done.returncode == 0, f"run {run}: {done.stderr[-2000:]}"
        assert f"GET http://127.0.0.1:{base + 80}/api/products/ -> 200" in done.stdout
        assert "monolith, catalog, relay, proxy" in done.stdout
        for offset in (0, 1, 80, 81):
            assert _can_listen(base + offset), f"port {base + offset} still taken after the demo"
        if run == 1:
            _run_printed_commands(done.stdout, config)
            assert 'mode = "shadow"' in config.read_text()
    # the second run moved the kept file to its ports and kept the user's flip
    text = config.read_text()
    assert f'listen = "127.0.0.1:{base + 80}"' in text
    assert f'url = "http://127.0.0.1:{base}"' in text
    assert 'mode = "shadow"' in text
    assert (data / "report" / "report.html").exists()


def _run_printed_commands(stdout: str, config: Path) -> None:
    """Run the demo's printed `routes set` and `shadow report` lines exactly as printed."""
    lines = [line.strip() for line in stdout.splitlines()]
    export = next(line for line in lines if line.startswith("export STRANGLER_CONFIG="))
    assert export == f"export STRANGLER_CONFIG={config}"
    commands = [line for line in lines if " routes set catalog" in line
                or line.endswith(" shadow report")]
    assert len(commands) == 2, lines
    for command in commands:
        # a shell with no virtualenv activated: only the system's PATH
        done = subprocess.run(["bash", "-c", f"{export} && {command}"], cwd=ROOT,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, (command, done.stderr[-1000:])


def _can_listen(port: int) -> bool:
    """True when nothing listens on PORT (TIME_WAIT leftovers of closed connections allowed)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    # given a running demo (started the way a shell starts a background job: SIGINT ignored)
    base = _free_port_base()
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "strangler.cli", "demo", "--no-report",
             "--data-dir", str(tmp_path / "demo"), "--port-base", str(base)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        deadline = time.monotonic() + 240
        while "[5/5] ready" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)
        assert "[5/5] ready" in log.read_text()
        # when the user presses Ctrl-C
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # then every process stopped and the ports are free again
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert "stopped everything" in log.read_text()
    for offset in (0, 1, 80, 81):
        assert _can_listen(base + offset), f"port {base + offset} still taken after Ctrl-C"


def test_everything_installs_from_the_lock_with_hashes() -> None:
    # the Makefile, CI and the Dockerfile install exactly what was tested: the lock files
    # pin every package (runtime and dev) to one version with hashes
    for name in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / name).read_text()
        pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^ ;]+)", text, re.M)
        assert len(pins) > 20, name
        blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 1)[1])
        assert all("--hash=sha256:" in block for block in blocks if "==" in block), name
        assert not re.search(r"^[A-Za-z0-9_.-]+(>=|<|~=)", text, re.M), name
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r $(LOCK)" in makefile
    assert "LOCK := requirements-dev.lock" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    install = " ".join(line.strip(" \\") for line in dockerfile.splitlines()
                       if "pip install" in line or line.startswith("    "))
    assert "pip install --require-hashes --no-deps -r requirements.lock" in install
    assert "COPY pyproject.toml README.md requirements.lock" in dockerfile
    assert re.search(r"pip install [^&]*--no-deps [^&]*\.", install)
    # every package the wheel ships is copied into the image
    import tomllib

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in find["packages"]["find"]["include"]:
        name = package.rstrip("*")
        if "." in name:
            continue  # a subpackage pattern ("strangler.*"): its top level is checked
        assert f"COPY {name} ./{name}" in dockerfile, f"Dockerfile does not copy {name}"
    # every runtime dependency of pyproject.toml is pinned in both locks

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for lock in ("requirements.lock", "requirements-dev.lock"):
        pinned = {n.lower().replace("_", "-") for n, _ in re.findall(
            r"^([A-Za-z0-9_.-]+)==([^ ;]+)", (ROOT / lock).read_text(), re.M)}
        for requirement in declared:
            name = re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            assert name in pinned, f"{name} is not in {lock}: run make lock"
