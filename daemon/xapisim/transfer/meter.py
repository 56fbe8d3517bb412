"""Bytes of a transfer body under the armed faults, and into the task's progress.

``Meter`` admits the body bytes of one transfer: it cuts the connection where
a ``drop_transfer`` fault says, paces them to a ``throttle`` fault's rate,
stops when the transfer's task is cancelled, and moves the task's progress
with the bytes. ``BodyReader`` turns a request body into the blocking file
object the codecs read in a worker thread; ``iterate`` pulls a codec's
blocking iterator from a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar, cast

from aiohttp import web

from ..errors import TASK_CANCELLED
from ..pool import SimPool

T = TypeVar("T")


class TransferAborted(Exception):
    """The transfer stopped early (fault injection, cancellation, client gone)."""

    def __init__(self, message: str, response: web.StreamResponse | None = None) -> None:
        super().__init__(message)
        self.response = response


class Meter:
    """Counts body bytes, applies drop/throttle faults and task progress."""

    def __init__(self, pool: SimPool, request: web.Request, task: str | None, total: int) -> None:
        self.pool = pool
        self.request = request
        self.task = task
        self.total = max(total, 1)
        self.done = 0
        self.drop_at = pool.faults.take_drop(request.path)
        self._loop = asyncio.get_running_loop()
        self._paced_since = self._loop.time()
        self._paced_bytes = 0
        self._last_progress = -1.0
        #: No fault shapes this transfer, so the fast path may be used.
        self.plain = self.drop_at is None and pool.faults.throttle() is None

    def _cut(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.close()

    async def account(self, n: int) -> int:
        """Admit ``n`` more bytes; returns how many may pass before a cut."""
        if self.task is not None and self.pool.tasks.task_cancelling(self.task):
            self.pool.tasks.task_failed(self.task, [TASK_CANCELLED, self.task])
            self._cut()
            raise TransferAborted("task cancelled")
        allowed = n
        if self.drop_at is not None and self.done + n >= self.drop_at:
            allowed = max(0, self.drop_at - self.done)
        rate = self.pool.faults.throttle()
        if rate is not None:
            self._paced_bytes += allowed
            due = self._paced_since + self._paced_bytes / rate
            delay = due - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            self._paced_since = self._loop.time()
            self._paced_bytes = 0
        self.done += allowed
        if self.task is not None:
            progress = min(self.done / self.total, 0.99)
            if progress - self._last_progress >= 0.01:
                self._last_progress = progress
                self.pool.tasks.task_progress(self.task, progress)
        return allowed

    def piece_size(self, default: int) -> int:
        rate = self.pool.faults.throttle()
        return default if rate is None else max(512, min(default, rate // 10))

    async def send(self, resp: web.StreamResponse, data: bytes) -> None:
        """Write a piece of a response body under the armed faults."""
        step = self.piece_size(len(data))
        for at in range(0, len(data), step or 1):
            piece = data[at : at + step]
            try:
                allowed = await self.account(len(piece))
            except TransferAborted as e:
                e.response = resp
                raise
            if allowed:
                await resp.write(piece[:allowed])
            if allowed < len(piece):
                with contextlib.suppress(Exception):
                    await resp.drain()
                self._cut()
                raise TransferAborted(
                    f"connection dropped after {self.done} bytes (injected)", resp
                )


class BodyReader(io.RawIOBase):
    """A blocking file object over the request body, for codecs run in a thread."""

    def __init__(self, meter: Meter, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.meter = meter
        self.loop = loop
        self.content = meter.request.content

    def readable(self) -> bool:
        return True

    async def _read(self, n: int) -> bytes:
        size = min(n, self.meter.piece_size(n))
        data = await self.content.read(size)
        if not data:
            return b""
        allowed = await self.meter.account(len(data))
        if allowed < len(data):
            self.meter._cut()
            raise TransferAborted(f"connection dropped after {self.meter.done} bytes (injected)")
        return data

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        return asyncio.run_coroutine_threadsafe(self._read(n), self.loop).result()

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


async def iterate(it: Iterator[T]) -> AsyncIterator[T]:
    """Pull pieces of a blocking iterator in a worker thread."""
    done = object()
    while True:
        piece = await asyncio.to_thread(next, it, done)
        if piece is done:
            return
        yield cast(T, piece)
