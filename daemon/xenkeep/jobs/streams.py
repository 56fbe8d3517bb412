"""Plumbing between XAPI transfers and the datastore: a bounded pipe, a
shared bandwidth limiter, and live progress (bytes, speed, ETA)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


class PipeBroken(Exception):
    """The reading end failed; the writing end stops."""


class Pipe:
    """An async byte pipe from a push sink (exports) to a pull iterator (the writer).

    Bounded, so the slower side paces the faster one. When the reader fails,
    :meth:`break_` makes every pending and future :meth:`put` raise
    :class:`PipeBroken`, so the export stops instead of waiting forever.
    """

    def __init__(self, max_chunks: int = 8) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(max_chunks)
        self._broken = False
        self._failure: BaseException | None = None

    async def put(self, data: bytes) -> None:
        """Push a chunk (the export's sink)."""
        if self._broken:
            raise PipeBroken
        await self._queue.put(bytes(data))
        if self._broken:
            raise PipeBroken

    async def close(self) -> None:
        """End of stream."""
        if not self._broken:
            await self._queue.put(None)

    def fail(self, exc: BaseException) -> None:
        """Make the reading end raise ``exc`` (the export failed)."""
        self._failure = exc
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def break_(self) -> None:
        """The reading end is gone: unblock and refuse the writer."""
        self._broken = True
        while not self._queue.empty():
            self._queue.get_nowait()

    async def reader(self) -> AsyncIterator[bytes]:
        """The chunks, until :meth:`close`; raises what :meth:`fail` was given."""
        while True:
            if self._failure is not None:
                raise self._failure
            item = await self._queue.get()
            if self._failure is not None:
                raise self._failure
            if item is None:
                return
            yield item


class RateLimiter:
    """A token bucket shared by all transfers of a run (bytes per second)."""

    def __init__(self, rate: int | None, *, burst_seconds: float = 0.5) -> None:
        self.rate = rate
        self._capacity = (rate or 0) * burst_seconds
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        """Wait until ``n`` bytes may go."""
        if not self.rate:
            return
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)


@dataclass
class Progress:
    """Live progress of one transfer, flushed to storage at most every ``interval``."""

    flush: Callable[[Progress], Awaitable[None]]
    interval: float = 0.5
    done: int = 0
    total: int | None = None
    started: float = field(default_factory=time.monotonic)
    _last_flush: float = 0.0

    @property
    def speed(self) -> float:
        """Average bytes per second since the start."""
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current speed, if the total is known."""
        speed = self.speed
        if self.total is None or speed <= 0:
            return None
        return max(0.0, (self.total - self.done) / speed)

    async def update(self, done: int, total: int | None) -> None:
        """The transfer moved on (a transfer progress callback)."""
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if now - self._last_flush >= self.interval:
            self._last_flush = now
            await self.flush(self)

    async def finish(self) -> None:
        """Write the final figures."""
        await self.flush(self)
