"""The simulator's own VHD and raw disk streams (export_raw_vdi / import_raw_vdi).

Written independently of the product's codec on purpose: a bug shared by both
sides of a test would be invisible. One job per module:

- ``layout``: the on-disk structures (footer, dynamic header, BAT) and their
  checksums; the format is described there.
- ``export``: raw and VHD streams out of a sparse disk file.
- ``ingest``: raw and VHD streams into a sparse disk file.

Streams are produced and consumed sequentially, in pieces of at most a few
MiB, so memory never grows with the disk size (the BAT, four bytes per 2 MiB,
is the only structure proportional to it). The names callers use are
re-exported here: ``from xapisim.vhdio import vhd_stream``.
"""

from .export import (
    VhdStream,
    data_extents,
    nonzero_blocks,
    raw_stream,
    vhd_stream,
    vhd_stream_size,
)
from .ingest import SpaceExhausted, import_raw, import_vhd
from .layout import (
    ABSENT,
    BLOCK_SIZE,
    CREATOR_APP,
    CREATOR_OS,
    CREATOR_VERSION,
    DISK_DIFFERENCING,
    DISK_DYNAMIC,
    DISK_FIXED,
    FOOTER_COOKIE,
    FORMAT_VERSION,
    HEADER_COOKIE,
    HEADER_VERSION,
    MAX_BAT_ENTRIES,
    NO_OFFSET,
    PIECE,
    SECTOR,
    VHD_EPOCH,
    DynamicHeader,
    Footer,
    VhdError,
    checksum,
    chs_geometry,
    pack_footer,
    pack_header,
    parse_footer,
    parse_header,
)

__all__ = [
    "ABSENT",
    "BLOCK_SIZE",
    "CREATOR_APP",
    "CREATOR_OS",
    "CREATOR_VERSION",
    "DISK_DIFFERENCING",
    "DISK_DYNAMIC",
    "DISK_FIXED",
    "FOOTER_COOKIE",
    "FORMAT_VERSION",
    "HEADER_COOKIE",
    "HEADER_VERSION",
    "MAX_BAT_ENTRIES",
    "NO_OFFSET",
    "PIECE",
    "SECTOR",
    "VHD_EPOCH",
    "DynamicHeader",
    "Footer",
    "SpaceExhausted",
    "VhdError",
    "VhdStream",
    "checksum",
    "chs_geometry",
    "data_extents",
    "import_raw",
    "import_vhd",
    "nonzero_blocks",
    "pack_footer",
    "pack_header",
    "parse_footer",
    "parse_header",
    "raw_stream",
    "vhd_stream",
    "vhd_stream_size",
]
