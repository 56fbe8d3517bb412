"""HTTP transfer handlers: disks and VMs in and out of the simulated pool.

``GET /export_raw_vdi``, ``PUT /import_raw_vdi``, ``GET /export`` and
``PUT /import`` behave like XAPI's handlers of the same names: authentication
by ``session_id`` query parameter or HTTP basic auth, an optional ``task_id``
whose progress follows the bytes moved and which ends with the result or the
error. Bodies stream in pieces; injected faults (dropped connections,
throttling) apply to every body byte. ``POST /sim/faults`` is the HTTP door to
fault injection for clients without an RPC session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from aiohttp import web

from . import storage
from .api import SimPool
from .errors import TASK_CANCELLED, XapiError

log = logging.getLogger(__name__)
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
        if self.task is not None and self.pool.task_cancelling(self.task):
            self.pool.task_failed(self.task, [TASK_CANCELLED, self.task])
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
                self.pool.task_progress(self.task, progress)
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


SENDFILE_SEGMENT = 32 * 1024 * 1024


async def _sendfile(
    request: web.Request, meter: Meter, f: BinaryIO, offset: int, count: int
) -> None:
    loop = asyncio.get_running_loop()
    transport = request.transport
    assert transport is not None
    end = offset + count
    while offset < end:
        n = min(SENDFILE_SEGMENT, end - offset)
        await meter.account(n)
        await loop.sendfile(transport, f, offset, n)
        offset += n


async def _send_fast(
    request: web.Request,
    resp: web.StreamResponse,
    meter: Meter,
    path: Path,
    size: int,
    stream: Iterator[bytes],
) -> None:
    """Send a raw or VHD export with sendfile(2) for the disk data.

    Only used when no fault shapes the stream: the bytes are those of the
    codec's stream (its headers are taken from it; data blocks come straight
    from the file, which reads holes as zeros).
    """
    from . import vhdio

    with path.open("rb") as f:
        if not isinstance(stream, vhdio.VhdStream):
            await _sendfile(request, meter, f, 0, size)
            return
        sent = 0
        async for piece in iterate(stream):
            await meter.send(resp, piece)
            sent += len(piece)
            if sent >= stream.data_offset:
                break
        assert sent == stream.data_offset, (sent, stream.data_offset)
        bitmap = b"\xff" * vhdio.SECTOR
        for index in stream.blocks:
            offset = index * vhdio.BLOCK_SIZE
            inside = min(vhdio.BLOCK_SIZE, size - offset)
            await meter.send(resp, bitmap)
            await _sendfile(request, meter, f, offset, inside)
            if inside < vhdio.BLOCK_SIZE:
                await meter.send(resp, bytes(vhdio.BLOCK_SIZE - inside))
        await meter.send(resp, stream.footer())


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="Unauthorized",
        headers={"WWW-Authenticate": 'Basic realm="xapi"'},
    )


def authenticate(pool: SimPool, request: web.Request) -> tuple[str, bool] | None:
    """The session for this request and whether it is a temporary one."""
    sid = request.query.get("session_id")
    if sid is None:
        sid = request.cookies.get("session_id")
    if sid is not None:
        try:
            return pool.check_session(sid), False
        except XapiError:
            return None
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            user, _, pwd = base64.b64decode(auth[6:]).decode().partition(":")
            return pool.login(user, pwd, "http-basic"), True
        except (XapiError, ValueError):
            return None
    return None


def resolve(pool: SimPool, cls: str, value: str | None) -> str:
    """A ref from a ``ref`` or ``uuid`` query value; HANDLE_INVALID otherwise."""
    if value is None:
        raise XapiError("HANDLE_INVALID", cls, "")
    if pool.db.cls_of.get(value) == cls:
        return value
    ref = pool.db.by_uuid.get(value)
    if ref is not None and pool.db.cls_of.get(ref) == cls:
        return ref
    raise XapiError("HANDLE_INVALID", cls, value)


async def iterate(it: Iterator[T]) -> AsyncIterator[T]:
    """Pull pieces of a blocking iterator in a worker thread."""
    done = object()
    while True:
        piece = await asyncio.to_thread(next, it, done)
        if piece is done:
            return
        yield cast(T, piece)


def _task_of(pool: SimPool, request: web.Request) -> str | None:
    task = request.query.get("task_id")
    if task is not None and pool.db.exists("task", task):
        return task
    return None


def _error_response(e: XapiError, status: int = 500) -> web.Response:
    return web.Response(status=status, text="\n".join(e.description), content_type="text/plain")


def make_transfer_routes(pool: SimPool) -> list[web.RouteDef]:
    """Routes of the transfer handlers for one pool."""

    async def guarded(request: web.Request, handler: Any) -> web.StreamResponse:
        auth = authenticate(pool, request)
        if auth is None:
            return _unauthorized()
        session, temporary = auth
        task = _task_of(pool, request)
        try:
            return await handler(request, task)  # type: ignore[no-any-return]
        except TransferAborted as e:
            log.info("%s aborted: %s", request.path, e)
            if task is not None and pool.db.get("task", task)["status"] == "pending":
                pool.task_failed(task, ["INTERNAL_ERROR", str(e)])
            # The connection is already cut; hand aiohttp something to discard.
            return e.response or web.Response(status=500, text=str(e))
        except XapiError as e:
            if task is not None:
                pool.task_failed(task, e.description)
            return _error_response(e, 404 if e.code == "HANDLE_INVALID" else 500)
        finally:
            if temporary and pool.db.exists("session", session):
                pool.db.destroy("session", session)

    async def export_raw_vdi(request: web.Request) -> web.StreamResponse:
        return await guarded(request, _export_raw_vdi)

    async def _export_raw_vdi(request: web.Request, task: str | None) -> web.StreamResponse:
        from . import vhdio

        vdi = resolve(pool, "VDI", request.query.get("vdi"))
        rec = pool.db.get("VDI", vdi)
        size = int(rec["virtual_size"])
        path = pool.vdi_path(vdi)
        fmt = request.query.get("format", "raw")
        stream: Iterator[bytes]
        if fmt == "raw":
            stream, total = vhdio.raw_stream(path, size), size
        elif fmt == "vhd":
            base_q = request.query.get("base")
            blocks: list[int] | None = None
            parent: uuidlib.UUID | None = None
            if base_q:
                base = resolve(pool, "VDI", base_q)
                base_rec = pool.db.get("VDI", base)
                blocks = await asyncio.to_thread(storage.changed_blocks, pool.vdi_path(base), path)
                parent = uuidlib.UUID(base_rec["uuid"])
            vhd = await asyncio.to_thread(
                vhdio.vhd_stream, path, size, blocks, parent, disk_uuid=uuidlib.UUID(rec["uuid"])
            )
            stream, total = vhd, vhd.size
        else:
            raise XapiError("INVALID_VALUE", "format", fmt)
        resp = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(total)}
        )
        await resp.prepare(request)
        meter = Meter(pool, request, task, total)
        if meter.plain:
            await _send_fast(request, resp, meter, path, size, stream)
        else:
            async for piece in iterate(stream):
                await meter.send(resp, piece)
        await resp.write_eof()
        if task is not None:
            pool.task_done(task, vdi)
        return resp

    async def import_raw_vdi(request: web.Request) -> web.StreamResponse:
        return await guarded(request, _import_raw_vdi)

    async def _import_raw_vdi(request: web.Request, task: str | None) -> web.StreamResponse:
        from . import vhdio

        vdi = resolve(pool, "VDI", request.query.get("vdi"))
        rec = pool.db.get("VDI", vdi)
        if rec["read_only"]:
            raise XapiError("VDI_READONLY", vdi)
        size = int(rec["virtual_size"])
        fmt = request.query.get("format", "raw")
        if fmt not in ("raw", "vhd"):
            raise XapiError("INVALID_VALUE", "format", fmt)
        if pool.faults.sr_is_full(rec["SR"]):
            raise XapiError("SR_FULL", request.content_length or 0, 0)
        total = request.content_length or size
        meter = Meter(pool, request, task, total)
        reader = cast(BinaryIO, BodyReader(meter, asyncio.get_running_loop()))
        path = pool.vdi_path(vdi)
        try:
            if fmt == "raw":
                written = await asyncio.to_thread(vhdio.import_raw, reader, path, size)
            else:
                written = await asyncio.to_thread(vhdio.import_vhd, reader, path, size)
        except vhdio.VhdError as e:
            pool.refresh_vdi(vdi)
            raise XapiError("VDI_IO_ERROR", f"{fmt} import failed: {e}") from e
        # CBT cannot see inside the codec's writes: mark the range it covered.
        pool.note_write(vdi, 0, written if fmt == "raw" else size)
        if task is not None:
            pool.task_done(task, vdi)
        return web.Response(status=200, text="")

    async def sim_faults(request: web.Request) -> web.StreamResponse:
        auth = authenticate(pool, request)
        if auth is None:
            return _unauthorized()
        session, temporary = auth
        try:
            if request.method == "GET":
                return web.json_response([f.as_dict() for f in pool.faults.active])
            if request.method == "DELETE":
                pool.faults.clear(request.query.get("id"))
                return web.json_response({"cleared": True})
            doc = await request.json()
            try:
                fault = pool.faults.inject(str(doc["kind"]), dict(doc.get("params", {})))
            except (KeyError, TypeError, ValueError) as e:
                return web.json_response({"error": repr(e)}, status=400)
            except XapiError as e:
                return web.json_response({"error": e.description}, status=400)
            return web.json_response(fault.as_dict())
        finally:
            if temporary and pool.db.exists("session", session):
                pool.db.destroy("session", session)

    from .xvatransfer import make_xva_handlers

    export_xva, import_xva = make_xva_handlers(pool, guarded)
    return [
        web.get("/export_raw_vdi", export_raw_vdi),
        web.put("/import_raw_vdi", import_raw_vdi),
        web.get("/export", export_xva),
        web.put("/import", import_xva),
        web.route("*", "/sim/faults", sim_faults),
    ]
