"""One disk from a source pool into a VDI of the target pool, streamed.

``GET /export_raw_vdi?format=vhd[&base=]`` on the source is piped straight
into ``PUT /import_raw_vdi?format=vhd`` on the target: with a base, a
differencing VHD of the changed 2 MiB blocks only, which the target writes
over the replica's disk; without, a dynamic VHD of the disk's non-zero
blocks into a fresh VDI. Nothing is staged: the bounded pipe lets the
slower side pace the faster one, and the run's bandwidth limit takes every
chunk.

An export that breaks resumes by itself (:mod:`xenkeep.xapi.transfer`); an
import cannot, so a copy whose connection broke is made again from the
start, up to :data:`COPY_ATTEMPTS` times. Writing the same blocks twice is
harmless: a delta rewrites whole blocks with the same bytes, and a full
goes into a VDI nothing else wrote. A pool that refuses the data (a full
SR, a bad VHD) is not asked again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from xenkeep.errors import XenKeepError
from xenkeep.jobs.streams import Pipe, PipeBroken, Progress, RateLimiter
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import TransferError, XapiFailure
from xenkeep.xapi.transfer import connection_broke, export_raw_vdi, import_raw_vdi

#: Whole-disk copy attempts when a connection breaks.
COPY_ATTEMPTS: Final = 3


class CopyFailed(XenKeepError):
    """A disk could not be copied; the message says why."""

    code = "replication_copy_failed"


@dataclass(frozen=True)
class Copied:
    """What a finished copy moved."""

    #: Bytes written into the target (the VHD stream's length).
    bytes: int
    seconds: float
    attempts: int


Retrying = Callable[[int, str], Awaitable[None]]


async def _copy_once(
    source: XapiClient,
    vdi: str,
    base: str | None,
    target: XapiClient,
    into: str,
    *,
    limiter: RateLimiter,
    progress: Progress,
) -> Copied:
    pipe = Pipe()
    loop = asyncio.get_running_loop()
    length: asyncio.Future[int | None] = loop.create_future()

    async def sink(chunk: bytes) -> None:
        await limiter.take(len(chunk))
        await pipe.put(chunk)

    async def exported(_done: int, total: int | None) -> None:
        if not length.done():
            length.set_result(total)

    async def export() -> None:
        try:
            await export_raw_vdi(source, vdi, sink, fmt="vhd", base=base, progress=exported)
        except PipeBroken:
            raise  # the import side failed: its error is the one reported
        except BaseException as exc:
            pipe.fail(exc if isinstance(exc, Exception) else CopyFailed("export cancelled"))
            raise
        finally:
            if not length.done():
                length.set_result(None)
        await pipe.close()

    reader = asyncio.create_task(export(), name=f"export {vdi}")
    try:
        # The import announces its length: wait for the export's first bytes.
        waiting: set[asyncio.Future[Any]] = {length, reader}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if reader.done() and reader.exception() is not None and not length.done():
            reader.result()
        size = await length
        progress.total = size
        done = await import_raw_vdi(
            target, into, pipe.reader(), fmt="vhd", size=size, progress=progress.update
        )
        await reader
    except BaseException:
        # A failed export reaches the import as its body's error (the pipe
        # carries it), so what is raised here is the first cause either way.
        pipe.break_()
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        raise
    return Copied(done.bytes, done.seconds, 1)


async def copy_disk(
    source: XapiClient,
    vdi: str,
    base: str | None,
    target: XapiClient,
    into: str,
    *,
    limiter: RateLimiter,
    progress: Callable[[], Progress],
    retrying: Retrying,
) -> Copied:
    """Copy source VDI ``vdi`` (its changes since ``base``, or all of it) into
    target VDI ``into``. ``progress()`` gives a fresh progress per attempt;
    ``retrying(attempt, why)`` is told before an attempt is made again."""
    for attempt in range(1, COPY_ATTEMPTS + 1):
        try:
            done = await _copy_once(
                source, vdi, base, target, into, limiter=limiter, progress=progress()
            )
        except (TransferError, XapiFailure) as exc:
            broke = connection_broke(exc)
            if broke is None:
                raise  # the pool refused the data: another attempt would too
            if attempt == COPY_ATTEMPTS:
                raise CopyFailed(
                    f"the connection broke {COPY_ATTEMPTS} times while copying the disk; "
                    f"the last time: {broke}",
                    hint="check the network between the pools, then run the job again",
                ) from exc
            await retrying(attempt, broke)
            continue
        return Copied(done.bytes, done.seconds, attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")
