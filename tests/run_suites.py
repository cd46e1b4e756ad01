"""Run every suite of `make test`, even after one fails, and print one summary.

Each suite is a make target (lint, type checks and import contracts count as suites of
one check each). Its output streams through as it runs; at the end a table gives each
suite's counts and time, and the last line is ``total: N passed, N failed, N skipped``.
The exit status is 1 if any suite failed, else 0.

Usage: ``python tests/run_suites.py TARGET [TARGET ...]`` (the Makefile passes the list).
Targets joined by ``+`` (``typecheck+test-monolith``) run at the same time, for suites that
only use the CPU and a database of their own (never the timing-sensitive live ones); their
output is printed whole, one suite after the other, when the last ends.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)\b")
_PYTEST_CLOSING = re.compile(
    r"^=+ .*\b(passed|failed|errors?|skipped|no tests ran)\b.* in [\d.]+s"
)


@dataclass
class SuiteResult:
    """What one suite reported: counts from pytest's closing line, or one check."""

    name: str
    returncode: int
    seconds: float
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def count_outcomes(name: str, lines: list[str], returncode: int, seconds: float) -> SuiteResult:
    """Read pytest's closing line(s); a suite without one is a single check.

    >>> r = count_outcomes("t", ["== 3 passed, 1 skipped in 2.0s =="], 0, 2.0)
    >>> (r.passed, r.failed, r.skipped)
    (3, 0, 1)
    >>> count_outcomes("lint", ["All checks passed!"], 0, 1.0).passed
    1
    >>> count_outcomes("lint", ["E501 ..."], 1, 1.0).failed
    1
    >>> count_outcomes("pg", ["skipped: DATABASE_URL not set"], 0, 0.0).skipped
    1
    """
    result = SuiteResult(name, returncode, seconds)
    closing = [line for line in lines if _PYTEST_CLOSING.match(line.strip())]
    if not closing:
        if returncode == 0 and any(line.startswith("skipped:") for line in lines):
            result.skipped = 1
        elif returncode == 0:
            result.passed = 1
        else:
            result.failed = 1
        return result
    for line in closing:  # one per pytest run: a target may run pytest more than once
        for number, word in _COUNT.findall(line):
            if word == "passed" or word == "xpassed":
                result.passed += int(number)
            elif word in ("failed", "error", "errors"):
                result.failed += int(number)
            else:
                result.skipped += int(number)
    if returncode != 0 and result.failed == 0:
        result.failed = 1  # it crashed or was interrupted after its counts: still a failure
    return result


def run_suite(target: str) -> SuiteResult:
    """Run ``make TARGET``, streaming its output, and count what it reported."""
    print(f"\n━━ {target} ━━", flush=True)
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        ["make", "--no-print-directory", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line.rstrip("\n"))
        returncode = process.wait()
    return count_outcomes(target, lines, returncode, time.monotonic() - started)


def run_together(targets: list[str]) -> list[SuiteResult]:
    """Run several ``make TARGET`` at once; print each one's output whole, in order."""
    print(f"\n━━ {' + '.join(targets)} (at the same time) ━━", flush=True)
    started = time.monotonic()
    running = []
    for target in targets:
        out = tempfile.TemporaryFile("w+", errors="replace")  # noqa: SIM115 - closed below
        running.append((target, out, subprocess.Popen(
            ["make", "--no-print-directory", target], stdout=out, stderr=subprocess.STDOUT,
            text=True)))
    results = []
    for target, out, process in running:
        returncode = process.wait()
        seconds = time.monotonic() - started
        out.seek(0)
        text = out.read()
        out.close()
        print(f"\n━━ {target} ━━\n{text}", end="", flush=True)
        results.append(count_outcomes(target, text.splitlines(), returncode, seconds))
    return results


def summary(results: list[SuiteResult]) -> str:
    """The closing table, then the one line CI and people read."""
    rows = [f"{'suite':<20} {'result':<7} {'passed':>7} {'failed':>7} {'skipped':>8} {'time':>8}"]
    for r in results:
        verdict = "ok" if r.ok else "FAILED"
        rows.append(
            f"{r.name:<20} {verdict:<7} {r.passed:>7} {r.failed:>7} {r.skipped:>8} "
            f"{r.seconds:>7.0f}s"
        )
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    skipped = sum(r.skipped for r in results)
    rows.append(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(rows)


def main(targets: list[str]) -> int:
    results: list[SuiteResult] = []
    for target in targets:
        if "+" in target:
            results += run_together(target.split("+"))
        else:
            results.append(run_suite(target))
    print("\n" + summary(results), flush=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
