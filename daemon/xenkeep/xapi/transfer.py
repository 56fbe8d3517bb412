"""Streaming transfers of disks and VMs to and from a pool.

XAPI moves data over plain HTTP on the pool master, authenticated by a
``session_id`` query parameter, each transfer tied to a ``task_id`` the pool
updates and through which it can be cancelled:

- ``GET /export_raw_vdi?vdi=&format=raw|vhd[&base=]`` and
  ``PUT /import_raw_vdi?vdi=&format=raw|vhd``;
- ``GET /export?uuid=`` (a VM as XVA) and ``PUT /import[?sr_id=]``;
- ``GET /pool/xmldbdump`` (the pool's database as XML).

Data never sits whole in memory: a reader task pulls the HTTP body in
``chunk_size`` pieces into a queue of ``buffer_chunks`` entries; when the
consumer is slower the queue fills, the reader stops reading, and TCP flow
control slows the pool down (backpressure). Peak memory is about
``(buffer_chunks + 2) * chunk_size`` whatever the disk size.

Exports of VDIs are retried when the connection breaks or stays idle for
``idle_timeout``: a VDI export of a snapshot is deterministic, so the
transfer restarts (asking for ``Range: bytes=N-`` and, if the pool ignores
it, skipping the N bytes already delivered) after checking the length has
not changed. XVA exports restart only when no byte was delivered yet, since
their headers may differ between runs. Imports are not retried here (the
source would have to be replayed); they fail with a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import (
    TaskCancelledError,
    TransferError,
    XapiError,
    XapiFailure,
    failure_from,
)
from xenkeep.xapi.tasks import cancel_task, create_task, destroy_task, task_outcome, wait_task

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
BUFFER_CHUNKS = 8
IDLE_TIMEOUT = 120.0
RETRIES = 3
RETRY_DELAY = 1.0

Sink = Callable[[bytes], Awaitable[None]]
ProgressCallback = Callable[[int, int | None], Awaitable[None] | None]

#: Errors after which a transfer may be tried again.
_RETRYABLE = (
    aiohttp.ClientPayloadError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientConnectionError,
    asyncio.TimeoutError,
    ConnectionError,
)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a finished transfer moved."""

    bytes: int
    attempts: int
    seconds: float
    result: Any = None
    #: The most chunks ever waiting in the buffer (at most ``buffer_chunks``).
    peak_buffered: int = 0


@dataclass(frozen=True, slots=True)
class TransferOptions:
    """Tuning of one transfer; the defaults suit a LAN to a pool master."""

    chunk_size: int = CHUNK_SIZE
    buffer_chunks: int = BUFFER_CHUNKS
    idle_timeout: float = IDLE_TIMEOUT
    retries: int = RETRIES
    retry_delay: float = RETRY_DELAY


class _Truncated(ConnectionError):
    """The body ended before its announced length."""


class _Eof:
    """End of the stream in the queue."""


_EOF = _Eof()
#: In an import's queue: the source raised (its error is the puller's).
_SOURCE_FAILED = _Eof()


class _SourceFailed(Exception):
    """Stops an import's request body when its source failed."""


def connection_broke(exc: BaseException) -> str | None:
    """What broke, if ``exc`` is a stream cut on the way rather than the
    pool's verdict on the data; else None.

    The pool fails an import's task once its connection drops, so the
    failure it reports then (``INTERNAL_ERROR``) follows the cut, and the
    cut is what happened. A task that failed with a real reason (``SR_FULL``,
    a bad VHD...) is the pool refusing, and no retry changes that.
    """
    if isinstance(exc, TransferError):
        return exc.message
    cut = exc.__context__
    if (
        isinstance(exc, XapiFailure)
        and exc.xapi_code == "INTERNAL_ERROR"
        and isinstance(cut, aiohttp.ClientError | OSError | asyncio.TimeoutError)
    ):
        reason = "; ".join(exc.params) or exc.xapi_code
        return f"{type(cut).__name__}; the pool's import task then failed: {reason}"
    return None


async def _report(callback: ProgressCallback | None, done: int, total: int | None) -> None:
    if callback is None:
        return
    outcome = callback(done, total)
    if outcome is not None:
        await outcome


