"""Disk files behind VDIs: sparse files, reflink clones and block comparison.

Each VDI is a sparse file ``<state>/sr/<sr uuid>/<vdi uuid>.img`` whose size
is the VDI's virtual size. Snapshots, clones and copies share extents with
``FICLONE`` where the filesystem supports it (XFS with reflink, btrfs) and
otherwise copy only the allocated ranges found with ``SEEK_DATA`` /
``SEEK_HOLE``, so unallocated space is never read or written.

A delta export finds the blocks that differ between two snapshots from their
extent maps (``FIEMAP``) where both map a block to the same physical pieces,
and reads only the rest, so it costs the delta rather than the disk.

Changed-block tracking keeps, per VDI, a log: a bitmap of the 64 KiB blocks
written since the log was started and the uuid of the VDI whose log precedes
it (the snapshot taken when this log started). ``list_changed_blocks`` ORs
the bitmaps along that chain.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FICLONE = 0x40049409
CHUNK = 1024 * 1024
VHD_BLOCK = 2 * 1024 * 1024
CBT_BLOCK = 64 * 1024

# linux/fiemap.h: struct fiemap is a 32-byte header then fm_extent_count
# 56-byte struct fiemap_extent (reserved fields skipped).
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_UNWRITTEN = 0x800
FIEMAP_BATCH = 256
_FIEMAP_HEADER = struct.Struct("=QQIIII")
_FIEMAP_EXTENT = struct.Struct("=QQQ16xI12x")
# UNKNOWN, DELALLOC, ENCODED, DATA_ENCRYPTED, NOT_ALIGNED, DATA_INLINE,
# DATA_TAIL: the physical address does not (alone) say what a read returns.
_FIEMAP_OPAQUE = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400
_FIEMAP_UNSUPPORTED = {errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADR}


def create_sparse(path: Path, size: int) -> None:
    """Create an all-zero sparse file of ``size`` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as f:
        f.truncate(size)


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) of the allocated ranges of an open file."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        pos = end


def has_data(fd: int, offset: int, length: int) -> bool:
    """True if any byte in the range may be allocated."""
    try:
        start = os.lseek(fd, offset, os.SEEK_DATA)
    except OSError as e:
        if e.errno == errno.ENXIO:
            return False
        raise
    return start < offset + length


