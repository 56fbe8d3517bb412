"""``GET /export_raw_vdi`` and ``PUT /import_raw_vdi``: one disk, raw or VHD.

An export streams the VDI's file as raw bytes (holes as zeros) or as a
dynamic VHD of its non-zero 2 MiB blocks; with ``base=`` a differencing VHD
of the blocks whose content differs from the base VDI's (parent UUID = the
base's uuid), whole or, when the pool exports partial blocks, holding only
the sectors that differ. When no fault shapes the stream, the disk data goes out with
sendfile(2). An import writes a raw or VHD body into the VDI, then marks the
range it covered for CBT and accounting.
"""

from __future__ import annotations

import asyncio
import functools
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from aiohttp import web

from .. import storage, vhdio
from ..errors import XapiError
from ..pool import SimPool
from .guard import resolve
from .meter import BodyReader, Meter, iterate

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
    if isinstance(stream, vhdio.VhdStream) and stream.base is not None:
        # Partial blocks are composed from two files: no sendfile for them.
        async for piece in iterate(stream):
            await meter.send(resp, piece)
        return
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


async def export_raw_vdi(
    pool: SimPool, request: web.Request, task: str | None
) -> web.StreamResponse:
    """Stream a VDI as raw bytes or as a (differencing) VHD."""
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
            functools.partial(
                vhdio.vhd_stream,
                path,
                size,
                blocks,
                parent,
                disk_uuid=uuidlib.UUID(rec["uuid"]),
                # Partial blocks, as a real differencing disk can hold them.
                base=pool.vdi_path(base) if base_q and pool.partial_blocks else None,
            )
        )
        stream, total = vhd, vhd.size
    else:
        raise XapiError("INVALID_VALUE", "format", fmt)
    resp = web.StreamResponse(
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(total)}
    )
    await resp.prepare(request)
    meter = Meter(pool, request, task, total)
    try:
        if meter.plain:
            await _send_fast(request, resp, meter, path, size, stream)
        else:
            async for piece in iterate(stream):
                await meter.send(resp, piece)
    finally:
        pool.wire.exported(rec["uuid"], request.query.get("base"), fmt, meter.done)
    await resp.write_eof()
    if task is not None:
        pool.tasks.task_done(task, vdi)
    return resp


async def import_raw_vdi(
    pool: SimPool, request: web.Request, task: str | None
) -> web.StreamResponse:
    """Write a raw or VHD body into an existing VDI."""
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
    # The SR fills up as a real one does: new blocks past its free space fail.
    space = pool.disks.free_space(rec["SR"])
    ok = False
    try:
        if fmt == "raw":
            written = await asyncio.to_thread(vhdio.import_raw, reader, path, size, space=space)
        else:
            written = await asyncio.to_thread(vhdio.import_vhd, reader, path, size, space=space)
        ok = True
    except vhdio.SpaceExhausted as e:
        pool.disks.refresh_vdi(vdi)
        raise XapiError("SR_FULL", total, space) from e
    except vhdio.VhdError as e:
        pool.disks.refresh_vdi(vdi)
        raise XapiError("VDI_IO_ERROR", f"{fmt} import failed: {e}") from e
    finally:
        pool.wire.imported(rec["uuid"], fmt, meter.done, ok)
    # CBT cannot see inside the codec's writes: mark the range it covered.
    pool.disks.note_write(vdi, 0, written if fmt == "raw" else size)
    if task is not None:
        pool.tasks.task_done(task, vdi)
    return web.Response(status=200, text="")