async def _http_failure(resp: aiohttp.ClientResponse, what: str) -> XapiError:
    """The error an HTTP handler of XAPI answered with."""
    try:
        text = (await resp.content.read(4096)).decode("utf-8", "replace").strip()
    except (TimeoutError, aiohttp.ClientError):
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].replace("_", "").isalnum() and lines[0].isupper():
        return failure_from(lines, what)
    if resp.status == 401:
        return failure_from(["SESSION_INVALID", ""], what)
    if resp.status in (404, 501):
        return TransferError(f"{what}: the pool does not offer this (HTTP {resp.status})")
    return TransferError(f"{what}: HTTP {resp.status} {text[:200]}".rstrip())


class _Transfer:
    """Shared plumbing: the session, the pool task, errors."""

    def __init__(self, client: XapiClient, what: str, options: TransferOptions) -> None:
        self.client = client
        self.what = what
        self.options = options
        self.task: str | None = None

    async def new_task(self) -> str:
        if self.task is not None:
            await destroy_task(self.client, self.task)
        self.task = await create_task(self.client, f"XenKeep {self.what}")
        return self.task

    async def query(self, params: dict[str, str]) -> dict[str, str]:
        query = dict(params)
        query["session_id"] = await self.client.session_ref()
        query["task_id"] = await self.new_task()
        return query

    def timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.client.connect_timeout,
            sock_read=self.options.idle_timeout,
        )

    async def cancel(self) -> None:
        """Cancel the pool task (the pool then cuts the stream)."""
        if self.task is not None:
            with contextlib.suppress(XapiError):
                await asyncio.shield(cancel_task(self.client, self.task))

    async def finish(self) -> None:
        if self.task is not None:
            await destroy_task(self.client, self.task)
            self.task = None

    async def check_cancelled(self) -> None:
        """Raise TaskCancelledError if the pool task was cancelled."""
        if self.task is None:
            return
        record: dict[str, Any] = {}
        with contextlib.suppress(XapiError):
            record = await self.client.call("task.get_record", self.task)
        if record.get("status") in ("cancelled", "cancelling"):
            raise TaskCancelledError("TASK_CANCELLED", [self.task], method=self.what)


async def _export(
    client: XapiClient,
    path: str,
    params: dict[str, str],
    sink: Sink,
    *,
    what: str,
    progress: ProgressCallback | None,
    options: TransferOptions,
    resumable: bool,
) -> TransferResult:
    transfer = _Transfer(client, what, options)
    queue: asyncio.Queue[bytes | _Eof] = asyncio.Queue(max(1, options.buffer_chunks))
    started = time.monotonic()
    attempts = 0
    peak = 0
    total: int | None = None

    async def produce() -> None:
        nonlocal attempts, total, peak
        received = 0
        relogged = False
        while True:
            attempts += 1
            try:
                query = await transfer.query(params)
                headers = {"Range": f"bytes={received}-"} if received else {}
                # No redirects: the query carries the session id (see client._rpc).
                async with client.http.get(
                    client.endpoint(path),
                    params=query,
                    headers=headers,
                    timeout=transfer.timeout(),
                    allow_redirects=False,
                ) as resp:
                    if resp.status == 401 and not relogged:
                        relogged = True
                        await client.renew_session(query["session_id"])
                        attempts -= 1
                        continue
                    if resp.status not in (200, 206):
                        raise await _http_failure(resp, what)
                    skip = received if resp.status == 200 else 0
                    length = resp.content_length
                    announced = None if length is None else length + (received - skip)
                    if total is None:
                        total = announced
                    elif announced is not None and announced != total:
                        raise TransferError(
                            f"{what}: the pool now sends {announced} bytes, not {total}; "
                            "the source changed, the transfer cannot resume"
                        )
                    async for data in resp.content.iter_chunked(options.chunk_size):
                        if skip:
                            if len(data) <= skip:
                                skip -= len(data)
                                continue
                            data, skip = data[skip:], 0
                        await queue.put(data)
                        peak = max(peak, queue.qsize())
                        received += len(data)
                    if total is not None and received < total:
                        raise _Truncated(f"the body ended at {received} of {total} bytes")
                await queue.put(_EOF)
                return
            except _RETRYABLE as exc:
                reason = client.translate(exc, what).message
                if isinstance(exc, _Truncated):
                    reason = f"{what}: {exc}"
                await transfer.check_cancelled()
                if attempts > options.retries or not (resumable or received == 0):
                    raise TransferError(
                        f"{reason} (after {attempts} attempt(s), {received} bytes received)",
                        hint="the pool or the network dropped the transfer; it can be run again",
                    ) from None
                log.warning("%s interrupted at %d bytes: %s; retrying", what, received, reason)
                await asyncio.sleep(options.retry_delay * attempts)

    reader = asyncio.create_task(produce(), name=f"export {what}")
    delivered = 0
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                reader.result()  # raises the reader's error
                # The reader finished without EOF in the queue: cannot happen.
                raise TransferError(f"{what}: the reader stopped early")
            item = getter.result()
            if isinstance(item, _Eof):
                break
            await sink(item)
            delivered += len(item)
            await _report(progress, delivered, total)
        await reader
        result: Any = None
        if transfer.task is not None:
            # Every byte arrived: a pool slow to close its task does not
            # make the export fail, it only leaves the result unknown.
            with contextlib.suppress(XapiError, TimeoutError):
                result = await wait_task(client, transfer.task, poll_seconds=0.1, timeout=30)
        return TransferResult(delivered, attempts, time.monotonic() - started, result, peak)
    except BaseException:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        await transfer.cancel()
        raise
    finally:
        await transfer.finish()


