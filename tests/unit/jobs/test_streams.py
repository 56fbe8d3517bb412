"""The pipe between an export and the writer, the bandwidth limiter, progress."""

from __future__ import annotations

import asyncio

import pytest

from xenkeep.jobs.streams import Pipe, PipeBroken, Progress, RateLimiter


async def test_pipe_passes_chunks_in_order() -> None:
    pipe = Pipe(max_chunks=2)

    async def produce() -> None:
        for i in range(10):
            await pipe.put(bytes([i]) * 3)
        await pipe.close()

    task = asyncio.create_task(produce())
    got = [c async for c in pipe.reader()]
    await task
    assert got == [bytes([i]) * 3 for i in range(10)]


async def test_broken_pipe_unblocks_a_waiting_writer() -> None:
    pipe = Pipe(max_chunks=1)
    await pipe.put(b"a")
    waiting = asyncio.create_task(pipe.put(b"b"))
    await asyncio.sleep(0)
    assert not waiting.done()
    pipe.break_()
    with pytest.raises(PipeBroken):
        await waiting
    with pytest.raises(PipeBroken):
        await pipe.put(b"c")


async def test_failed_pipe_raises_in_the_reader() -> None:
    pipe = Pipe()
    await pipe.put(b"x")
    pipe.fail(ConnectionError("export dropped"))
    with pytest.raises(ConnectionError, match="export dropped"):
        async for _ in pipe.reader():
            pass


async def test_rate_limiter_waits_when_over_budget() -> None:
    limiter = RateLimiter(1000, burst_seconds=0.1)
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    asyncio_sleep = asyncio.sleep
    try:
        asyncio.sleep = fake_sleep  # type: ignore[assignment]
        await limiter.take(100)  # within the burst
        await limiter.take(500)  # 400 bytes over: about 0.4 s of debt
    finally:
        asyncio.sleep = asyncio_sleep  # type: ignore[assignment]
    assert len(slept) == 1
    assert 0.35 < slept[0] <= 0.5


async def test_unlimited_limiter_never_waits() -> None:
    await RateLimiter(None).take(1 << 30)


async def test_progress_flushes_with_figures() -> None:
    seen: list[tuple[int, int | None]] = []

    async def flush(p: Progress) -> None:
        seen.append((p.done, p.total))

    p = Progress(flush, interval=0.0)
    await p.update(10, 100)
    await p.update(50, None)
    await p.finish()
    assert seen == [(10, 100), (50, 100), (50, 100)]
    assert p.eta is None or p.eta >= 0
