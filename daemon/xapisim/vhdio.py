"""The simulator's own VHD and raw disk streams (export_raw_vdi / import_raw_vdi).

Written independently of the product's codec on purpose: a bug shared by both
sides of a test would be invisible.

Layout (Microsoft VHD specification; every integer is big-endian)::

    fixed (type 2):        data ......................... | footer (512)
    dynamic (3) / diff (4): footer copy (512) | dynamic header (1024) | BAT |
                            block | block | ... | footer (512)

- Footer, 512 bytes: cookie ``conectix``, features, format version 1.0, data
  offset (u64: the dynamic header's byte offset, all ones for a fixed disk),
  timestamp (seconds since 2000-01-01 UTC), creator application, version and
  host OS, original and current size (u64 bytes), CHS geometry, disk type,
  checksum, UUID, saved-state flag, zero padding.
- Dynamic header, 1024 bytes: cookie ``cxsparse``, data offset (all ones),
  BAT offset (u64), header version 1.0, max BAT entries, block size, checksum,
  parent UUID, parent timestamp, parent name (UTF-16BE, 512 bytes), eight
  24-byte parent locators, padding.
- BAT: one u32 per block giving the block's *sector* offset in the file,
  ``0xFFFFFFFF`` for an absent block; padded to a sector.
- Block: a sector bitmap (one bit per 512-byte sector, most significant bit
  first, padded to a whole sector) then ``block size`` bytes of data. In a
  differencing disk a set bit means "this sector comes from this file", a
  clear one "from the parent".
- Checksum: one's complement of the byte sum of the structure with its
  checksum field zeroed.

The creator application is ``tap\\0`` as XenServer writes it; that is also what
makes ``qemu-img`` take the size from the footer rather than from the CHS
geometry.

Streams here are produced and consumed sequentially, in pieces of at most a few
MiB, so memory never grows with the disk size (the BAT, four bytes per 2 MiB,
is the only structure proportional to it).
"""

from __future__ import annotations

import errno
import os
import struct
import time
import uuid
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SECTOR = 512
BLOCK_SIZE = 2 * 1024 * 1024
#: Size of the pieces read from and written to files and streams.
PIECE = 1024 * 1024

FOOTER_COOKIE = b"conectix"
HEADER_COOKIE = b"cxsparse"
FORMAT_VERSION = 0x00010000
HEADER_VERSION = 0x00010000
DISK_FIXED = 2
DISK_DYNAMIC = 3
DISK_DIFFERENCING = 4
ABSENT = 0xFFFFFFFF
NO_OFFSET = 0xFFFFFFFFFFFFFFFF
#: 2000-01-01T00:00:00Z as a Unix time: the VHD epoch.
VHD_EPOCH = 946684800
CREATOR_APP = b"tap\x00"
CREATOR_VERSION = 0x00010003
CREATOR_OS = b"Lnux"
#: A BAT bigger than this (2^22 entries = 8 TiB of 2 MiB blocks) is refused
#: so that a hostile header cannot make the importer allocate without bound.
MAX_BAT_ENTRIES = 1 << 22

_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")
_HEADER = struct.Struct(">8sQQIIII16sII512s192s256s")
_FOOTER_CHECKSUM_AT = 64
_HEADER_CHECKSUM_AT = 36

_ZERO_PIECE = bytes(PIECE)


class VhdError(ValueError):
    """A VHD stream is malformed, truncated or does not fit the target disk."""


def _checksum(raw: bytes, at: int) -> int:
    """One's complement of the byte sum, the checksum field counted as zeros."""
    total = sum(raw) - sum(raw[at : at + 4])
    return ~total & 0xFFFFFFFF


def chs_geometry(size: int) -> tuple[int, int, int]:
    """Return (cylinders, heads, sectors per track) for a disk of ``size`` bytes.

    The algorithm is the one given in the VHD specification's appendix.
    """
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