async def export_raw_vdi(
    client: XapiClient,
    vdi: str,
    sink: Sink,
    *,
    fmt: str = "raw",
    base: str | None = None,
    progress: ProgressCallback | None = None,
    options: TransferOptions | None = None,
) -> TransferResult:
    """Stream a VDI out of the pool into ``sink`` (raw, or VHD; with
    ``base``, a differencing VHD of the blocks changed since that snapshot)."""
    if fmt not in ("raw", "vhd"):
        raise TransferError(f"unknown export format {fmt!r}")
    params = {"vdi": vdi, "format": fmt}
    if base:
        params["base"] = base
    return await _export(
        client,
        "/export_raw_vdi",
        params,
        sink,
        what=f"export of VDI {vdi} as {fmt}",
        progress=progress,
        options=options or TransferOptions(),
        resumable=True,
    )


async def export_vm(
    client: XapiClient,
    vm_uuid: str,
    sink: Sink,
    *,
    compress: str | None = None,
    progress: ProgressCallback | None = None,
    options: TransferOptions | None = None,
) -> TransferResult:
    """Stream a VM (best a snapshot) out of the pool as an XVA archive."""
    params = {"uuid": vm_uuid}
    if compress:
        params["use_compression"] = compress
    return await _export(
        client,
        "/export",
        params,
        sink,
        what=f"export of VM {vm_uuid}",
        progress=progress,
        options=options or TransferOptions(),
        resumable=False,
    )


async def export_pool_database(
    client: XapiClient,
    sink: Sink,
    *,
    progress: ProgressCallback | None = None,
    options: TransferOptions | None = None,
) -> TransferResult:
    """Stream the pool's database out of the master as XML (``GET
    /pool/xmldbdump``, what ``xe pool-dump-database`` saves and
    ``xe pool-restore-database`` reads back). Its length is not announced
    and it changes from one call to the next, so it restarts only when no
    byte was delivered yet."""
    return await _export(
        client,
        "/pool/xmldbdump",
        {},
        sink,
        what="dump of the pool database",
        progress=progress,
        options=options or TransferOptions(),
        resumable=False,
    )


