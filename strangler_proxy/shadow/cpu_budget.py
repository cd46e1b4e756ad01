"""A CPU budget for the shadow worker: at most a share of one core, averaged over time.

``SCHED_IDLE`` stops the shadow worker from taking a core from the proxy in the scheduler's
eyes, but not in the hardware's: on a small machine the two may share caches or an SMT
core, and a worker busy comparing thousands of copies a second slows the client's path
anyway (measured in ``bench/shadow``). ``[shadow].worker_cpu_percent`` caps the worker's own
CPU time (all its threads) at that percentage of one core. When the worker has used more,
it pauses taking work: copies then wait in the proxy's bounded buffer, and once that is
full the proxy drops them before copying a byte, counted as ``dropped_queue_full``.

Credit for idle time is capped at ``burst`` seconds of CPU, so a long quiet spell does not
buy a long run at full speed afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class CpuBudget:
    """Pauses its caller while this process has used more than ``percent`` of one core."""

    def __init__(self, percent: float, burst: float = 0.05,
                 wall: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.process_time) -> None:
        self.share = percent / 100.0
        self.burst = burst
        self._wall, self._cpu = wall, cpu
        self._wall0, self._cpu0 = wall(), cpu()
        self.paused_seconds = 0.0
        self.pauses = 0

    @property
    def unlimited(self) -> bool:
        """True at 100% or more: the worker has one thread of work, so no cap applies."""
        return self.share >= 1.0

    def overdraft(self) -> float:
        """Seconds to pause so that the use falls back within the budget (0.0: go on)."""
        now = self._wall()
        used = self._cpu() - self._cpu0
        credit = self.share * (now - self._wall0) - used
        if credit > self.burst:  # idle time banks at most ``burst`` seconds of CPU
            self._wall0 += (credit - self.burst) / self.share
            return 0.0
        return -credit / self.share if credit < 0 else 0.0

    async def wait(self) -> None:
        """Sleep off any overdraft (in steps of at most 0.2 s, so stopping stays quick)."""
        if self.unlimited:
            return
        pause = self.overdraft()
        while pause > 0:
            step = min(pause, 0.2)
            self.pauses += 1
            self.paused_seconds += step
            await asyncio.sleep(step)
            pause = self.overdraft()