@dataclass(frozen=True)
class Footer:
    """The decoded 512-byte footer."""

    features: int
    version: int
    data_offset: int
    timestamp: int
    creator_app: bytes
    creator_version: int
    creator_os: bytes
    original_size: int
    current_size: int
    geometry: tuple[int, int, int]
    disk_type: int
    checksum: int
    uuid: uuid.UUID
    saved_state: int


@dataclass(frozen=True)
class DynamicHeader:
    """The decoded 1024-byte dynamic disk header."""

    table_offset: int
    max_table_entries: int
    block_size: int
    checksum: int
    parent_uuid: uuid.UUID
    parent_timestamp: int
    parent_name: str


def pack_footer(
    *,
    disk_type: int,
    size: int,
    disk_uuid: uuid.UUID,
    timestamp: int,
    data_offset: int,
) -> bytes:
    """Encode a footer with a correct checksum."""
    cyl, heads, spt = chs_geometry(size)
    fields = [
        FOOTER_COOKIE,
        2,  # features: the "reserved" bit the specification says is always set
        FORMAT_VERSION,
        data_offset,
        timestamp & 0xFFFFFFFF,
        CREATOR_APP,
        CREATOR_VERSION,
        CREATOR_OS,
        size,
        size,
        cyl,
        heads,
        spt,
        disk_type,
        0,
        disk_uuid.bytes,
        0,
        b"",
    ]
    raw = _FOOTER.pack(*fields)
    fields[14] = _checksum(raw, _FOOTER_CHECKSUM_AT)
    return _FOOTER.pack(*fields)


def parse_footer(raw: bytes, where: str) -> Footer:
    """Decode and validate a footer; ``where`` names it in error messages."""
    if len(raw) != _FOOTER.size:
        raise VhdError(f"{where}: expected 512 bytes, got {len(raw)}")
    f = _FOOTER.unpack(raw)
    if f[0] != FOOTER_COOKIE:
        raise VhdError(f"{where}: bad cookie {f[0]!r}, expected {FOOTER_COOKIE!r}")
    computed = _checksum(raw, _FOOTER_CHECKSUM_AT)
    if f[14] != computed:
        raise VhdError(
            f"{where}: footer checksum mismatch: stored 0x{f[14]:08x}, computed 0x{computed:08x}"
        )
    if f[2] != FORMAT_VERSION:
        raise VhdError(f"{where}: unsupported file format version 0x{f[2]:08x}")
    if f[13] not in (DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING):
        raise VhdError(f"{where}: unsupported disk type {f[13]}")
    if f[9] % SECTOR:
        raise VhdError(f"{where}: current size {f[9]} is not a multiple of {SECTOR}")
    return Footer(
        features=f[1],
        version=f[2],
        data_offset=f[3],
        timestamp=f[4],
        creator_app=f[5],
        creator_version=f[6],
        creator_os=f[7],
        original_size=f[8],
        current_size=f[9],
        geometry=(f[10], f[11], f[12]),
        disk_type=f[13],
        checksum=f[14],
        uuid=uuid.UUID(bytes=f[15]),
        saved_state=f[16],
    )


def pack_header(
    *,
    table_offset: int,
    max_table_entries: int,
    parent_uuid: uuid.UUID | None,
    parent_timestamp: int = 0,
    parent_name: str = "",
) -> bytes:
    """Encode a dynamic header (2 MiB blocks) with a correct checksum."""
    name = parent_name.encode("utf-16-be")[:512]
    fields = [
        HEADER_COOKIE,
        NO_OFFSET,
        table_offset,
        HEADER_VERSION,
        max_table_entries,
        BLOCK_SIZE,
        0,
        (parent_uuid or uuid.UUID(int=0)).bytes,
        parent_timestamp & 0xFFFFFFFF,
        0,
        name,
        b"",
        b"",
    ]
    raw = _HEADER.pack(*fields)
    fields[6] = _checksum(raw, _HEADER_CHECKSUM_AT)
    return _HEADER.pack(*fields)


