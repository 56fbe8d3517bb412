"""Writing an XVA: ova.xml, then each disk as 1 MiB chunks with their XXH64.

Archive order, which XAPI's importer needs (it reads the stream once)::

    ova.xml
    <vdi>/<index>, <vdi>/<index>.xxhash     for each VDI in increasing id order,
    ...                                     chunk indexes strictly increasing
    <two zero blocks>

All-zero chunks are left out, except the first and the last of each disk:
XAPI sizes the disk from the VDI record and leaves absent chunks unwritten, so
they read as zeros, and the last chunk shows the stream covered the whole disk.
Holes of a sparse source file are found with ``SEEK_DATA`` and never read.

The output is deterministic: member order, headers (:mod:`.tar`), the mtime
and every record are inputs, so the same inputs give the same bytes. Memory
use is one chunk, whatever the disk size.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..streams import read_upto
from .members import (
    CHUNK_RE,
    CHUNK_SIZE,
    OVA_XML,
    ZERO_CHUNK,
    ProgressFn,
    chunk_name,
    xxhash_hex,
)
from .records import XvaHeader, XvaObject, XvaVersion, render_ova_xml
from .tar import BLOCK, tar_header


@dataclass
class VdiWriteStats:
    """What :meth:`XvaWriter.add_vdi` wrote for one disk."""

    chunks_written: int = 0
    chunks_skipped: int = 0
    bytes_read: int = 0


class XvaWriter:
    """Streams an XVA archive to ``out``, enforcing the member order XAPI needs.

    Call :meth:`add_ova_xml` once, then :meth:`add_vdi` (or :meth:`add_chunk`)
    for each VDI in increasing id order, then :meth:`close`.
    """

    def __init__(self, out: BinaryIO, *, mtime: int) -> None:
        if mtime < 0:
            raise ValueError("mtime must not be negative")
        self._out = out
        self._mtime = mtime
        self._state = "start"
        self._vdi: str | None = None
        self._last_index = -1
        self._done_vdis: list[str] = []
        self.bytes_written = 0

    def _member(self, name: str, data: bytes) -> None:
        self._out.write(tar_header(name, len(data), self._mtime))
        self._out.write(data)
        pad = -len(data) % BLOCK
        if pad:
            self._out.write(bytes(pad))
        self.bytes_written += BLOCK + len(data) + pad

    def add_ova_xml(self, data: bytes) -> None:
        """Write ``ova.xml``; it must be the first member."""
        if self._state != "start":
            raise ValueError("ova.xml must be the first member")
        self._member(OVA_XML, data)
        self._state = "disks"

    def add_chunk(self, vdi_id: str, index: int, data: bytes) -> None:
        """Write one chunk and its ``.xxhash`` member.

        Chunks of a VDI must come with increasing ``index``; VDIs in increasing
        lexicographic order of their ids, each one once.
        """
        if self._state != "disks":
            raise ValueError("chunks go after ova.xml and before close()")
        if not CHUNK_RE.match(chunk_name(vdi_id, index)) or index < 0:
            raise ValueError(f"bad chunk name for VDI {vdi_id!r} index {index}")
        if len(data) > CHUNK_SIZE or not data:
            raise ValueError(f"chunk of {len(data)} bytes; 1 .. {CHUNK_SIZE} allowed")
        if vdi_id != self._vdi:
            if self._vdi is not None:
                self._done_vdis.append(self._vdi)
            if self._done_vdis and vdi_id <= self._done_vdis[-1]:
                raise ValueError(f"VDI {vdi_id} after {self._done_vdis[-1]}: ids must increase")
            self._vdi = vdi_id
            self._last_index = -1
        if index <= self._last_index:
            raise ValueError(f"chunk {index} of {vdi_id} after chunk {self._last_index}")
        self._last_index = index
        name = chunk_name(vdi_id, index)
        self._member(name, data)
        self._member(name + ".xxhash", xxhash_hex(data).encode("ascii"))

    def add_vdi(
        self,
        vdi_id: str,
        src: BinaryIO,
        size: int,
        *,
        progress: ProgressFn | None = None,
    ) -> VdiWriteStats:
        """Write a VDI of ``size`` bytes read from ``src``, leaving out zero chunks.

        ``src`` is read sequentially from its current position. If it ends
        before ``size`` bytes the rest of the disk is zeros (a raw image that
        is smaller than the virtual disk). When ``src`` is a regular file, its
        holes are found with ``SEEK_DATA`` and never read. ``progress`` gets
        the disk bytes covered after each chunk.
        """
        if size <= 0:
            raise ValueError("VDI size must be positive")
        stats = VdiWriteStats()
        last = (size - 1) // CHUNK_SIZE
        holes = _HoleFinder(src)
        eof = False
        for index in range(last + 1):
            length = min(CHUNK_SIZE, size - index * CHUNK_SIZE)
            data = b""
            if not eof:
                if holes.is_hole(index * CHUNK_SIZE, length):
                    src.seek(index * CHUNK_SIZE + length + holes.base)
                    data = ZERO_CHUNK[:length]
                else:
                    if holes.active:
                        # SEEK_DATA moved the shared file offset under the
                        # buffered reader: put it back where this chunk starts.
                        src.seek(holes.base + index * CHUNK_SIZE)
                    data = read_upto(src, length)
                    stats.bytes_read += len(data)
                    if len(data) < length:
                        eof = True
                        data += bytes(length - len(data))
            if not data:
                data = ZERO_CHUNK[:length]
            if index in (0, last) or data != ZERO_CHUNK[:length]:
                self.add_chunk(vdi_id, index, data)
                stats.chunks_written += 1
            else:
                stats.chunks_skipped += 1
            if progress is not None:
                progress(index * CHUNK_SIZE + length)
        return stats

    def close(self) -> None:
        """Write the end-of-archive marker (two zero blocks) and flush."""
        if self._state != "disks":
            raise ValueError("close() needs ova.xml to have been written, once")
        self._out.write(bytes(2 * BLOCK))
        self.bytes_written += 2 * BLOCK
        self._out.flush()
        self._state = "closed"


class _HoleFinder:
    """Answers "is this range a hole?" for regular files, "no" for anything else."""

    def __init__(self, src: BinaryIO) -> None:
        self._fd: int | None = None
        self.base = 0
        self._next_data = 0
        try:
            fd = src.fileno()
            self.base = src.tell()
        except (OSError, ValueError, AttributeError):
            return
        try:
            self._next_data = os.lseek(fd, self.base, os.SEEK_DATA) - self.base
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                return  # pipes, sockets, file systems without SEEK_DATA
            self._next_data = -1  # no data at or after base: the rest is one hole
        self._fd = fd

    @property
    def active(self) -> bool:
        """True when holes are looked up with SEEK_DATA on the source's fd."""
        return self._fd is not None

    def is_hole(self, offset: int, length: int) -> bool:
        if self._fd is None:
            return False
        if self._next_data == -1:
            return True
        if self._next_data >= offset + length:
            return True
        if self._next_data > offset:
            return False
        try:
            self._next_data = os.lseek(self._fd, self.base + offset, os.SEEK_DATA) - self.base
        except OSError:
            self._next_data = -1
            return True
        return self._next_data >= offset + length


