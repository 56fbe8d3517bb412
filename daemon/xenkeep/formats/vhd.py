"""VHD (Microsoft Virtual Hard Disk): fixed, dynamic and differencing disks.

All integers are big-endian. Offsets below are byte offsets in the file.

Footer, 512 bytes, at the end of every VHD and copied at offset 0 of dynamic
and differencing ones::

    0   cookie "conectix"          40  original size u64
    8   features u32 (2)           48  current (virtual) size u64
    12  format version 0x00010000  56  geometry: cylinders u16, heads u8, sectors u8
    16  data offset u64            60  disk type u32: 2 fixed, 3 dynamic, 4 differencing
        (header offset; all ones   64  checksum u32
        for fixed disks)           68  unique id (UUID), 16 bytes
    24  timestamp u32              84  saved state u8, then zeros
    28  creator application [4]
    32  creator version u32, 36 creator host OS [4]

Checksum (footer and header alike): one's complement of the sum of all bytes
with the checksum field taken as zero. Timestamps count seconds from
2000-01-01 00:00:00 UTC.

A fixed disk is the raw disk followed by the footer. A dynamic or
differencing disk has a dynamic header, 1024 bytes at the footer's data
offset::

    0   cookie "cxsparse"          36  checksum u32
    8   data offset u64 (all ones) 40  parent unique id, 16 bytes
    16  BAT offset u64             56  parent timestamp u32
    24  header version 0x00010000  64  parent unicode name, 512 bytes UTF-16BE
    28  max BAT entries u32        576 8 parent locators of 24 bytes: platform code [4],
    32  block size u32 (2 MiB)         data space u32 (sectors), data length u32,
                                       reserved u32, data offset u64

The BAT (block allocation table) holds one u32 per block: the sector where
the block starts, or 0xFFFFFFFF for a block that is absent (zeros for a
dynamic disk, the parent's data for a differencing one). A block is its sector
bitmap (one bit per 512-byte sector, most significant bit first, padded to a
whole sector: 512 bytes for 2 MiB blocks) immediately followed by its data.
In a differencing disk a set bit means "this sector is in this file", a clear
one "read it from the parent"; a child belongs to a parent only when its
parent unique id equals the parent's footer unique id.

Files written here put every block's data on a 4 KiB boundary: the bitmap
sits in the sector just before the aligned data, with zero padding between
blocks. The format allows blocks anywhere, and aligned data lets a merge share
whole blocks between files with FICLONERANGE instead of copying them. The
writer reserves the header and a BAT sized for every block up front, appends
blocks as they arrive, then writes the BAT and both footers.

Creator application: ``tap\\0``, the value XenServer's blktap writes, so that
readers which otherwise derive the size from the CHS geometry (qemu's ``vpc``
driver) take the exact current size instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import os
import struct
import uuid as uuidlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from .errors import VhdFormatError

SECTOR: Final = 512
FOOTER_SIZE: Final = 512
HEADER_SIZE: Final = 1024
DEFAULT_BLOCK_SIZE: Final = 2 << 20
#: Block data is placed on multiples of this, for extent sharing.
DATA_ALIGNMENT: Final = 4096
ABSENT: Final = 0xFFFFFFFF
NO_OFFSET: Final = 0xFFFFFFFFFFFFFFFF

DISK_FIXED: Final = 2
DISK_DYNAMIC: Final = 3
DISK_DIFFERENCING: Final = 4
DISK_TYPE_NAMES: Final = {DISK_FIXED: "fixed", DISK_DYNAMIC: "dynamic", DISK_DIFFERENCING: "diff"}

FOOTER_COOKIE: Final = b"conectix"
HEADER_COOKIE: Final = b"cxsparse"
FORMAT_VERSION: Final = 0x00010000
CREATOR_APP: Final = b"tap\0"
#: Largest virtual size we accept: the VHD format tops out just under 2 TiB.
MAX_DISK_SIZE: Final = 2040 << 30
MIN_BLOCK_SIZE: Final = 4096
#: A 2040 GiB disk in 2 MiB blocks needs about a million BAT entries; a header
#: asking for far more is corrupt, and must not make us allocate gigabytes.
MAX_BAT_ENTRIES: Final = 4 << 20
MAX_BLOCK_SIZE: Final = 256 << 20
VHD_EPOCH: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

_FOOTER: Final = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")
_HEADER: Final = struct.Struct(">8sQQIIII16sII512s192s256s")
_LOCATOR: Final = struct.Struct(">4sIIIQ")


def vhd_timestamp(unix_time: float) -> int:
    """Seconds since 2000-01-01 UTC for a Unix time (clamped to the u32 range)."""
    value = int(unix_time - VHD_EPOCH.timestamp())
    return max(0, min(value, 0xFFFFFFFF))


def _checksum(data: bytes | bytearray, field_at: int) -> int:
    total = sum(data) - sum(data[field_at : field_at + 4])
    return ~total & 0xFFFFFFFF


def chs_geometry(size: int) -> tuple[int, int, int]:
    """Cylinders, heads, sectors per track for ``size`` bytes (the spec's algorithm)."""
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


def bitmap_size(block_size: int) -> int:
    """Bytes of the sector bitmap of a block: one bit per sector, whole sectors."""
    bits = block_size // SECTOR
    return -(-bits // 8 // SECTOR) * SECTOR if bits >= 8 else SECTOR


def _round_up(value: int, to: int) -> int:
    return -(-value // to) * to


# --------------------------------------------------------------------------
# Footer and header


@dataclass(frozen=True)
class VhdFooter:
    """The 512-byte footer."""

    disk_type: int
    current_size: int
    uuid: uuidlib.UUID
    timestamp: int = 0
    data_offset: int = NO_OFFSET
    original_size: int | None = None
    geometry: tuple[int, int, int] | None = None
    creator_app: bytes = CREATOR_APP
    creator_version: int = 0x00010000
    creator_os: bytes = b"Wi2k"
    features: int = 2
    saved_state: int = 0

    def pack(self) -> bytes:
        """The footer bytes with a correct checksum."""
        cyl, heads, spt = self.geometry or chs_geometry(self.current_size)
        raw = bytearray(
            _FOOTER.pack(
                FOOTER_COOKIE,
                self.features,
                FORMAT_VERSION,
                self.data_offset,
                self.timestamp,
                self.creator_app,
                self.creator_version,
                self.creator_os,
                self.current_size if self.original_size is None else self.original_size,
                self.current_size,
                cyl,
                heads,
                spt,
                self.disk_type,
                0,
                self.uuid.bytes,
                self.saved_state,
                bytes(427),
            )
        )
        raw[64:68] = _checksum(raw, 64).to_bytes(4, "big")
        return bytes(raw)

    @classmethod
    def unpack(cls, raw: bytes, where: str = "footer") -> VhdFooter:
        """Parse and check a footer; ``where`` names it in error messages."""
        if len(raw) != FOOTER_SIZE:
            raise VhdFormatError(f"truncated file: {where} is {len(raw)} of 512 bytes")
        (
            cookie,
            features,
            _version,
            data_offset,
            timestamp,
            creator_app,
            creator_version,
            creator_os,
            original_size,
            current_size,
            cyl,
            heads,
            spt,
            disk_type,
            checksum,
            unique_id,
            saved_state,
            _reserved,
        ) = _FOOTER.unpack(raw)
        if cookie != FOOTER_COOKIE:
            raise VhdFormatError(f"bad cookie in {where}: {cookie!r}, expected b'conectix'")
        if checksum != _checksum(raw, 64):
            raise VhdFormatError(
                f"bad {where} checksum: stored {checksum:#010x}, "
                f"computed {_checksum(raw, 64):#010x}"
            )
        if disk_type not in DISK_TYPE_NAMES:
            raise VhdFormatError(f"unsupported disk type {disk_type} in {where}")
        if current_size % SECTOR:
            raise VhdFormatError(f"{where}: current size {current_size} is not whole sectors")
        if current_size > MAX_DISK_SIZE:
            raise VhdFormatError(f"{where}: current size {current_size} exceeds the VHD maximum")
        return cls(
            disk_type=disk_type,
            current_size=current_size,
            uuid=uuidlib.UUID(bytes=unique_id),
            timestamp=timestamp,
            data_offset=data_offset,
            original_size=original_size,
            geometry=(cyl, heads, spt),
            creator_app=creator_app,
            creator_version=creator_version,
            creator_os=creator_os,
            features=features,
            saved_state=saved_state,
        )


@dataclass(frozen=True)
class ParentLocator:
    """One parent locator entry (platform code such as b'MacX', b'W2ku')."""

    code: bytes
    data_space: int
    data_length: int
    data_offset: int


@dataclass(frozen=True)
class VhdHeader:
    """The 1024-byte dynamic disk header."""

    table_offset: int
    max_entries: int
    block_size: int = DEFAULT_BLOCK_SIZE
    parent_uuid: uuidlib.UUID | None = None
    parent_timestamp: int = 0
    parent_name: str = ""
    locators: tuple[ParentLocator, ...] = ()

    def pack(self) -> bytes:
        """The header bytes with a correct checksum."""
        name = self.parent_name.encode("utf-16-be")
        if len(name) > 512:
            raise ValueError("parent name longer than 256 UTF-16 code units")
        loc = b"".join(
            _LOCATOR.pack(x.code, x.data_space, x.data_length, 0, x.data_offset)
            for x in self.locators
        )
        loc = loc.ljust(8 * _LOCATOR.size, b"\0")
        raw = bytearray(
            _HEADER.pack(
                HEADER_COOKIE,
                NO_OFFSET,
                self.table_offset,
                FORMAT_VERSION,
                self.max_entries,
                self.block_size,
                0,
                self.parent_uuid.bytes if self.parent_uuid else bytes(16),
                self.parent_timestamp,
                0,
                name.ljust(512, b"\0"),
                loc,
                bytes(256),
            )
        )
        raw[36:40] = _checksum(raw, 36).to_bytes(4, "big")
        return bytes(raw)

    @classmethod
    def unpack(cls, raw: bytes) -> VhdHeader:
        """Parse and check a dynamic header."""
        if len(raw) != HEADER_SIZE:
            raise VhdFormatError(f"truncated file: dynamic header is {len(raw)} of 1024 bytes")
        (
            cookie,
            _data_offset,
            table_offset,
            _version,
            max_entries,
            block_size,
            checksum,
            parent_uuid,
            parent_timestamp,
            _reserved,
            parent_name,
            locators,
            _reserved2,
        ) = _HEADER.unpack(raw)
        if cookie != HEADER_COOKIE:
            raise VhdFormatError(f"bad cookie in dynamic header: {cookie!r}, expected b'cxsparse'")
        if checksum != _checksum(raw, 36):
            raise VhdFormatError(
                f"bad dynamic header checksum: stored {checksum:#010x}, "
                f"computed {_checksum(raw, 36):#010x}"
            )
        if (
            block_size < MIN_BLOCK_SIZE
            or block_size > MAX_BLOCK_SIZE
            or block_size & (block_size - 1)
        ):
            raise VhdFormatError(f"unsupported block size {block_size}")
        try:
            name = parent_name.decode("utf-16-be").split("\0", 1)[0]
        except UnicodeDecodeError:
            raise VhdFormatError("parent unicode name is not valid UTF-16BE") from None
        locs = []
        for i in range(8):
            code, space, length, _r, offset = _LOCATOR.unpack_from(locators, i * _LOCATOR.size)
            if code != bytes(4):
                locs.append(ParentLocator(code, space, length, offset))
        return cls(
            table_offset=table_offset,
            max_entries=max_entries,
            block_size=block_size,
            parent_uuid=None if parent_uuid == bytes(16) else uuidlib.UUID(bytes=parent_uuid),
            parent_timestamp=parent_timestamp,
            parent_name=name,
            locators=tuple(locs),
        )


# --------------------------------------------------------------------------
# Random-access reader


def _read_exact(f: BinaryIO, offset: int, length: int, what: str) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise VhdFormatError(
            f"truncated file: {what} at offset {offset} needs {length} bytes, got {len(data)}"
        )
    return data


def _pread(f: BinaryIO, offset: int, length: int) -> bytes:
    try:
        return os.pread(f.fileno(), length, offset)
    except (OSError, AttributeError, ValueError):
        f.seek(offset)
        return f.read(length)


class VhdFile:
    """A VHD file opened for random access, validated on open.

    Fixed disks are presented like dynamic ones with 2 MiB blocks that are
    all present, so callers can treat every type alike. Nothing but the BAT
    (4 bytes per block) is kept in memory.
    """

    def __init__(self, f: BinaryIO, *, name: str = "VHD") -> None:
        self._f = f
        self.name = name
        f.seek(0, os.SEEK_END)
        self.file_size = f.tell()
        if self.file_size < FOOTER_SIZE:
            raise VhdFormatError(f"truncated file: {self.file_size} bytes, no room for a footer")
        end = _read_exact(f, self.file_size - FOOTER_SIZE, FOOTER_SIZE, "footer")
        if end[:8] != FOOTER_COOKIE and self._valid_copy_at_start():
            raise VhdFormatError(
                "truncated file: no footer at the end, though the footer copy at offset 0 is valid"
            )
        self.footer = VhdFooter.unpack(end)
        self.size = self.footer.current_size
        self.disk_type = self.footer.disk_type
        self.header: VhdHeader | None = None
        if self.disk_type == DISK_FIXED:
            if self.file_size < self.size + FOOTER_SIZE:
                raise VhdFormatError(
                    f"truncated file: fixed disk of {self.size} bytes in a "
                    f"{self.file_size}-byte file"
                )
            self.block_size = DEFAULT_BLOCK_SIZE
            self.block_count = -(-self.size // self.block_size)
            spb = self.block_size // SECTOR
            self.bat = array("I", (i * spb for i in range(self.block_count)))
            self._bitmap_size = 0
            return
        self._open_dynamic()

    def _valid_copy_at_start(self) -> bool:
        try:
            copy = VhdFooter.unpack(_read_exact(self._f, 0, FOOTER_SIZE, "footer copy"))
        except VhdFormatError:
            return False
        return copy.disk_type != DISK_FIXED

    def _open_dynamic(self) -> None:
        f = self._f
        copy = _read_exact(f, 0, FOOTER_SIZE, "footer copy")
        try:
            VhdFooter.unpack(copy, "footer copy")
        except VhdFormatError as exc:
            raise VhdFormatError(f"footer copy at offset 0 is invalid: {exc}") from None
        end = _read_exact(f, self.file_size - FOOTER_SIZE, FOOTER_SIZE, "footer")
        if copy != end:
            raise VhdFormatError("footer copy mismatch: offset 0 and end of file differ")
        offset = self.footer.data_offset
        if offset < FOOTER_SIZE or offset + HEADER_SIZE > self.file_size - FOOTER_SIZE:
            raise VhdFormatError(f"dynamic header offset {offset} is outside the file")
        header = VhdHeader.unpack(_read_exact(f, offset, HEADER_SIZE, "dynamic header"))
        self.header = header
        self.block_size = header.block_size
        self._bitmap_size = bitmap_size(header.block_size)
        self.block_count = -(-self.size // self.block_size)
        if self.block_count > MAX_BAT_ENTRIES:
            raise VhdFormatError(f"{self.block_count} blocks exceed the supported BAT size")
        if header.max_entries < self.block_count:
            raise VhdFormatError(
                f"BAT has {header.max_entries} entries, the disk needs {self.block_count}"
            )
        if self.disk_type == DISK_DIFFERENCING and header.parent_uuid is None:
            raise VhdFormatError("differencing disk without a parent unique id")
        table_bytes = header.max_entries * 4
        if (
            header.table_offset < FOOTER_SIZE
            or header.table_offset + table_bytes > self.file_size - FOOTER_SIZE
        ):
            raise VhdFormatError(
                f"BAT at offset {header.table_offset} ({table_bytes} bytes) is outside the file"
            )
        # Only the entries that cover the disk matter; any beyond are ignored.
        raw = _read_exact(f, header.table_offset, self.block_count * 4, "BAT")
        bat = array("I", raw)
        if bat.itemsize != 4:  # pragma: no cover - every CPython platform we run on
            raise RuntimeError("array('I') is not 32-bit here")
        if struct.pack("=I", 1) != struct.pack(">I", 1):
            bat.byteswap()
        self.bat = bat
        self._check_layout()

    def _check_layout(self) -> None:
        assert self.header is not None
        header = self.header
        reserved = [
            (0, FOOTER_SIZE, "footer copy"),
            (self.footer.data_offset, self.footer.data_offset + HEADER_SIZE, "dynamic header"),
            (header.table_offset, header.table_offset + header.max_entries * 4, "BAT"),
        ]
        for i, loc in enumerate(header.locators):
            if loc.data_space and self.disk_type == DISK_DIFFERENCING:
                # Old writers store the space in bytes, newer ones in sectors.
                space = loc.data_space * SECTOR if loc.data_space < 0x10000 else loc.data_space
                if loc.data_offset + loc.data_length > self.file_size - FOOTER_SIZE:
                    raise VhdFormatError(f"parent locator {i} data lies outside the file")
                reserved.append((loc.data_offset, loc.data_offset + space, f"parent locator {i}"))
        limit = self.file_size - FOOTER_SIZE
        span = self._bitmap_size + self.block_size
        extents = []
        for index, sector in enumerate(self.bat):
            if sector == ABSENT:
                continue
            start = sector * SECTOR
            if start + span > limit:
                raise VhdFormatError(
                    f"BAT entry {index} out of bounds: block at offset {start} ends at "
                    f"{start + span}, past the data end {limit}"
                )
            extents.append((start, start + span, f"block {index}"))
        extents.sort()
        reserved.sort()
        for start, end, what in extents:
            for r_start, r_end, r_what in reserved:
                if start < r_end and r_start < end:
                    raise VhdFormatError(f"{what} at offset {start} overlaps the {r_what}")
        for (s1, e1, w1), (s2, _e2, w2) in itertools.pairwise(extents):
            if s2 < e1:
                raise VhdFormatError(f"overlapping blocks: {w1} at {s1} and {w2} at {s2}")

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path | str) -> Iterator[VhdFile]:
        """Open and validate the VHD at ``path``, closing it afterwards."""
        with Path(path).open("rb") as f:
            yield cls(f, name=str(path))

    @property
    def uuid(self) -> uuidlib.UUID:
        """The footer's unique id."""
        return self.footer.uuid

    @property
    def parent_uuid(self) -> uuidlib.UUID | None:
        """Unique id of the parent (differencing disks only)."""
        if self.disk_type != DISK_DIFFERENCING or self.header is None:
            return None
        return self.header.parent_uuid

    @property
    def sectors_per_block(self) -> int:
        """Sectors in one block (4096 for 2 MiB blocks)."""
        return self.block_size // SECTOR

    def block_present(self, index: int) -> bool:
        """Whether block ``index`` is stored in this file."""
        return self.bat[index] != ABSENT

    def present_blocks(self) -> Iterator[int]:
        """Indices of the blocks stored in this file, in increasing order."""
        return (i for i, s in enumerate(self.bat) if s != ABSENT)

    def block_data_offset(self, index: int) -> int | None:
        """File offset of block ``index``'s data (after its bitmap), or None if absent."""
        sector = self.bat[index]
        if sector == ABSENT:
            return None
        return sector * SECTOR + self._bitmap_size

    def block_length(self, index: int) -> int:
        """Bytes of the disk block ``index`` covers (the last one may be short)."""
        return min(self.block_size, self.size - index * self.block_size)

    def read_bitmap(self, index: int) -> bytes | None:
        """The sector bitmap of block ``index`` (all ones for fixed disks), or None."""
        sector = self.bat[index]
        if sector == ABSENT:
            return None
        if self.disk_type == DISK_FIXED:
            return b"\xff" * (self.sectors_per_block // 8)
        raw = _pread(self._f, sector * SECTOR, self._bitmap_size)
        if len(raw) != self._bitmap_size:
            raise VhdFormatError(f"truncated file: bitmap of block {index}")
        return raw[: self.sectors_per_block // 8]

    def read_block(self, index: int) -> tuple[bytes, bytes] | None:
        """(bitmap, data) of block ``index`` as stored, or None if absent.

        The data is always a whole block; for a fixed disk's last block the
        part past the disk's end reads as zeros.
        """
        offset = self.block_data_offset(index)
        if offset is None:
            return None
        bitmap = self.read_bitmap(index)
        assert bitmap is not None
        want = self.block_size
        if self.disk_type == DISK_FIXED:
            want = self.block_length(index)
        data = _pread(self._f, offset, want)
        if len(data) != want:
            raise VhdFormatError(f"truncated file: data of block {index}")
        if len(data) < self.block_size:
            data += bytes(self.block_size - len(data))
        return bitmap, data

    def read_own(self, offset: int, length: int) -> bytes:
        """Bytes of this file alone: absent blocks and, for differencing disks,
        sectors whose bitmap bit is clear read as zeros."""
        return VhdChain([self], check=False).read(offset, length)


# --------------------------------------------------------------------------
# Chains


def _bitmap_int(bitmap: bytes) -> int:
    return int.from_bytes(bitmap, "big")


def _runs(mask: int, nbits: int) -> Iterator[tuple[int, int]]:
    """(first, count) runs of set bits of ``mask``, bit 0 being the most significant."""
    while mask:
        # Position of the most significant set bit counted from the left.
        high = mask.bit_length() - 1
        first = nbits - 1 - high
        # Length of the run of ones starting there.
        inverted = ~mask & ((1 << (high + 1)) - 1)
        end_bit = inverted.bit_length()  # bits below the run
        count = high + 1 - end_bit
        yield first, count
        mask &= (1 << end_bit) - 1


def bitmap_runs(bitmap: bytes) -> Iterator[tuple[int, int]]:
    """(first sector, sector count) of each run of set bits in a block bitmap.

    A merge copies exactly these ranges of a child block into its parent.
    """
    return _runs(int.from_bytes(bitmap, "big"), len(bitmap) * 8)


class VhdChain:
    """A differencing chain, child first, ending with a fixed or dynamic base.

    Reads resolve every sector from the topmost file whose block holds it
    (present block, bitmap bit set); sectors no file holds read as zeros.
    """

    def __init__(self, files: Sequence[VhdFile], *, check: bool = True) -> None:
        if not files:
            raise ValueError("a chain needs at least one VHD")
        self.files = list(files)
        if check:
            for child, parent in itertools.pairwise(self.files):
                check_parent(child, parent)
            if self.files[-1].disk_type == DISK_DIFFERENCING:
                raise VhdFormatError(
                    f"{self.files[-1].name}: the chain ends with a differencing disk; "
                    "its parent is missing"
                )
        self.size = self.files[0].size
        self.block_size = self.files[0].block_size
        for f in self.files:
            if f.block_size != self.block_size:
                raise VhdFormatError(
                    f"{f.name}: block size {f.block_size} differs from the chain's "
                    f"{self.block_size}"
                )

    def read_block(self, index: int) -> bytes:
        """The resolved data of block ``index`` (a whole block, zeros past the end)."""
        spb = self.block_size // SECTOR
        full = (1 << spb) - 1
        remaining = full
        out: bytearray | None = None
        for f in self.files:
            if remaining == 0:
                break
            if index >= f.block_count or not f.block_present(index):
                continue
            got = f.read_block(index)
            assert got is not None
            bitmap, data = got
            own = remaining
            if f.disk_type != DISK_FIXED:
                # The spec: a clear bit in a dynamic disk is a sector never
                # written (zeros), in a differencing disk one of the parent's.
                own &= _bitmap_int(bitmap)
            if own == full:
                return data
            if out is None:
                out = bytearray(self.block_size)
            for first, count in _runs(own, spb):
                out[first * SECTOR : (first + count) * SECTOR] = data[
                    first * SECTOR : (first + count) * SECTOR
                ]
            remaining &= ~own
        return bytes(out) if out is not None else bytes(self.block_size)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the disk at ``offset`` (clipped to the disk size)."""
        end = min(offset + length, self.size)
        parts = []
        pos = offset
        while pos < end:
            index = pos // self.block_size
            start = pos - index * self.block_size
            take = min(self.block_size - start, end - pos)
            parts.append(self.read_block(index)[start : start + take])
            pos += take
        return b"".join(parts)

    def iter_blocks(self) -> Iterator[tuple[int, bytes]]:
        """(index, data) of every block of the disk, the last one cut to the size."""
        for index in range(-(-self.size // self.block_size)):
            data = self.read_block(index)
            yield index, data[: min(self.block_size, self.size - index * self.block_size)]

    def write_raw(self, out: BinaryIO) -> None:
        """Write the whole disk as raw bytes, seeking over zero blocks when possible."""
        zero = bytes(self.block_size)
        pending_zeros = 0
        for _index, data in self.iter_blocks():
            if data == zero[: len(data)]:
                pending_zeros += len(data)
                continue
            if pending_zeros:
                out.seek(pending_zeros, os.SEEK_CUR)
                pending_zeros = 0
            out.write(data)
        if pending_zeros:
            out.seek(pending_zeros - 1, os.SEEK_CUR)
            out.write(b"\0")


def check_parent(child: VhdFile, parent: VhdFile) -> None:
    """Raise VhdFormatError unless ``parent`` is the parent ``child`` was made for."""
    if child.disk_type != DISK_DIFFERENCING:
        raise VhdFormatError(
            f"{child.name} is a {DISK_TYPE_NAMES[child.disk_type]} disk, not a child"
        )
    if child.parent_uuid != parent.uuid:
        raise VhdFormatError(
            f"wrong parent: {child.name} expects parent {child.parent_uuid}, "
            f"{parent.name} is {parent.uuid}"
        )


# --------------------------------------------------------------------------
# Sequential stream parser


class SupportsRead(Protocol):
    """Anything with a blocking ``read(n)``: a file, a socket file, an HTTP body."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; empty at the end of the stream."""
        ...


@dataclass(frozen=True)
class StreamBlock:
    """One block of a VHD read as a stream: index, sector bitmap and data."""

    index: int
    bitmap: bytes
    data: bytes


class VhdStreamReader:
    """Parse a dynamic or differencing VHD arriving as a stream (no seeking).

    Construct it on the stream: it reads the footer copy, the header and the
    BAT. Then iterate :meth:`blocks` to get every present block in file order;
    the trailing footer is checked when the stream ends. Only one block is in
    memory at a time. Gaps between structures are skipped; a structure placed
    before the current position (which would need a seek) is an error.
    """

    def __init__(self, src: SupportsRead) -> None:
        self._src = src
        self.pos = 0
        first = self._read(FOOTER_SIZE, "footer copy")
        self.footer = VhdFooter.unpack(first, "footer copy")
        self._footer_raw = first
        if self.footer.disk_type == DISK_FIXED:
            raise VhdFormatError(
                "fixed VHDs have no footer copy at the start and cannot be parsed as a stream"
            )
        self.size = self.footer.current_size
        self.disk_type = self.footer.disk_type
        self._skip_to(self.footer.data_offset, "dynamic header")
        self.header = VhdHeader.unpack(self._read(HEADER_SIZE, "dynamic header"))
        self.block_size = self.header.block_size
        self.block_count = -(-self.size // self.block_size)
        if self.block_count > MAX_BAT_ENTRIES:
            raise VhdFormatError(f"{self.block_count} blocks exceed the supported BAT size")
        if self.header.max_entries < self.block_count:
            raise VhdFormatError(
                f"BAT has {self.header.max_entries} entries, the disk needs {self.block_count}"
            )
        if self.disk_type == DISK_DIFFERENCING and self.header.parent_uuid is None:
            raise VhdFormatError("differencing disk without a parent unique id")
        self._skip_to(self.header.table_offset, "BAT")
        raw = self._read(self.block_count * 4, "BAT")
        self._skip(self.header.max_entries * 4 - self.block_count * 4, "BAT")
        self.bat = array("I", raw)
        if struct.pack("=I", 1) != struct.pack(">I", 1):
            self.bat.byteswap()
        self._bitmap_size = bitmap_size(self.block_size)
        self._done = False

    @property
    def uuid(self) -> uuidlib.UUID:
        """The footer's unique id."""
        return self.footer.uuid

    @property
    def parent_uuid(self) -> uuidlib.UUID | None:
        """Unique id of the parent (differencing disks only)."""
        return self.header.parent_uuid if self.disk_type == DISK_DIFFERENCING else None

    def _read(self, n: int, what: str) -> bytes:
        parts = []
        remaining = n
        while remaining:
            piece = self._src.read(min(remaining, 1 << 20))
            if not piece:
                raise VhdFormatError(
                    f"truncated stream: {what} at offset {self.pos - (n - remaining)} "
                    f"ends after {n - remaining} of {n} bytes"
                )
            parts.append(piece)
            remaining -= len(piece)
            self.pos += len(piece)
        return b"".join(parts)

    def _skip(self, n: int, what: str) -> None:
        while n > 0:
            piece = self._src.read(min(n, 1 << 20))
            if not piece:
                raise VhdFormatError(f"truncated stream while skipping to the {what}")
            n -= len(piece)
            self.pos += len(piece)

    def _skip_to(self, offset: int, what: str) -> None:
        if offset < self.pos:
            raise VhdFormatError(
                f"{what} at offset {offset} lies before the stream position {self.pos}; "
                "this VHD cannot be read as a stream"
            )
        self._skip(offset - self.pos, what)

    def blocks(self) -> Iterator[StreamBlock]:
        """Yield every present block in file order, then check the trailing footer."""
        if self._done:
            raise RuntimeError("blocks() can be iterated once")
        self._done = True
        order = sorted((sector, index) for index, sector in enumerate(self.bat) if sector != ABSENT)
        spb_bytes = self.block_size // SECTOR // 8
        for sector, index in order:
            offset = sector * SECTOR
            if offset < self.pos:
                raise VhdFormatError(
                    f"overlapping blocks: block {index} at offset {offset} starts before "
                    f"the end of the previous structure ({self.pos})"
                )
            self._skip_to(offset, f"block {index}")
            bitmap = self._read(self._bitmap_size, f"bitmap of block {index}")[:spb_bytes]
            data = self._read(self.block_size, f"data of block {index}")
            yield StreamBlock(index, bitmap, data)
        self._check_trailer()

    def _check_trailer(self) -> None:
        tail = b""
        while True:
            piece = self._src.read(1 << 20)
            if not piece:
                break
            self.pos += len(piece)
            tail = (tail + piece)[-FOOTER_SIZE:]
        if len(tail) < FOOTER_SIZE:
            raise VhdFormatError("truncated stream: no footer at the end")
        VhdFooter.unpack(tail, "trailing footer")
        if tail != self._footer_raw:
            raise VhdFormatError("footer copy mismatch: start and end of the stream differ")


# --------------------------------------------------------------------------
# Writers


@dataclass
class VhdParent:
    """What a differencing disk records about its parent."""

    uuid: uuidlib.UUID
    timestamp: int = 0
    name: str = ""


@dataclass
class _Layout:
    table_offset: int
    table_bytes: int
    locator_offset: int
    locator_space: int
    first_block: int  # offset of the first block's bitmap
    locator_data: bytes = field(default=b"")


def _layout(size: int, block_size: int, parent: VhdParent | None) -> _Layout:
    entries = -(-size // block_size)
    table_offset = FOOTER_SIZE + HEADER_SIZE
    table_bytes = _round_up(max(entries, 1) * 4, SECTOR)
    locator_offset = table_offset + table_bytes
    locator_data = b""
    locator_space = 0
    if parent is not None and parent.name:
        # blktap's MacX locator: a file:// URL relative to the child, UTF-8.
        locator_data = f"file://./{parent.name}".encode()
        locator_space = _round_up(len(locator_data), SECTOR)
    meta_end = locator_offset + locator_space
    bsize = bitmap_size(block_size)
    first_data = _round_up(meta_end + bsize, DATA_ALIGNMENT)
    return _Layout(
        table_offset, table_bytes, locator_offset, locator_space, first_data - bsize, locator_data
    )


def _metadata(
    size: int,
    block_size: int,
    unique_id: uuidlib.UUID,
    parent: VhdParent | None,
    timestamp: int,
    layout: _Layout,
    bat: array[int],
) -> tuple[bytes, bytes]:
    """(footer, everything from offset 0 up to the first block) of a dynamic/diff VHD."""
    table = array("I", bat)
    if struct.pack("=I", 1) != struct.pack(">I", 1):
        table.byteswap()
    locators: tuple[ParentLocator, ...] = ()
    if layout.locator_space:
        locators = (
            ParentLocator(
                b"MacX",
                layout.locator_space // SECTOR,
                len(layout.locator_data),
                layout.locator_offset,
            ),
        )
    header = VhdHeader(
        table_offset=layout.table_offset,
        max_entries=len(bat),
        block_size=block_size,
        parent_uuid=parent.uuid if parent else None,
        parent_timestamp=parent.timestamp if parent else 0,
        parent_name=parent.name if parent else "",
        locators=locators,
    )
    footer = VhdFooter(
        disk_type=DISK_DIFFERENCING if parent is not None else DISK_DYNAMIC,
        current_size=size,
        uuid=unique_id,
        timestamp=timestamp,
        data_offset=FOOTER_SIZE,
    ).pack()
    prefix = b"".join(
        [
            footer,
            header.pack(),
            table.tobytes().ljust(layout.table_bytes, b"\xff"),
            layout.locator_data.ljust(layout.locator_space, b"\0"),
        ]
    )
    # Zeros up to the first block so no stale bytes of a reused file remain.
    return footer, prefix.ljust(layout.first_block, b"\0")


class VhdWriter:
    """Write a dynamic or differencing VHD into a seekable file, block by block.

    Blocks may be written in any order, each at most once; they are appended
    to the file in the order they arrive, each block's data on a 4 KiB
    boundary. :meth:`close` writes the BAT, the header and both footers.

    ``out`` must be opened for writing and seeking (``"w+b"``/``"wb"``); it is
    truncated to the VHD's size on close.
    """

    def __init__(
        self,
        out: BinaryIO,
        size: int,
        *,
        uuid: uuidlib.UUID,
        parent: VhdParent | None = None,
        timestamp: int = 0,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        if size <= 0 or size % SECTOR or size > MAX_DISK_SIZE:
            raise ValueError(f"size {size} must be positive whole sectors up to 2040 GiB")
        if (
            block_size < MIN_BLOCK_SIZE
            or block_size > MAX_BLOCK_SIZE
            or block_size & (block_size - 1)
        ):
            raise ValueError(f"unsupported block size {block_size}")
        self._out = out
        self.size = size
        self.block_size = block_size
        self.block_count = -(-size // block_size)
        if self.block_count > MAX_BAT_ENTRIES:
            raise ValueError(f"{self.block_count} blocks exceed the supported BAT size")
        self.uuid = uuid
        self.parent = parent
        self.timestamp = timestamp
        self.disk_type = DISK_DIFFERENCING if parent is not None else DISK_DYNAMIC
        self._bitmap_size = bitmap_size(block_size)
        self._layout = _layout(size, block_size, parent)
        self._next = self._layout.first_block
        self.bat = array("I", [ABSENT]) * self.block_count
        self._closed = False

    @property
    def _stride(self) -> int:
        return _round_up(self._bitmap_size + self.block_size, DATA_ALIGNMENT)

    def allocate_block(self, index: int, bitmap: bytes | None = None) -> int:
        """Reserve block ``index``, write its bitmap, return the offset for its data.

        The caller then writes (or clones with FICLONERANGE) exactly one block
        of data at the returned offset, which is a multiple of 4 KiB.
        ``bitmap`` defaults to all sectors present.
        """
        if self._closed:
            raise ValueError("writer is closed")
        if not 0 <= index < self.block_count:
            raise ValueError(f"block {index} outside 0..{self.block_count - 1}")
        if self.bat[index] != ABSENT:
            raise ValueError(f"block {index} written twice")
        nbytes = self.block_size // SECTOR // 8
        if bitmap is None:
            bitmap = b"\xff" * nbytes
        if len(bitmap) != nbytes:
            raise ValueError(f"bitmap of {len(bitmap)} bytes, expected {nbytes}")
        start = self._next
        self._out.seek(start)
        self._out.write(bitmap.ljust(self._bitmap_size, b"\0"))
        self.bat[index] = start // SECTOR
        self._next = start + self._stride
        return start + self._bitmap_size

    def write_block(self, index: int, data: bytes, bitmap: bytes | None = None) -> int:
        """Append block ``index`` with ``data`` (a whole block; a shorter last
        block is zero-padded). Returns the file offset of the data."""
        if len(data) > self.block_size:
            raise ValueError(f"block data of {len(data)} bytes exceeds {self.block_size}")
        if len(data) < self.block_size:
            if index != self.block_count - 1 and len(data) != self.block_size:
                raise ValueError(f"block {index} has {len(data)} bytes, expected a whole block")
            data = data + bytes(self.block_size - len(data))
        offset = self.allocate_block(index, bitmap)
        self._out.seek(offset)
        self._out.write(data)
        return offset

    def close(self) -> None:
        """Write BAT, locator, header and both footers; the file is then complete."""
        if self._closed:
            return
        used = [s for s in self.bat if s != ABSENT]
        end = self._layout.first_block
        if used:
            end = max(used) * SECTOR + self._bitmap_size + self.block_size
        footer, prefix = _metadata(
            self.size,
            self.block_size,
            self.uuid,
            self.parent,
            self.timestamp,
            self._layout,
            self.bat,
        )
        out = self._out
        out.seek(0)
        out.write(prefix)
        out.seek(end)
        out.write(footer)
        out.truncate(end + FOOTER_SIZE)
        out.flush()
        self._closed = True

    def __enter__(self) -> VhdWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()


class VhdStream:
    """A dynamic or differencing VHD produced as a byte stream, for uploads.

    The BAT comes first in the file, so the present blocks are given up
    front; their contents are then pulled from ``read_block(index) -> (data,
    bitmap or None)`` one at a time, in increasing index order. The bytes are
    identical to a :class:`VhdWriter` fed the same blocks in increasing index
    order, and :attr:`length` is known before the first byte (for a
    Content-Length).
    """

    def __init__(
        self,
        size: int,
        *,
        uuid: uuidlib.UUID,
        present: Iterable[int],
        read_block: Callable[[int], tuple[bytes, bytes | None]],
        parent: VhdParent | None = None,
        timestamp: int = 0,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        # Reuse the writer's checks and layout; it never touches its file here.
        shape = VhdWriter(io.BytesIO(), size, uuid=uuid, parent=parent, block_size=block_size)
        self._shape = shape
        self._read_block = read_block
        self.present = sorted(set(present))
        if self.present and not 0 <= self.present[0] <= self.present[-1] < shape.block_count:
            raise ValueError(f"present blocks must lie in 0..{shape.block_count - 1}")
        start = shape._layout.first_block
        for n, index in enumerate(self.present):
            shape.bat[index] = (start + n * shape._stride) // SECTOR
        self._timestamp = timestamp
        end = start
        if self.present:
            end = start + (len(self.present) - 1) * shape._stride
            end += shape._bitmap_size + block_size
        self.length = end + FOOTER_SIZE

    def __iter__(self) -> Iterator[bytes]:
        shape = self._shape
        footer, prefix = _metadata(
            shape.size,
            shape.block_size,
            shape.uuid,
            shape.parent,
            self._timestamp,
            shape._layout,
            shape.bat,
        )
        yield prefix
        pad = bytes(shape._stride - shape._bitmap_size - shape.block_size)
        nbytes = shape.block_size // SECTOR // 8
        for n, index in enumerate(self.present):
            data, bitmap = self._read_block(index)
            if bitmap is None:
                bitmap = b"\xff" * nbytes
            if len(bitmap) != nbytes:
                raise ValueError(f"bitmap of block {index} is {len(bitmap)} bytes, not {nbytes}")
            if len(data) != shape.block_size:
                if index != shape.block_count - 1 or len(data) > shape.block_size:
                    raise ValueError(f"block {index} has {len(data)} bytes")
                data += bytes(shape.block_size - len(data))
            if n:
                yield pad
            yield bitmap.ljust(shape._bitmap_size, b"\0")
            yield data
        yield footer


class VhdUpdater:
    """Change a dynamic or differencing VHD in place: the primitive under merges.

    New blocks are placed past the current end of the file, data on 4 KiB
    boundaries, and a copy of the footer is written after each new block at
    once, so the file always ends with a valid footer. :meth:`commit` makes
    the new blocks durable, then writes the BAT entries that point to them: a
    crash at any point before that BAT write leaves a valid file that reads
    as before (with unused space). Overwriting the bitmap or data of a block that was
    already present happens in place and is not atomic: the caller's journal
    must make such steps safe to replay (re-applying a child's sectors is).
    Unwritten parts of a new block read as zeros (the file is extended).
    """

    def __init__(self, f: BinaryIO, *, name: str = "VHD") -> None:
        self._f = f
        self.vhd = VhdFile(f, name=name)
        if self.vhd.disk_type == DISK_FIXED:
            raise VhdFormatError(f"{name}: a fixed disk cannot be updated block by block")
        assert self.vhd.header is not None
        self._bitmap_size = bitmap_size(self.vhd.block_size)
        self._stride = _round_up(self._bitmap_size + self.vhd.block_size, DATA_ALIGNMENT)
        self._next_data = _round_up(self.vhd.file_size + self._bitmap_size, DATA_ALIGNMENT)
        self._pending: dict[int, int] = {}
        self._footer = _pread(f, self.vhd.file_size - FOOTER_SIZE, FOOTER_SIZE)

    def block_data_offset(self, index: int) -> int | None:
        """Data offset of block ``index``, counting blocks allocated but not committed."""
        if index in self._pending:
            return self._pending[index] * SECTOR + self._bitmap_size
        return self.vhd.block_data_offset(index)

    def allocate_block(self, index: int, bitmap: bytes | None = None) -> int:
        """Place absent block ``index`` past the end of the file; return its data offset.

        ``bitmap`` defaults to all sectors present. Write (or clone) the data
        at the returned offset, then :meth:`commit`.
        """
        if not 0 <= index < self.vhd.block_count:
            raise ValueError(f"block {index} outside 0..{self.vhd.block_count - 1}")
        if self.block_data_offset(index) is not None:
            raise ValueError(f"block {index} is already present")
        data_offset = self._next_data
        self._next_data += self._stride
        self._pending[index] = (data_offset - self._bitmap_size) // SECTOR
        self.write_bitmap(index, bitmap or b"\xff" * (self.vhd.sectors_per_block // 8))
        # A footer at the new end at once: a crash at any later point leaves
        # a valid file whose BAT does not know the block yet.
        self._pwrite(data_offset + self.vhd.block_size, self._footer)
        return data_offset

    def write_bitmap(self, index: int, bitmap: bytes) -> None:
        """Replace the sector bitmap of a present (or allocated) block."""
        offset = self.block_data_offset(index)
        if offset is None:
            raise ValueError(f"block {index} is absent")
        if len(bitmap) != self.vhd.sectors_per_block // 8:
            raise ValueError(f"bitmap of {len(bitmap)} bytes")
        self._pwrite(offset - self._bitmap_size, bitmap.ljust(self._bitmap_size, b"\0"))

    def read_bitmap(self, index: int) -> bytes | None:
        """The sector bitmap of block ``index`` (allocated ones included), or None."""
        offset = self.block_data_offset(index)
        if offset is None:
            return None
        return _pread(self._f, offset - self._bitmap_size, self.vhd.sectors_per_block // 8)

    def write_data(self, index: int, offset_in_block: int, data: bytes) -> None:
        """Write ``data`` into block ``index`` at ``offset_in_block``."""
        offset = self.block_data_offset(index)
        if offset is None:
            raise ValueError(f"block {index} is absent")
        if offset_in_block < 0 or offset_in_block + len(data) > self.vhd.block_size:
            raise ValueError("write past the end of the block")
        self._pwrite(offset + offset_in_block, data)

    def _pwrite(self, offset: int, data: bytes) -> None:
        self._f.seek(offset)
        self._f.write(data)

    def _sync(self, fsync: bool) -> None:
        self._f.flush()
        if fsync:
            with contextlib.suppress(OSError, AttributeError, ValueError):
                os.fsync(self._f.fileno())

    def commit(self, *, fsync: bool = True) -> None:
        """Make allocated blocks part of the disk: data, bitmaps and footer durable
        first, then the BAT entries that point to them."""
        if not self._pending:
            self._sync(fsync)
            return
        end = max(self._pending.values()) * SECTOR + self._bitmap_size + self.vhd.block_size
        self._sync(fsync)
        assert self.vhd.header is not None
        table = self.vhd.header.table_offset
        for index, sector in sorted(self._pending.items()):
            self._pwrite(table + 4 * index, sector.to_bytes(4, "big"))
            self.vhd.bat[index] = sector
        self._sync(fsync)
        self._pending.clear()
        self.vhd.file_size = end + FOOTER_SIZE
        self._next_data = _round_up(self.vhd.file_size + self._bitmap_size, DATA_ALIGNMENT)


def fixed_footer(size: int, *, uuid: uuidlib.UUID, timestamp: int = 0) -> bytes:
    """The footer that turns ``size`` raw bytes into a fixed VHD when appended."""
    if size <= 0 or size % SECTOR:
        raise ValueError("size must be positive whole sectors")
    return VhdFooter(disk_type=DISK_FIXED, current_size=size, uuid=uuid, timestamp=timestamp).pack()


def write_dynamic_from_raw(
    out: BinaryIO,
    src: BinaryIO,
    size: int,
    *,
    uuid: uuidlib.UUID,
    timestamp: int = 0,
) -> int:
    """Convert ``size`` raw bytes read sequentially from ``src`` into a dynamic VHD.

    All-zero blocks are left absent. Returns the number of blocks written.
    """
    written = 0
    with VhdWriter(out, size, uuid=uuid, timestamp=timestamp) as writer:
        zero = bytes(writer.block_size)
        for index in range(writer.block_count):
            want = min(writer.block_size, size - index * writer.block_size)
            data = src.read(want)
            while len(data) < want:
                more = src.read(want - len(data))
                if not more:
                    raise ValueError(f"raw source ended at {index * writer.block_size + len(data)}")
                data += more
            if data != zero[:want]:
                writer.write_block(index, data)
                written += 1
    return written


def bitmap_from_sectors(
    sectors: Sequence[int] | set[int], block_size: int = DEFAULT_BLOCK_SIZE
) -> bytes:
    """A block bitmap with the given sector numbers (0-based within the block) set."""
    spb = block_size // SECTOR
    value = 0
    for s in sectors:
        if not 0 <= s < spb:
            raise ValueError(f"sector {s} outside the block")
        value |= 1 << (spb - 1 - s)
    return value.to_bytes(spb // 8, "big")


__all__ = [
    "ABSENT",
    "DATA_ALIGNMENT",
    "DEFAULT_BLOCK_SIZE",
    "DISK_DIFFERENCING",
    "DISK_DYNAMIC",
    "DISK_FIXED",
    "SECTOR",
    "ParentLocator",
    "StreamBlock",
    "SupportsRead",
    "VhdChain",
    "VhdFile",
    "VhdFooter",
    "VhdHeader",
    "VhdParent",
    "VhdStream",
    "VhdStreamReader",
    "VhdUpdater",
    "VhdWriter",
    "bitmap_from_sectors",
    "bitmap_runs",
    "check_parent",
    "chs_geometry",
    "fixed_footer",
    "vhd_timestamp",
    "write_dynamic_from_raw",
]