def parse_header(raw: bytes, where: str) -> DynamicHeader:
    """Decode and validate a dynamic header."""
    if len(raw) != _HEADER.size:
        raise VhdError(f"{where}: expected 1024 bytes, got {len(raw)}")
    h = _HEADER.unpack(raw)
    if h[0] != HEADER_COOKIE:
        raise VhdError(f"{where}: bad cookie {h[0]!r}, expected {HEADER_COOKIE!r}")
    computed = _checksum(raw, _HEADER_CHECKSUM_AT)
    if h[6] != computed:
        raise VhdError(
            f"{where}: header checksum mismatch: stored 0x{h[6]:08x}, computed 0x{computed:08x}"
        )
    if h[3] != HEADER_VERSION:
        raise VhdError(f"{where}: unsupported header version 0x{h[3]:08x}")
    block_size = h[5]
    if block_size < SECTOR or block_size & (block_size - 1) or block_size > 256 * 1024 * 1024:
        raise VhdError(f"{where}: unsupported block size {block_size}")
    if h[4] > MAX_BAT_ENTRIES:
        raise VhdError(f"{where}: {h[4]} BAT entries is more than the {MAX_BAT_ENTRIES} allowed")
    name = h[10].decode("utf-16-be", errors="replace").rstrip("\x00")
    return DynamicHeader(
        table_offset=h[2],
        max_table_entries=h[4],
        block_size=block_size,
        checksum=h[6],
        parent_uuid=uuid.UUID(bytes=h[7]),
        parent_timestamp=h[8],
        parent_name=name,
    )


# --- reading files ---------------------------------------------------------


