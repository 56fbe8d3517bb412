"""Raw and VHD streams into an existing sparse disk file (``PUT /import_raw_vdi``).

The source is read forward only (``read()``), in pieces of at most 1 MiB;
all-zero pieces landing on a hole are not written, so the file stays sparse.
Fixed, dynamic and differencing VHDs are accepted; anything malformed,
truncated or larger than the disk raises VhdError naming the byte offset.
"""

from __future__ import annotations

import errno
import os
import struct
import uuid
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .layout import (
    ABSENT,
    DISK_DIFFERENCING,
    DISK_FIXED,
    FOOTER_COOKIE,
    NO_OFFSET,
    PIECE,
    SECTOR,
    ZERO_PIECE,
    VhdError,
    parse_footer,
    parse_header,
)


class _Source:
    """Sequential reads from a file object that only offers read()."""

    def __init__(self, src: BinaryIO) -> None:
        self.src = src
        self.pos = 0

    def read_upto(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at end of stream."""
        parts: list[bytes] = []
        want = n
        while want > 0:
            chunk = self.src.read(want)
            if not chunk:
                break
            parts.append(chunk)
            want -= len(chunk)
        data = b"".join(parts)
        self.pos += len(data)
        return data

    def read_exact(self, n: int, what: str) -> bytes:
        start = self.pos
        data = self.read_upto(n)
        if len(data) < n:
            raise VhdError(
                f"stream truncated at byte {self.pos}: {what} needs {n} bytes from byte {start}"
            )
        return data

    def skip_to(self, offset: int, what: str) -> None:
        if offset < self.pos:
            raise VhdError(f"{what} at byte {offset} lies before byte {self.pos} already read")
        while self.pos < offset:
            if not self.read_upto(min(PIECE, offset - self.pos)):
                raise VhdError(f"stream truncated at byte {self.pos}: {what} is at byte {offset}")


class SpaceExhausted(VhdError):
    """The stream needs more new space than the disk's storage has left."""


class _Target:
    """Writes pieces of the disk, keeping all-zero pieces sparse where the target is a hole.

    With ``space``, at most that many bytes may land where the file had a
    hole (new allocation, as an SR that fills up sees it); past it the
    import stops with :class:`SpaceExhausted` before writing the piece.
    """

    def __init__(self, fd: int, virtual_size: int, space: int | None = None) -> None:
        self.fd = fd
        self.virtual_size = virtual_size
        self.written = 0
        self.space = space
        self.allocated = 0

    def put(self, offset: int, data: bytes | memoryview) -> None:
        end = offset + len(data)
        if end > self.virtual_size:
            raise VhdError(f"data up to byte {end} does not fit the {self.virtual_size}-byte disk")
        hole = self._is_hole(offset, end)
        if data == ZERO_PIECE[: len(data)] and hole:
            pass  # already reads as zeros: writing would only allocate space
        else:
            if hole and self.space is not None:
                if self.allocated + len(data) > self.space:
                    raise SpaceExhausted(
                        f"no space left for {len(data)} more bytes at byte {offset} "
                        f"({self.allocated} of {self.space} free bytes used)"
                    )
                self.allocated += len(data)
            view = memoryview(data)
            while view:
                n = os.pwrite(self.fd, view, offset)
                view = view[n:]
                offset += n
        self.written += len(data)

    def _is_hole(self, start: int, end: int) -> bool:
        try:
            return os.lseek(self.fd, start, os.SEEK_DATA) >= end
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return True
            raise


def import_raw(
    src: BinaryIO, dest_path: Path, virtual_size: int, *, space: int | None = None
) -> int:
    """Copy a raw stream into the existing disk file ``dest_path``; return bytes received.

    A stream longer than ``virtual_size`` is an error (raised before the excess
    is written); a shorter one leaves the rest of the disk as it was. ``space``
    bounds the new allocation (see :class:`_Target`).
    """
    source = _Source(src)
    fd = os.open(dest_path, os.O_WRONLY)
    try:
        target = _Target(fd, virtual_size, space)
        while True:
            data = source.read_upto(PIECE)
            if not data:
                break
            if source.pos > virtual_size:
                raise VhdError(f"raw stream is longer than the {virtual_size}-byte disk")
            target.put(source.pos - len(data), data)
        return target.written
    finally:
        os.close(fd)


def import_vhd(
    src: BinaryIO,
    dest_path: Path,
    virtual_size: int,
    *,
    parent_uuid: uuid.UUID | None = None,
    space: int | None = None,
) -> int:
    """Write the sectors present in a fixed, dynamic or differencing VHD stream into ``dest_path``.

    ``src`` is read sequentially (read() only). ``dest_path`` is an existing
    disk file of ``virtual_size`` bytes. A fixed disk writes everything, a
    dynamic one its present blocks, a differencing one the sectors set in its
    block bitmaps. With ``parent_uuid``, a differencing VHD must name that
    parent. Returns the number of disk bytes written. Raises VhdError on any
    malformed, truncated or oversized input, SpaceExhausted past ``space``
    bytes of new allocation.
    """
    source = _Source(src)
    fd = os.open(dest_path, os.O_WRONLY)
    try:
        target = _Target(fd, virtual_size, space)
        first = source.read_upto(SECTOR)
        if len(first) < SECTOR:
            raise VhdError(f"stream truncated: {len(first)} bytes is too short for a VHD")
        if first.startswith(FOOTER_COOKIE):
            _import_dynamic(source, target, first, parent_uuid)
        else:
            _import_fixed(source, target, first)
        return target.written
    finally:
        os.close(fd)


def _import_fixed(source: _Source, target: _Target, first: bytes) -> None:
    buf = bytearray(first)
    pos = 0
    while True:
        chunk = source.read_upto(PIECE)
        buf += chunk
        # The last 512 bytes may be the footer: hold them back until the end.
        while len(buf) >= PIECE + SECTOR:
            if pos + PIECE > target.virtual_size:
                raise VhdError(f"fixed VHD is larger than the {target.virtual_size}-byte disk")
            target.put(pos, bytes(buf[:PIECE]))
            del buf[:PIECE]
            pos += PIECE
        if not chunk:
            break
    if len(buf) < SECTOR:
        raise VhdError(f"stream truncated at byte {source.pos}: no footer at the end")
    raw_footer = bytes(buf[-SECTOR:])
    if not raw_footer.startswith(FOOTER_COOKIE):
        raise VhdError(
            f"no VHD footer at the end of the stream (byte {source.pos - SECTOR}):"
            " not a VHD, or truncated"
        )
    footer = parse_footer(raw_footer, "footer at end of fixed VHD")
    if footer.disk_type != DISK_FIXED:
        raise VhdError(
            f"footer says disk type {footer.disk_type} but the stream does not start with a"
            " footer copy (only fixed disks, type 2, have none)"
        )
    rest = bytes(buf[:-SECTOR])
    data_size = pos + len(rest)
    if footer.current_size > target.virtual_size:
        raise VhdError(
            f"VHD virtual size {footer.current_size} is larger than the"
            f" {target.virtual_size}-byte disk"
        )
    if data_size != footer.current_size:
        raise VhdError(
            f"fixed VHD holds {data_size} bytes of data but its footer says {footer.current_size}"
        )
    for at in range(0, len(rest), PIECE):
        target.put(pos + at, rest[at : at + PIECE])


def _import_dynamic(
    source: _Source, target: _Target, first: bytes, parent_uuid: uuid.UUID | None
) -> None:
    footer = parse_footer(first, "footer copy at byte 0")
    if footer.disk_type == DISK_FIXED:
        raise VhdError("footer copy at byte 0 says fixed disk (type 2); fixed disks have none")
    if footer.current_size > target.virtual_size:
        raise VhdError(
            f"VHD virtual size {footer.current_size} is larger than the"
            f" {target.virtual_size}-byte disk"
        )
    if footer.data_offset < SECTOR or footer.data_offset == NO_OFFSET:
        raise VhdError(f"footer data offset {footer.data_offset} does not point past the footer")
    source.skip_to(footer.data_offset, "dynamic header")
    header = parse_header(source.read_exact(1024, "dynamic header"), "dynamic header")
    differencing = footer.disk_type == DISK_DIFFERENCING
    if differencing and parent_uuid is not None and header.parent_uuid != parent_uuid:
        raise VhdError(f"differencing VHD has parent {header.parent_uuid}, expected {parent_uuid}")
    bs = header.block_size
    if header.max_table_entries * bs < footer.current_size:
        raise VhdError(
            f"BAT of {header.max_table_entries} entries of {bs} bytes cannot cover"
            f" {footer.current_size} bytes"
        )
    header_end = footer.data_offset + 1024
    if header.table_offset < header_end:
        raise VhdError(
            f"BAT at byte {header.table_offset} overlaps or precedes the dynamic header"
            f" (ends at byte {header_end})"
        )
    source.skip_to(header.table_offset, "BAT")
    bat = array("I")
    bat.frombytes(source.read_exact(header.max_table_entries * 4, "BAT"))
    if bat.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte "I"
        raise VhdError("platform without a 4-byte unsigned int")
    if struct.pack("=I", 1) != struct.pack(">I", 1):
        bat.byteswap()
    metadata_end = header.table_offset + header.max_table_entries * 4
    # One bit per sector, rounded up to whole bytes, then to whole sectors.
    bitmap_bytes = -(-(bs // SECTOR) // 8 // SECTOR) * SECTOR
    block_bytes = bitmap_bytes + bs
    present = sorted((sector, index) for index, sector in enumerate(bat) if sector != ABSENT)
    previous: tuple[int, int] | None = None
    for sector, index in present:
        start = sector * SECTOR
        if index * bs >= footer.current_size:
            raise VhdError(
                f"BAT entry {index} is present but lies beyond the virtual size"
                f" {footer.current_size}"
            )
        if start < metadata_end:
            raise VhdError(
                f"BAT entry {index} points into the VHD metadata (byte {start} < {metadata_end})"
            )
        if previous is not None and previous[0] * SECTOR + block_bytes > start:
            raise VhdError(
                f"BAT entries {previous[1]} and {index} overlap (blocks at bytes"
                f" {previous[0] * SECTOR} and {start}, {block_bytes} bytes each)"
            )
        previous = (sector, index)
    for sector, index in present:
        start = sector * SECTOR
        try:
            source.skip_to(start, f"block of BAT entry {index}")
            bitmap = source.read_exact(bitmap_bytes, f"bitmap of BAT entry {index}")
            _copy_block(source, target, index, bs, bitmap, differencing, footer.current_size)
        except VhdError as exc:
            if "truncated" in str(exc):
                raise VhdError(
                    f"BAT entry {index} points past end of file (block at byte {start},"
                    f" {block_bytes} bytes): {exc}"
                ) from None
            raise
    _check_final_footer(source, first)


def _copy_block(
    source: _Source,
    target: _Target,
    index: int,
    bs: int,
    bitmap: bytes,
    differencing: bool,
    disk_size: int,
) -> None:
    base = index * bs
    for at in range(0, bs, PIECE):
        n = min(PIECE, bs - at)
        data = source.read_exact(n, f"data of BAT entry {index}")
        limit = min(n, disk_size - base - at)
        if limit <= 0:
            continue  # the tail of the last block lies past the end of the disk
        if not differencing:
            target.put(base + at, data[:limit])
            continue
        first_sector = at // SECTOR
        for run_start, run_end in _bit_runs(bitmap, first_sector, first_sector + limit // SECTOR):
            lo = (run_start - first_sector) * SECTOR
            hi = (run_end - first_sector) * SECTOR
            target.put(base + at + lo, data[lo:hi])


def _bit_runs(bitmap: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Yield [a, b) runs of set bits (MSB first) among bit indexes [start, end)."""
    if start % 8 == 0 and end % 8 == 0:
        # Fast paths for the usual bitmaps: all set (whole block) or all clear.
        span = bitmap[start // 8 : end // 8]
        if span == b"\xff" * len(span):
            yield start, end
            return
        if span == bytes(len(span)):
            return
    run: int | None = None
    for bit in range(start, end):
        if bitmap[bit >> 3] & (0x80 >> (bit & 7)):
            if run is None:
                run = bit
        elif run is not None:
            yield run, bit
            run = None
    if run is not None:
        yield run, end


def _check_final_footer(source: _Source, first: bytes) -> None:
    tail = bytearray()
    while True:
        chunk = source.read_upto(PIECE)
        if not chunk:
            break
        tail += chunk
        if len(tail) > SECTOR:
            del tail[:-SECTOR]
    if len(tail) < SECTOR:
        raise VhdError(
            f"stream truncated at byte {source.pos}: the final footer is missing"
            f" ({len(tail)} bytes after the last block)"
        )
    where = f"final footer at byte {source.pos - SECTOR}"
    parse_footer(bytes(tail), where)
    if bytes(tail) != first:
        raise VhdError(f"{where} differs from the footer copy at byte 0")
