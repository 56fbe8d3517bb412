"""Disk files behind VDIs: sparse files, reflink clones and block comparison.

Each VDI is a sparse file ``<state>/sr/<sr uuid>/<vdi uuid>.img`` whose size
is the VDI's virtual size. Snapshots, clones and copies share extents with
``FICLONE`` where the filesystem supports it (XFS with reflink, btrfs) and
otherwise copy only the allocated ranges found with ``SEEK_DATA`` /
``SEEK_HOLE``, so unallocated space is never read or written.

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
from collections.abc import Iterator
from pathlib import Path

FICLONE = 0x40049409
CHUNK = 1024 * 1024
VHD_BLOCK = 2 * 1024 * 1024
CBT_BLOCK = 64 * 1024


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


def changed_blocks(base: Path, current: Path, block_size: int = VHD_BLOCK) -> list[int]:
    """Indexes of the blocks whose content differs between two files.

    Compared by reading, so the answer does not depend on how the files
    share extents; ranges that are holes in both files are skipped.
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