@dataclass
class XvaWriteStats:
    """Figures of one :func:`write_xva` run."""

    bytes_written: int
    chunks_written: int
    chunks_skipped: int


def write_xva(
    out: BinaryIO,
    version: XvaVersion,
    objects: Sequence[XvaObject],
    disks: Mapping[str, Path],
    *,
    mtime: int,
    progress: ProgressFn | None = None,
) -> XvaWriteStats:
    """Stream a VM: ova.xml of ``objects``, then each VDI's raw image from ``disks``.

    ``disks`` maps every VDI object's id to a raw disk image. An image may be
    smaller than its VDI's ``virtual_size`` (the rest of the disk is zeros),
    never larger. ``mtime`` is the only timestamp in the archive (pass
    ``SOURCE_DATE_EPOCH``). ``progress`` gets the disk bytes covered so far,
    all disks together.
    """
    sizes = XvaHeader(version.as_struct(), tuple(objects)).vdi_sizes()
    if set(disks) != set(sizes):
        raise ValueError(
            f"disks for {sorted(disks)} but the records list VDIs {sorted(sizes)}: "
            "each VDI needs exactly one image"
        )
    for vdi_id, path in disks.items():
        image_size = Path(path).stat().st_size
        if image_size > sizes[vdi_id]:
            raise ValueError(
                f"raw image of {image_size} bytes exceeds the virtual size {sizes[vdi_id]} "
                f"of VDI {vdi_id}"
            )
    writer = XvaWriter(out, mtime=mtime)
    writer.add_ova_xml(render_ova_xml(version, objects))
    written = skipped = done = 0
    for vdi_id in sorted(disks):
        with Path(disks[vdi_id]).open("rb") as src:
            stats = writer.add_vdi(vdi_id, src, sizes[vdi_id], progress=_after(progress, done))
        written += stats.chunks_written
        skipped += stats.chunks_skipped
        done += sizes[vdi_id]
    writer.close()
    return XvaWriteStats(writer.bytes_written, written, skipped)


def _after(progress: ProgressFn | None, base: int) -> ProgressFn | None:
    # One disk's progress as a part of the whole archive's.
    if progress is None:
        return None
    return lambda covered: progress(base + covered)
