"""Writing a restore point: one VHD (and its checksum file) per disk, then the
metadata file as the commit.

Streams from XAPI are parsed in a worker thread (the VHD codec is blocking)
that pulls bytes from the event loop one piece at a time, so neither side
holds more than a block. Every stored VHD is rewritten by
:class:`~xenkeep.formats.vhd.VhdWriter` with its own uuid, its parent's uuid
(deltas) and every block's data on a 4 KiB boundary, whatever layout the
source used.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import time
import uuid as uuidlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from xenkeep.formats.errors import VhdFormatError
from xenkeep.formats.vhd import (
    DEFAULT_BLOCK_SIZE,
    DISK_DIFFERENCING,
    SECTOR,
    StreamBlock,
    VhdParent,
    VhdStreamReader,
    VhdWriter,
    vhd_timestamp,
)

from .errors import ChainBrokenError, PointNotFoundError, RepoError
from .fsutil import atomic_write, durable_unlink, fsync_dir
from .layout import DiskRecord, RestorePoint, VmDir, check_key
from .lock import ChainLock
from .reader import file_shape
from .sums import SumsWriter, block_digest

T = TypeVar("T")
BlockItem = StreamBlock | tuple[int, bytes, bytes]


def _pull(
    agen: AsyncIterator[T], loop: asyncio.AbstractEventLoop, stop: Callable[[], bool]
) -> Iterator[T]:
    """A blocking iterator (for a worker thread) over an async iterator of the
    loop; gives up when ``stop()`` turns true (the point was aborted)."""
    while True:
        fut = asyncio.run_coroutine_threadsafe(_anext_or_stop(agen), loop)
        while True:
            try:
                done, item = fut.result(timeout=0.5)
                break
            except concurrent.futures.TimeoutError:
                if stop():
                    fut.cancel()
                    raise RepoError("restore point aborted while waiting for data") from None
        if done:
            return
        yield item  # type: ignore[misc]


async def _anext_or_stop(agen: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return False, await agen.__anext__()
    except StopAsyncIteration:
        return True, None


class _ThreadReader:
    """``read(n)`` in a worker thread over an async iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")
        self.total = 0

    def read(self, size: int = -1, /) -> bytes:
        if not self._buf:
            for chunk in self._chunks:
                if chunk:
                    self._buf = memoryview(bytes(chunk))
                    break
            else:
                return b""
        n = len(self._buf) if size < 0 else min(size, len(self._buf))
        out = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        self.total += n
        return out


@dataclass
class _DiskPart:
    record: DiskRecord
    vhd_part: Path
    vhd_final: Path
    sums_part: Path
    sums_final: Path


