"""One scheduler loop for the whole daemon.

Each domain registers what it schedules as a *source*: an ``async tick(now)``
that starts what is due and returns the seconds until it wants to look
again (backup jobs and verify today; replication and diagnostics next).
The loop sleeps until the earliest of those, or until :meth:`wake` (a job
was created or changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

log = logging.getLogger(__name__)

#: The loop never sleeps longer than this, so a clock change is noticed.
MAX_TICK: Final = 30.0
#: Nor shorter: a source due "now" again is looked at after this.
MIN_TICK: Final = 0.5

Tick = Callable[[float], Awaitable[float]]


class Scheduler:
    """Runs every registered source's tick, then sleeps until one is due."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._sources: dict[str, Tick] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def register(self, name: str, tick: Tick) -> None:
        """Add a source; ``name`` appears in the log when its tick fails."""
        if name in self._sources:
            raise ValueError(f"scheduler source {name!r} registered twice")
        self._sources[name] = tick

    def wake(self) -> None:
        """Look at every source again now."""
        self._wake.set()

    async def tick(self) -> float:
        """Run every source once; the seconds until the next look."""
        now = self.clock()
        wait = MAX_TICK
        for name, tick in self._sources.items():
            try:
                wait = min(wait, await tick(now))
            except Exception:
                # One source's failure must not stop the others' schedules.
                log.exception("scheduler: %s failed", name)
        return max(MIN_TICK, wait)

    def start(self) -> None:
        """Start the loop (it first runs what was missed while the daemon was down)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            wait = await self.tick()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