def clone_file(src: Path, dest: Path) -> None:
    """Make ``dest`` an independent copy of ``src`` without copying holes.

    Tries a reflink first; falls back to copying allocated ranges.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = src.stat().st_size
    with src.open("rb") as s, dest.open("xb") as d:
        try:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        except OSError:
            d.truncate(size)
            for off, length in data_ranges(s.fileno(), size):
                _copy_range(s.fileno(), d.fileno(), off, length)
        else:
            return


def _copy_range(src_fd: int, dest_fd: int, off: int, length: int) -> None:
    end = off + length
    while off < end:
        n = min(CHUNK, end - off)
        buf = os.pread(src_fd, n, off)
        if not buf:
            break
        if buf.count(0) != len(buf):
            os.pwrite(dest_fd, buf, off)
        off += len(buf)


def allocated_bytes(path: Path) -> int:
    """Bytes the file occupies on disk."""
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def read_block(fd: int, offset: int, length: int) -> bytes:
    """Read a range; bytes past the end or in holes read as zeros."""
    buf = os.pread(fd, length, offset) if has_data(fd, offset, length) else b""
    if len(buf) < length:
        buf += bytes(length - len(buf))
    return buf


@dataclass(frozen=True)
class BlockComparison:
    """What :func:`compare_blocks` found and what it cost.

    ``blocks_by_mapping`` blocks were judged unchanged from the extent maps
    alone (holes in both files included); ``blocks_read`` blocks were read
    from both files and compared. ``mapped`` is False when the extent maps
    were unavailable (from the first block, or from where FIEMAP failed);
    holes in both files then count in neither.
    """

    changed: list[int]
    blocks_read: int
    blocks_by_mapping: int
    mapped: bool


def changed_blocks(base: Path, current: Path, block_size: int = VHD_BLOCK) -> list[int]:
    """Indexes of the blocks whose content differs between two files.

    The answer is the one a byte-by-byte comparison gives (see
    :func:`compare_blocks`); the files must not change while compared.
    """
    return compare_blocks(base, current, block_size).changed


def compare_blocks(base: Path, current: Path, block_size: int = VHD_BLOCK) -> BlockComparison:
    """Compare two files block by block, reading only what the extent maps cannot settle.

    Snapshots made with ``FICLONE`` share the physical extents of every block
    not written since, and a reflink filesystem never overwrites a shared
    extent in place, so a block both files map to the same physical pieces
    holds the same bytes: real XAPI likewise finds a delta from the VHD block
    map without reading data. Any other block (different pieces, a hole
    against an unwritten extent, an extent whose bytes are not plainly on
    disk, a range past the end of ``base``) is read from both and compared,
    so the answer equals :func:`_changed_blocks_by_reading`'s. Without
    FIEMAP (tmpfs) or across filesystems every block is read.
    """
    size = current.stat().st_size
    out: list[int] = []
    read = by_mapping = 0
    with base.open("rb") as b, current.open("rb") as c:
        bfd, cfd = b.fileno(), c.fileno()
        base_size = os.fstat(bfd).st_size
        maps: tuple[_ExtentWindows, _ExtentWindows] | None = None
        # Physical addresses only compare within one filesystem.
        if os.fstat(bfd).st_dev == os.fstat(cfd).st_dev:
            maps = _ExtentWindows(bfd, size), _ExtentWindows(cfd, size)
        mapped = maps is not None
        for index in range((size + block_size - 1) // block_size):
            off = index * block_size
            length = min(block_size, size - off)
            # Past base's end its bytes read as zeros whatever its map says.
            if maps is not None and off + length <= base_size:
                try:
                    bp = maps[0].pieces(off, off + length)
                    cp = maps[1].pieces(off, off + length)
                except FiemapUnsupported:
                    maps, mapped = None, False
                else:
                    if bp is not None and bp == cp:
                        by_mapping += 1
                        continue
            if not has_data(bfd, off, length) and not has_data(cfd, off, length):
                continue
            read += 1
            if read_block(bfd, off, length) != read_block(cfd, off, length):
                out.append(index)
    return BlockComparison(out, read, by_mapping, mapped)


def _changed_blocks_by_reading(base: Path, current: Path, block_size: int = VHD_BLOCK) -> list[int]:
    """:func:`changed_blocks` by reading every block holding data in either file.

    Kept as the reference the extent-map shortcut is tested against.
    """
    size = current.stat().st_size
    out: list[int] = []
    with base.open("rb") as b, current.open("rb") as c:
        bfd, cfd = b.fileno(), c.fileno()
        for index in range((size + block_size - 1) // block_size):
            off = index * block_size
            length = min(block_size, size - off)
            if not has_data(bfd, off, length) and not has_data(cfd, off, length):
                continue
            if read_block(bfd, off, length) != read_block(cfd, off, length):
                out.append(index)
    return out


# -- extent maps (FIEMAP) -------------------------------------------------
class FiemapUnsupported(OSError):
    """The filesystem cannot report extent maps (tmpfs, some FUSE and network filesystems)."""


@dataclass(frozen=True)
class Extent:
    """One FIEMAP extent: ``length`` bytes at ``logical`` stored at ``physical``."""

    logical: int
    physical: int
    length: int
    flags: int


def fiemap(fd: int, start: int, length: int, batch: int = FIEMAP_BATCH) -> Iterator[Extent]:
    """Yield the extents of an open file overlapping ``[start, start + length)``.

    In logical order, ``batch`` per ioctl, so memory does not grow with the
    file's size or fragmentation. Dirty data is written back first
    (``FIEMAP_FLAG_SYNC``) so the map describes what a read would return.
    The first extent may begin before ``start``, the last end after the range.
    Raises :class:`FiemapUnsupported` if the filesystem has no FIEMAP.
    """
    pos, end = start, start + length
    buf = bytearray(_FIEMAP_HEADER.size + batch * _FIEMAP_EXTENT.size)
    while pos < end:
        _FIEMAP_HEADER.pack_into(buf, 0, pos, end - pos, FIEMAP_FLAG_SYNC, 0, batch, 0)
        try:
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
        except OSError as e:
            if e.errno in _FIEMAP_UNSUPPORTED:
                raise FiemapUnsupported(e.errno, f"FIEMAP: {os.strerror(e.errno)}") from e
            raise
        mapped = _FIEMAP_HEADER.unpack_from(buf)[3]
        if mapped == 0:
            return
        last_end = pos
        for i in range(mapped):
            logical, physical, ext_len, flags = _FIEMAP_EXTENT.unpack_from(
                buf, _FIEMAP_HEADER.size + i * _FIEMAP_EXTENT.size
            )
            yield Extent(logical, physical, ext_len, flags)
            if flags & FIEMAP_EXTENT_LAST:
                return
            last_end = logical + ext_len
        if last_end <= pos:
            # A filesystem that reports no progress would loop forever.
            raise FiemapUnsupported(errno.EIO, "FIEMAP: extent map does not advance")
        pos = last_end


# (logical, physical, length, unwritten): a contiguous piece of a block's map.
_Piece = tuple[int, int, int, bool]


class _ExtentWindows:
    """One file's extent map served one block window at a time, in ascending order.

    Holds only the extents overlapping the current window plus one read
    ahead, and at most one FIEMAP batch: bounded by the block size over the
    filesystem block size, not by the file's size.
    """

    def __init__(self, fd: int, size: int) -> None:
        self._extents = fiemap(fd, 0, size, FIEMAP_BATCH)
        self._held: deque[Extent] = deque()
        self._done = False

    def pieces(self, start: int, end: int) -> list[_Piece] | None:
        """The merged pieces mapping ``[start, end)``; None if a piece's bytes
        are not plainly on disk (delayed allocation, compressed, inline, ...).

        Windows must be asked for in ascending order.
        """
        while self._held and self._held[0].logical + self._held[0].length <= start:
            self._held.popleft()
        while not self._done and (not self._held or self._held[-1].logical < end):
            ext = next(self._extents, None)
            if ext is None:
                self._done = True
            elif ext.logical + ext.length > start:
                self._held.append(ext)
        out: list[_Piece] = []
        for ext in self._held:
            if ext.logical >= end:
                break
            if ext.flags & _FIEMAP_OPAQUE:
                return None
            lo, hi = max(ext.logical, start), min(ext.logical + ext.length, end)
            phys = ext.physical + (lo - ext.logical)
            unwritten = bool(ext.flags & FIEMAP_EXTENT_UNWRITTEN)
            # Filesystems split extents differently per file (XFS reports each
            # CoW remap apart): join pieces contiguous in both address spaces.
            if out:
                plo, pphys, plen, punw = out[-1]
                if plo + plen == lo and pphys + plen == phys and punw == unwritten:
                    out[-1] = (plo, pphys, plen + hi - lo, punw)
                    continue
            out.append((lo, phys, hi - lo, unwritten))
        return out


def nonzero_blocks(path: Path, block_size: int = VHD_BLOCK) -> list[int]:
    """Indexes of the blocks holding any non-zero byte."""
    size = path.stat().st_size
    out: list[int] = []
    with path.open("rb") as f:
        fd = f.fileno()
        seen: set[int] = set()
        for off, length in data_ranges(fd, size):
            first, last = off // block_size, (off + length - 1) // block_size
            for index in range(first, last + 1):
                if index in seen:
                    continue
                seen.add(index)
                boff = index * block_size
                buf = read_block(fd, boff, min(block_size, size - boff))
                if buf.count(0) != len(buf):
                    out.append(index)
    return sorted(out)


def write_range(path: Path, offset: int, data: bytes) -> None:
    """Write bytes at an offset, keeping all-zero chunks over holes as holes."""
    with path.open("r+b") as f:
        fd = f.fileno()
        for i in range(0, len(data), CHUNK):
            piece = data[i : i + CHUNK]
            off = offset + i
            if piece.count(0) == len(piece) and not has_data(fd, off, len(piece)):
                continue
            os.pwrite(fd, piece, off)


# -- changed-block tracking ----------------------------------------------
def cbt_bitmap_len(virtual_size: int) -> int:
    blocks = (virtual_size + CBT_BLOCK - 1) // CBT_BLOCK
    return (blocks + 7) // 8


def cbt_mark(bitmap: bytearray, offset: int, length: int) -> None:
    """Set the bits of the 64 KiB blocks touched by a write (MSB first)."""
    if length <= 0:
        return
    first, last = offset // CBT_BLOCK, (offset + length - 1) // CBT_BLOCK
    for block in range(first, last + 1):
        if block // 8 < len(bitmap):
            bitmap[block // 8] |= 0x80 >> (block % 8)


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
