"""The VHD structures: footer, dynamic header, BAT entries, checksums, geometry.

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
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

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

ZERO_PIECE = bytes(PIECE)


class VhdError(ValueError):
    """A VHD stream is malformed, truncated or does not fit the target disk."""


def checksum(raw: bytes, at: int) -> int:
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
    fields[14] = checksum(raw, _FOOTER_CHECKSUM_AT)
    return _FOOTER.pack(*fields)


def parse_footer(raw: bytes, where: str) -> Footer:
    """Decode and validate a footer; ``where`` names it in error messages."""
    if len(raw) != _FOOTER.size:
        raise VhdError(f"{where}: expected 512 bytes, got {len(raw)}")
    f = _FOOTER.unpack(raw)
    if f[0] != FOOTER_COOKIE:
        raise VhdError(f"{where}: bad cookie {f[0]!r}, expected {FOOTER_COOKIE!r}")
    computed = checksum(raw, _FOOTER_CHECKSUM_AT)
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
    fields[6] = checksum(raw, _HEADER_CHECKSUM_AT)
    return _HEADER.pack(*fields)


def parse_header(raw: bytes, where: str) -> DynamicHeader:
    """Decode and validate a dynamic header."""
    if len(raw) != _HEADER.size:
        raise VhdError(f"{where}: expected 1024 bytes, got {len(raw)}")
    h = _HEADER.unpack(raw)
    if h[0] != HEADER_COOKIE:
        raise VhdError(f"{where}: bad cookie {h[0]!r}, expected {HEADER_COOKIE!r}")
    computed = checksum(raw, _HEADER_CHECKSUM_AT)
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
