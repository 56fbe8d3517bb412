"""What the work of an operation is given: its log, stage, progress and sub-tasks.

One :class:`OperationContext` per running operation. Work writes through it
and never through SQL, so every kind reports progress the same way and the
page, the API and the event stream read it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Final, Protocol, TypeVar

from xenkeep.errors import XenKeepError

from .claims import Claim
from .store import OperationStore

log = logging.getLogger("xenkeep.ops")

T = TypeVar("T")

#: Progress is written at most this often (the page shows it at most twice a second).
PROGRESS_EVERY: Final = 0.25
#: Speed is measured over this window, so a stall shows within seconds.
SPEED_WINDOW: Final = 5.0


class Rate:
    """Speed and ETA from samples of bytes done, over a sliding window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, done: int, total: int | None) -> tuple[float, float | None]:
        """Record ``done`` bytes now; the speed (bytes/s) and the ETA (s) or None."""
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        speed = (done - b0) / (now - t0) if now > t0 else 0.0
        speed = max(0.0, speed)
        eta = None
        if total and speed > 0:
            eta = max(0.0, (total - done) / speed)
        return speed, eta


class OperationCancelledError(XenKeepError):
    """Raised inside thread work when its operation is cancelled."""

    code = "cancelled"


class ThreadWork:
    """The handle blocking work in a thread gets: report progress, notice a cancel.

    Its methods are called from the worker thread; they only set plain
    values, which the operation's loop side writes out.
    """

    def __init__(self) -> None:
        self.done = 0
        self.total: int | None = None
        self._cancel = threading.Event()

    def advance(self, nbytes: int) -> None:
        """Count ``nbytes`` more done; raise if the operation was cancelled."""
        self.done += nbytes
        self.check()

    def check(self) -> None:
        """Raise OperationCancelledError once the operation is cancelled."""
        if self._cancel.is_set():
            raise OperationCancelledError("cancelled")

    def cancel(self) -> None:
        """Ask the thread to stop at its next :meth:`advance` or :meth:`check`."""
        self._cancel.set()


class LaterClaims(Protocol):
    """Claims a running operation takes once it knows what it touches."""

    def take(self, claims: Sequence[Claim], action: str) -> None:
        """Take them all, or raise ClaimConflictError naming what is in the way."""
        ...

    def release(self, claims: Sequence[Claim]) -> None:
        """Give them back before the operation ends."""
        ...


class OperationContext:
    """The running operation as its work sees it."""

    def __init__(
        self,
        store: OperationStore,
        op_id: int,
        *,
        kind: str,
        stages: type[StrEnum] | None,
        clock: Callable[[], float] = time.monotonic,
        claims: LaterClaims | None = None,
    ) -> None:
        self.store = store
        self.id = op_id
        self.kind = kind
        self._stages = stages
        self._clock = clock
        self._rate = Rate(clock)
        self._last_write = 0.0
        self._claims = claims

    def claim(self, claims: Sequence[Claim], action: str) -> None:
        """Take more claims now (the VMs a run has just selected), under the
        same rules as those taken at start; ClaimConflictError names what is
        in the way. They are given back when the operation ends, or earlier
        with :meth:`release`."""
        if self._claims is not None:
            self._claims.take(claims, action)

    def release(self, claims: Sequence[Claim]) -> None:
        """Give back claims taken with :meth:`claim`."""
        if self._claims is not None:
            self._claims.release(claims)

    async def log(self, message: str, *, level: str = "info", task_id: int | None = None) -> None:
        """One line in the operation's log (page, API, report) and in the journal."""
        log.log(
            logging.ERROR if level == "error" else logging.INFO,
            "%s %s: %s",
            self.kind,
            self.id,
            message,
        )
        await self.store.log(self.id, message, level=level, task_id=task_id)

    async def stage(self, stage: StrEnum) -> None:
        """Move the operation to ``stage``, one of its kind's stages."""
        if self._stages is not None and stage not in set(self._stages):
            raise ValueError(f"{stage!r} is not a stage of {self.kind}")
        await self.store.update(self.id, stage=str(stage))

    async def retarget(self, target: str) -> None:
        """The operation now works on ``target`` (the VM it has just made)."""
        await self.store.retarget(self.id, target)

    async def progress(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        """Bytes done (and the total, when known): speed and ETA follow.

        Written at most every PROGRESS_EVERY seconds unless ``force``.
        """
        now = self._clock()
        speed, eta = self._rate.sample(done, total)
        if not force and now - self._last_write < PROGRESS_EVERY:
            return
        self._last_write = now
        fields: dict[str, Any] = {"bytes": done, "speed": speed, "eta": eta}
        if total is not None:
            fields["total_bytes"] = total
        await self.store.update(self.id, **fields)

    async def task(
        self,
        *,
        subject: str,
        name: str,
        stage: str,
        parent_id: int | None = None,
        part: str | None = None,
    ) -> int:
        """A new sub-task (a VM, a disk of it); its id."""
        return await self.store.create_task(
            self.id, subject=subject, name=name, stage=stage, parent_id=parent_id, part=part
        )

    async def update_task(
        self, task_id: int, detail: dict[str, Any] | None = None, **fields: Any
    ) -> None:
        """Change a sub-task's columns; ``detail`` adds facts of the kind."""
        await self.store.update_task(task_id, detail, **fields)

    async def in_thread(
        self, fn: Callable[[ThreadWork], T], *, total: int | None = None, every: float = 0.5
    ) -> T:
        """Run blocking ``fn(work)`` in a thread, writing its progress while it runs.

        A cancel of the operation reaches the thread at its next
        ``work.advance()``/``work.check()``, which raises there.
        """
        work = ThreadWork()
        work.total = total
        # A first sample at zero: the total shows at once and speed counts from here.
        await self.progress(work.done, total, force=True)
        future = asyncio.ensure_future(asyncio.to_thread(fn, work))
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=every)
                await self.progress(work.done, work.total, force=True)
                if done:
                    return future.result()
        except asyncio.CancelledError:
            work.cancel()
            # The thread cannot be killed: wait for it to notice, so nothing
            # it holds (a datastore lock) outlives the operation.
            with contextlib.suppress(BaseException):
                await future
            raise