async def _import(
    client: XapiClient,
    path: str,
    params: dict[str, str],
    source: AsyncIterable[bytes],
    *,
    size: int | None,
    what: str,
    progress: ProgressCallback | None,
    options: TransferOptions,
) -> TransferResult:
    transfer = _Transfer(client, what, options)
    queue: asyncio.Queue[bytes | _Eof] = asyncio.Queue(max(1, options.buffer_chunks))
    started = time.monotonic()
    sent = 0

    async def pull() -> None:
        try:
            async for data in source:
                if data:
                    await queue.put(bytes(data))
        except Exception:
            # The body must not wait for bytes that will never come: it stops
            # the request, and the source's own error is what is raised.
            await queue.put(_SOURCE_FAILED)
            raise
        await queue.put(_EOF)

    source_broke = False

    async def source_failure() -> BaseException | None:
        if source_broke:
            # It put its marker and raises next: wait for that.
            await asyncio.wait({puller})
        if puller.done() and not puller.cancelled():
            return puller.exception()
        return None

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, source_broke
        while True:
            item = await queue.get()
            if item is _SOURCE_FAILED:
                source_broke = True
                raise _SourceFailed(f"{what}: the source failed after {sent} bytes")
            if isinstance(item, _Eof):
                if size is not None and sent != size:
                    # The pool would wait for the missing bytes until the
                    # idle timeout: say what is wrong at once.
                    raise TransferError(f"{what}: the source gave {sent} bytes, not {size}")
                return
            # Large pieces from the source go out in chunk_size slices so
            # progress and flow control stay fine-grained.
            for at in range(0, len(item), options.chunk_size):
                piece = item[at : at + options.chunk_size]
                yield piece
                sent += len(piece)
                await _report(progress, sent, size)

    puller = asyncio.create_task(pull(), name=f"import {what}")
    try:
        query = await transfer.query(params)
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        try:
            async with client.http.put(
                client.endpoint(path),
                params=query,
                data=body(),
                headers=headers,
                timeout=transfer.timeout(),
                allow_redirects=False,
            ) as resp:
                if resp.status != 200:
                    raise await _http_failure(resp, what)
                await resp.read()
        except _RETRYABLE as exc:
            if (failed := await source_failure()) is not None:
                raise failed from None
            await transfer.check_cancelled()
            # The pool may have refused the data and said why in the task.
            record: dict[str, Any] = {}
            with contextlib.suppress(XapiError):
                record = await client.call("task.get_record", transfer.task)
            if record.get("status") == "failure":
                task_outcome(record, transfer.task or "")
            raise TransferError(
                f"{client.translate(exc, what).message} after {sent} bytes",
                hint="imports cannot resume; run the import again",
            ) from None
        if (failed := await source_failure()) is not None:
            raise failed from None
        assert transfer.task is not None
        result = await wait_task(client, transfer.task, poll_seconds=0.1, timeout=300)
        return TransferResult(sent, 1, time.monotonic() - started, result)
    except BaseException as exc:
        await transfer.cancel()
        if isinstance(exc, Exception) and (failed := await source_failure()) is not None:
            raise failed from None
        raise
    finally:
        if not puller.done():
            puller.cancel()
        with contextlib.suppress(BaseException):
            await puller
        await transfer.finish()


async def import_raw_vdi(
    client: XapiClient,
    vdi: str,
    source: AsyncIterable[bytes],
    *,
    fmt: str = "raw",
    size: int | None = None,
    progress: ProgressCallback | None = None,
    options: TransferOptions | None = None,
) -> TransferResult:
    """Write a raw or VHD stream into an existing VDI."""
    if fmt not in ("raw", "vhd"):
        raise TransferError(f"unknown import format {fmt!r}")
    return await _import(
        client,
        "/import_raw_vdi",
        {"vdi": vdi, "format": fmt},
        source,
        size=size,
        what=f"import into VDI {vdi} as {fmt}",
        progress=progress,
        options=options or TransferOptions(),
    )


async def import_vm(
    client: XapiClient,
    source: AsyncIterable[bytes],
    *,
    sr: str | None = None,
    size: int | None = None,
    restore: bool = False,
    force: bool = False,
    progress: ProgressCallback | None = None,
    options: TransferOptions | None = None,
) -> list[str]:
    """Import an XVA stream; returns the new VM refs."""
    params: dict[str, str] = {}
    if sr:
        params["sr_id"] = sr
    if restore:
        params["restore"] = "true"
    if force:
        params["force"] = "true"
    done = await _import(
        client,
        "/import",
        params,
        source,
        size=size,
        what="import of a VM",
        progress=progress,
        options=options or TransferOptions(),
    )
    value = done.result
    if isinstance(value, str):
        return [v for v in value.split(",") if v] if value else []
    if isinstance(value, list):
        return [str(v) for v in value]
    raise TransferError(f"the pool's import task returned {value!r}, not VM references")