def data_extents(fd: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Yield (start, end) byte ranges of ``fd`` that may hold data, within [start, end).

    Holes are found with SEEK_DATA/SEEK_HOLE; filesystems without them report
    the whole file as data, which is slower but still right.
    """
    pos = start
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                return
            raise
        if data >= end:
            return
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        yield data, min(hole, end)
        pos = hole


def _pread_full(fd: int, length: int, offset: int) -> bytes:
    """Read ``length`` bytes at ``offset``; bytes past the end of file read as zeros."""
    parts: list[bytes] = []
    want = length
    while want > 0:
        data = os.pread(fd, want, offset)
        if not data:
            parts.append(bytes(want))
            break
        parts.append(data)
        want -= len(data)
        offset += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def nonzero_blocks(fd: int, size: int, block_size: int = BLOCK_SIZE) -> list[int]:
    """Indexes of the ``block_size`` blocks of ``fd`` (within ``size``) that hold non-zero bytes."""
    found: list[int] = []
    last = -1
    for start, end in data_extents(fd, 0, size):
        first_block = max(start // block_size, last + 1)
        for index in range(first_block, (end - 1) // block_size + 1):
            off = index * block_size
            length = min(block_size, size - off)
            if any(_pieces_nonzero(fd, off, length)):
                found.append(index)
            last = index
    return found


def _pieces_nonzero(fd: int, offset: int, length: int) -> Iterator[bool]:
    # Comparing with a zero buffer is a memcmp: far cheaper than any().
    end = offset + length
    while offset < end:
        n = min(PIECE, end - offset)
        data = os.pread(fd, n, offset)
        if not data:
            return
        yield data != _ZERO_PIECE[: len(data)]
        offset += len(data)


# --- export ------------------------------------------------------------------


class VhdStream:
    """A planned VHD export: ``size`` is its exact byte length; iterate for the bytes.

    Planning (deciding which blocks to include) happens in the constructor, so
    the BAT and the length are known before the first byte is sent.
    """

    def __init__(
        self,
        path: Path,
        virtual_size: int,
        blocks: Iterable[int] | None = None,
        parent_uuid: uuid.UUID | None = None,
        *,
        disk_uuid: uuid.UUID | None = None,
        timestamp: int | None = None,
        parent_name: str = "",
        parent_timestamp: int = 0,
    ) -> None:
        if virtual_size <= 0 or virtual_size % SECTOR:
            raise VhdError(f"virtual size {virtual_size} is not a positive multiple of {SECTOR}")
        self.path = Path(path)
        self.virtual_size = virtual_size
        self.parent_uuid = parent_uuid
        self.disk_uuid = disk_uuid or uuid.uuid4()
        self.timestamp = (
            int(time.time()) - VHD_EPOCH if timestamp is None else timestamp
        ) & 0xFFFFFFFF
        self.parent_name = parent_name
        self.parent_timestamp = parent_timestamp
        self.entries = -(-virtual_size // BLOCK_SIZE)
        if blocks is None:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                self.blocks = nonzero_blocks(fd, virtual_size)
            finally:
                os.close(fd)
        else:
            self.blocks = sorted(set(blocks))
            if self.blocks and (self.blocks[0] < 0 or self.blocks[-1] >= self.entries):
                raise VhdError(
                    f"block indexes must lie in [0, {self.entries}), got {self.blocks[0]}"
                    f"..{self.blocks[-1]}"
                )
        self.bat_offset = SECTOR + 1024
        self.bat_bytes = -(-self.entries * 4 // SECTOR) * SECTOR
        self.data_offset = self.bat_offset + self.bat_bytes
        self.block_bytes = SECTOR + BLOCK_SIZE
        self.size = self.data_offset + len(self.blocks) * self.block_bytes + SECTOR
        self._gen: Iterator[bytes] | None = None

    @property
    def disk_type(self) -> int:
        """3 (dynamic) or 4 (differencing)."""
        return DISK_DIFFERENCING if self.parent_uuid else DISK_DYNAMIC

    def footer(self) -> bytes:
        """The footer written at both ends of the stream."""
        return pack_footer(
            disk_type=self.disk_type,
            size=self.virtual_size,
            disk_uuid=self.disk_uuid,
            timestamp=self.timestamp,
            data_offset=SECTOR,
        )

    def _bat(self) -> bytes:
        bat = bytearray(b"\xff" * self.bat_bytes)
        sector = self.data_offset // SECTOR
        step = self.block_bytes // SECTOR
        for n, index in enumerate(self.blocks):
            struct.pack_into(">I", bat, index * 4, sector + n * step)
        return bytes(bat)

    def __iter__(self) -> VhdStream:
        return self

    def __next__(self) -> bytes:
        if self._gen is None:
            self._gen = self._generate()
        return next(self._gen)

    def _generate(self) -> Iterator[bytes]:
        footer = self.footer()
        yield footer
        yield pack_header(
            table_offset=self.bat_offset,
            max_table_entries=self.entries,
            parent_uuid=self.parent_uuid,
            parent_timestamp=self.parent_timestamp,
            parent_name=self.parent_name,
        )
        bat = self._bat()
        for at in range(0, len(bat), PIECE):
            yield bat[at : at + PIECE]
        # Whole blocks are exported, so every sector is "in this file".
        bitmap = b"\xff" * SECTOR
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for index in self.blocks:
                offset = index * BLOCK_SIZE
                inside = min(BLOCK_SIZE, self.virtual_size - offset)
                # One chunk per block, and no buffer kept alive across the yield:
                # otherwise malloc hands each freed buffer back to the kernel and
                # page-faults a fresh one in for the next block (measured 3-5x slower).
                if inside == BLOCK_SIZE:
                    yield bitmap + _pread_full(fd, BLOCK_SIZE, offset)
                else:
                    yield bitmap + _pread_full(fd, inside, offset) + bytes(BLOCK_SIZE - inside)
        finally:
            os.close(fd)
        yield footer


def vhd_stream(
    path: Path,
    virtual_size: int,
    blocks: list[int] | None = None,
    parent_uuid: uuid.UUID | None = None,
    *,
    disk_uuid: uuid.UUID | None = None,
    timestamp: int | None = None,
    parent_name: str = "",
    parent_timestamp: int = 0,
) -> VhdStream:
    """Plan a dynamic VHD of the raw file at ``path`` (differencing with ``parent_uuid``).

    ``blocks`` lists the 2 MiB blocks to include; ``None`` means every block
    that is not all zeros. The result is an iterator of byte chunks (at most
    2 MiB + 512 bytes each) whose total length is ``.size``. ``timestamp`` is in
    seconds since 2000-01-01 (default: now). A file shorter than
    ``virtual_size`` reads as zero-extended.
    """
    return VhdStream(
        path,
        virtual_size,
        blocks,
        parent_uuid,
        disk_uuid=disk_uuid,
        timestamp=timestamp,
        parent_name=parent_name,
        parent_timestamp=parent_timestamp,
    )


def vhd_stream_size(virtual_size: int, block_count: int) -> int:
    """Byte length of a VHD stream of ``virtual_size`` holding ``block_count`` blocks."""
    entries = -(-virtual_size // BLOCK_SIZE)
    bat = -(-entries * 4 // SECTOR) * SECTOR
    return SECTOR + 1024 + bat + block_count * (SECTOR + BLOCK_SIZE) + SECTOR


def raw_stream(path: Path, virtual_size: int) -> Iterator[bytes]:
    """Yield the ``virtual_size`` bytes of the disk at ``path``, holes as zeros, in 1 MiB pieces."""
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        for start, end in data_extents(fd, 0, virtual_size):
            yield from _zeros(start - pos)
            for off in range(start, end, PIECE):
                yield _pread_full(fd, min(PIECE, end - off), off)
            pos = end
        yield from _zeros(virtual_size - pos)
    finally:
        os.close(fd)


def _zeros(length: int) -> Iterator[bytes]:
    while length > 0:
        n = min(length, PIECE)
        yield _ZERO_PIECE if n == PIECE else bytes(n)
        length -= n


# --- import ------------------------------------------------------------------


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


class _Target:
    """Writes pieces of the disk, keeping all-zero pieces sparse where the target is a hole."""

    def __init__(self, fd: int, virtual_size: int) -> None:
        self.fd = fd
        self.virtual_size = virtual_size
        self.written = 0

    def put(self, offset: int, data: bytes | memoryview) -> None:
        end = offset + len(data)
        if end > self.virtual_size:
            raise VhdError(f"data up to byte {end} does not fit the {self.virtual_size}-byte disk")
        if data == _ZERO_PIECE[: len(data)] and self._is_hole(offset, end):
            pass  # already reads as zeros: writing would only allocate space
        else:
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


def import_raw(src: BinaryIO, dest_path: Path, virtual_size: int) -> int:
    """Copy a raw stream into the existing disk file ``dest_path``; return bytes received.

    A stream longer than ``virtual_size`` is an error (raised before the excess
    is written); a shorter one leaves the rest of the disk as it was.
    """
    source = _Source(src)
    fd = os.open(dest_path, os.O_WRONLY)
    try:
        target = _Target(fd, virtual_size)
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
) -> int:
    """Write the sectors present in a fixed, dynamic or differencing VHD stream into ``dest_path``.

    ``src`` is read sequentially (read() only). ``dest_path`` is an existing
    disk file of ``virtual_size`` bytes. A fixed disk writes everything, a
    dynamic one its present blocks, a differencing one the sectors set in its
    block bitmaps. With ``parent_uuid``, a differencing VHD must name that
    parent. Returns the number of disk bytes written. Raises VhdError on any
    malformed, truncated or oversized input.
    """
    source = _Source(src)
    fd = os.open(dest_path, os.O_WRONLY)
    try:
        target = _Target(fd, virtual_size)
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