@dataclass
class WriteProgress:
    """Bytes written so far for the disk being written (read it from any thread)."""

    disk: str = ""
    bytes: int = 0
    blocks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class PointWriter:
    """One restore point being written. Obtain it from ``Datastore.begin_point``.

    Call :meth:`write_vhd` (or :meth:`write_blocks`, :meth:`write_raw`) once
    per disk, then :meth:`commit`. Until the commit nothing of the point is
    visible; :meth:`abort` (or leaving the ``async with`` without a commit)
    removes every file written.
    """

    def __init__(
        self,
        vmdir: VmDir,
        lock: ChainLock,
        *,
        point_id: str,
        seq: int,
        parent: RestorePoint | None,
        vm_record: dict[str, Any],
        job_id: str | None,
    ) -> None:
        self.vmdir = vmdir
        self.point_id = point_id
        self.seq = seq
        self.parent = parent
        self.vm_record = vm_record
        self.job_id = job_id
        self.created = time.time()
        self.progress = WriteProgress()
        self._lock = lock
        self._disks: dict[str, _DiskPart] = {}
        self._done = False
        self._committed = False
        # Set by abort(): a disk still being written in a worker thread stops
        # at its next block instead of running on after the lock is gone.
        self._cancelled = False

    def _stopped(self) -> bool:
        return self._cancelled

    # ------------------------------------------------------------------ disks

    async def write_vhd(
        self,
        key: str,
        stream: AsyncIterable[bytes],
        *,
        delta: bool,
        vdi: dict[str, Any] | None = None,
    ) -> DiskRecord:
        """Store a disk from the bytes of a VHD stream (``export_raw_vdi?format=vhd``).

        ``delta=False``: a dynamic VHD, the whole disk. ``delta=True``: a
        differencing VHD of the blocks changed since the previous restore
        point, which becomes its parent here.
        """
        loop = asyncio.get_running_loop()
        agen = aiter(stream)

        def run() -> DiskRecord:
            reader = _ThreadReader(_pull(agen, loop, self._stopped))
            try:
                parsed = VhdStreamReader(reader)
            except VhdFormatError as exc:
                raise RepoError(f"disk {key}: the export stream is not a valid VHD: {exc}") from exc
            want = DISK_DIFFERENCING if delta else None
            if want is not None and parsed.disk_type != want:
                raise RepoError(f"disk {key}: a delta must be a differencing VHD")
            if not delta and parsed.disk_type == DISK_DIFFERENCING:
                raise RepoError(f"disk {key}: a full must be a dynamic VHD, got a differencing one")
            blocks = ((b.index, b.bitmap, b.data) for b in parsed.blocks())
            try:
                return self._store(
                    key,
                    parsed.size,
                    parsed.block_size,
                    blocks,
                    delta,
                    vdi or {},
                    lambda: reader.total,
                )
            except VhdFormatError as exc:
                raise RepoError(f"disk {key}: the export stream is damaged: {exc}") from exc

        return await asyncio.to_thread(run)

    async def write_blocks(
        self,
        key: str,
        blocks: AsyncIterable[BlockItem],
        *,
        size: int,
        delta: bool,
        block_size: int = DEFAULT_BLOCK_SIZE,
        vdi: dict[str, Any] | None = None,
    ) -> DiskRecord:
        """Store a disk from ``(block_index, bitmap, data)`` items (or
        :class:`StreamBlock`), as a full (absent blocks are zeros) or a delta
        (absent blocks and clear bitmap bits are unchanged)."""
        loop = asyncio.get_running_loop()
        agen = aiter(blocks)
        counted = [0]

        def items() -> Iterator[tuple[int, bytes, bytes]]:
            for item in _pull(agen, loop, self._stopped):
                t = (item.index, item.bitmap, item.data) if isinstance(item, StreamBlock) else item
                counted[0] += len(t[2])
                yield t

        def run() -> DiskRecord:
            return self._store(key, size, block_size, items(), delta, vdi or {}, lambda: counted[0])

        return await asyncio.to_thread(run)

    async def write_raw(
        self,
        key: str,
        stream: AsyncIterable[bytes],
        *,
        size: int,
        vdi: dict[str, Any] | None = None,
    ) -> DiskRecord:
        """Store a full disk from raw bytes (``export_raw_vdi?format=raw``);
        all-zero blocks are left absent."""
        loop = asyncio.get_running_loop()
        agen = aiter(stream)

        def run() -> DiskRecord:
            reader = _ThreadReader(_pull(agen, loop, self._stopped))
            bs = DEFAULT_BLOCK_SIZE

            def items() -> Iterator[tuple[int, bytes, bytes]]:
                ones = b"\xff" * (bs // SECTOR // 8)
                for index in range(-(-size // bs)):
                    want = min(bs, size - index * bs)
                    parts, got = [], 0
                    while got < want:
                        piece = reader.read(want - got)
                        if not piece:
                            raise RepoError(
                                f"disk {key}: raw stream ended at byte {index * bs + got} of {size}"
                            )
                        parts.append(piece)
                        got += len(piece)
                    yield index, ones, b"".join(parts)
                if reader.read(1):
                    raise RepoError(f"disk {key}: raw stream is longer than {size} bytes")

            return self._store(key, size, bs, items(), False, vdi or {}, lambda: reader.total)

        return await asyncio.to_thread(run)

    # ------------------------------------------------------------ sync core

    def _store(
        self,
        key: str,
        size: int,
        block_size: int,
        blocks: Iterator[tuple[int, bytes, bytes]],
        delta: bool,
        vdi: dict[str, Any],
        transferred: Callable[[], int],
    ) -> DiskRecord:
        check_key(key)
        if self._done:
            raise RepoError("restore point already committed or aborted")
        if key in self._disks:
            raise RepoError(f"disk {key} written twice in restore point {self.point_id}")
        parent: VhdParent | None = None
        if delta:
            parent = self._parent_for(key, size, block_size)
        file = str(uuidlib.uuid4())
        disk_dir = self.vmdir.disk_dir(key)
        disk_dir.mkdir(parents=True, exist_ok=True)
        final = self.vmdir.vhd_path(key, file)
        part = final.with_name(final.name + ".part")
        sums_final = self.vmdir.sums_path(key, file)
        sums = SumsWriter(sums_final, block_size)
        self.progress = WriteProgress(disk=key)
        zero = bytes(block_size)
        nbytes = block_size // SECTOR // 8
        ones = b"\xff" * nbytes
        count = 0
        try:
            with part.open("w+b") as out:
                writer = VhdWriter(
                    out,
                    size,
                    uuid=uuidlib.UUID(file),
                    parent=parent,
                    timestamp=vhd_timestamp(time.time()),
                    block_size=block_size,
                )
                for index, bitmap, data in blocks:
                    if self._cancelled:
                        raise RepoError(f"disk {key}: restore point {self.point_id} aborted")
                    if len(data) < block_size:
                        data = data + bytes(block_size - len(data))
                    if parent is None:
                        if data == zero:
                            continue  # sparse: an absent block of a full reads as zeros
                        bitmap = ones
                    elif len(bitmap) != nbytes:
                        raise RepoError(
                            f"disk {key}: bitmap of block {index} is {len(bitmap)} bytes"
                        )
                    try:
                        writer.write_block(index, data, bitmap)
                    except ValueError as exc:
                        raise RepoError(f"disk {key}: {exc}") from None
                    sums.add(index, block_digest(bitmap, data))
                    count += 1
                    self.progress.bytes = transferred()
                    self.progress.blocks = count
                writer.close()
                out.flush()
                os.fsync(out.fileno())
            sums.close(rename=False)
        except BaseException:
            sums.discard()
            part.unlink(missing_ok=True)
            raise
        record = DiskRecord(
            key=key,
            file=file,
            virtual_size=size,
            transfer="delta" if delta else "full",
            transferred_bytes=transferred(),
            blocks=count,
            vdi=vdi,
        )
        self._disks[key] = _DiskPart(record, part, final, sums.tmp, sums_final)
        return record

    def _parent_for(self, key: str, size: int, block_size: int) -> VhdParent:
        if self.parent is None:
            raise ChainBrokenError(
                f"VM {self.vmdir.vm_uuid} disk {key}: no previous restore point "
                "to apply a delta to",
                hint="export a full",
            )
        try:
            rec = self.parent.disk(key)
        except PointNotFoundError as exc:
            raise ChainBrokenError(
                f"VM {self.vmdir.vm_uuid} disk {key}: the previous restore point "
                f"{self.parent.id} has no such disk",
                hint="export a full",
            ) from exc
        path = self.vmdir.vhd_path(key, rec.file)
        try:
            pv = file_shape(path)
        except (OSError, VhdFormatError) as exc:
            raise ChainBrokenError(
                f"VM {self.vmdir.vm_uuid} disk {key}: previous file {path.name} unusable: {exc}",
                hint="export a full",
            ) from exc
        if pv.size != size:
            raise ChainBrokenError(
                f"VM {self.vmdir.vm_uuid} disk {key}: size changed from {pv.size} "
                f"to {size} bytes since restore point {self.parent.id}",
                hint="export a full",
            )
        if pv.block_size != block_size:
            raise ChainBrokenError(
                f"VM {self.vmdir.vm_uuid} disk {key}: block size {block_size} differs "
                f"from the chain's {pv.block_size}",
                hint="export a full",
            )
        return VhdParent(uuid=pv.uuid, timestamp=pv.timestamp, name=path.name)

    # ---------------------------------------------------------------- commit

    async def commit(self) -> RestorePoint:
        """Make the restore point visible: files to their final names, then the
        metadata file, each step durable."""
        return await asyncio.to_thread(self._commit)

    def _commit(self) -> RestorePoint:
        if self._done:
            raise RepoError("restore point already committed or aborted")
        if not self._disks:
            raise RepoError("a restore point needs at least one disk")
        dirs = set()
        for d in self._disks.values():
            d.vhd_part.replace(d.vhd_final)
            d.sums_part.replace(d.sums_final)
            dirs.add(d.vhd_final.parent)
        for p in dirs:
            fsync_dir(p)
        point = RestorePoint(
            id=self.point_id,
            seq=self.seq,
            vm_uuid=self.vmdir.vm_uuid,
            created=self.created,
            committed=time.time(),
            job_id=self.job_id,
            vm=self.vm_record,
            disks=tuple(d.record for d in self._disks.values()),
        )
        atomic_write(self.vmdir.point_path(self.point_id), point.to_json())
        self._done = True
        self._committed = True
        return point

    async def abort(self) -> None:
        """Remove everything written for this point; it never becomes visible."""
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        self._cancelled = True
        if self._done:
            return
        self._done = True
        for d in self._disks.values():
            for p in (d.vhd_part, d.vhd_final, d.sums_part, d.sums_final):
                with contextlib.suppress(OSError):
                    durable_unlink(p)
        self._disks.clear()

    @property
    def committed(self) -> bool:
        """Whether :meth:`commit` succeeded."""
        return self._committed
