"""XVA: a whole VM (metadata and disks) as XAPI's ``/export`` and ``/import`` carry it.

Layout (POSIX ustar archive; XAPI also sends and accepts it gzip- or
zstd-compressed: the writer writes it uncompressed, the reader also takes
gzip)::

    ova.xml                     first member, always
    Ref:002/00000000            1 MiB of disk data of the VDI whose object id is Ref:002
    Ref:002/00000000.xxhash     XXH64 of that chunk, 16 upper-case hex digits
    Ref:002/00000007            all-zero chunks are left out, except the first and last
    Ref:002/00000007.xxhash
    ...                         chunk numbers strictly increase within a VDI
    Ref:003/00000000            VDI directories in lexicographic order of their ids
    ...
    <two 512-byte zero blocks>  end of archive

``ova.xml`` is one XML-RPC ``<value>``: a struct with ``version`` (hostname,
date, product_version, product_brand, build_number, xapi_major, xapi_minor,
export_vsn = 2) and ``objects``, an array of ``{class, id, snapshot}`` where
``snapshot`` is the complete XAPI record of a VM, VBD, VDI, VIF, SR or network
(see :mod:`xenkeep.formats.xapi_records`). References between records use the
archive's ``Ref:<n>`` ids or ``OpaqueRef:NULL``. Integers are written as plain
strings, as XAPI does. Older exports use ``<chunk>.checksum`` (SHA-1, lower-case
hex) instead of ``.xxhash``; the reader accepts both.

A chunk is 1 MiB except the last one of a disk whose size is not a multiple of
1 MiB. Holes in the disk are the chunks that are absent: the importer writes
nothing there, so the VDI reads zeros.

The writer is deterministic: member order, headers (mode 0644, uid/gid 0,
owner ``root``), the mtime and every UUID are inputs, so the same inputs give
the same bytes. Memory use is one chunk, whatever the disk size.

One module per part: :mod:`.members` (member names and checksums),
:mod:`.records` (ova.xml), :mod:`.tar` (the ustar container),
:mod:`.writer` and :mod:`.reader`. This package re-exports what callers use.
"""

from __future__ import annotations

from ..streams import SupportsRead
from .members import CHUNK_SIZE, OVA_XML, ProgressFn, chunk_name, xxhash_hex
from .reader import XvaChunk, XvaSummary, extract_vdi, iter_xva, verify_xva
from .records import (
    NULL_REF,
    XAPI_MAJOR,
    XAPI_MINOR,
    XvaHeader,
    XvaObject,
    XvaVersion,
    complete_record,
    parse_ova_xml,
    render_ova_xml,
)
from .tar import BLOCK
from .writer import VdiWriteStats, XvaWriter, XvaWriteStats, write_xva

__all__ = [
    "BLOCK",
    "CHUNK_SIZE",
    "NULL_REF",
    "OVA_XML",
    "XAPI_MAJOR",
    "XAPI_MINOR",
    "ProgressFn",
    "SupportsRead",
    "VdiWriteStats",
    "XvaChunk",
    "XvaHeader",
    "XvaObject",
    "XvaSummary",
    "XvaVersion",
    "XvaWriteStats",
    "XvaWriter",
    "chunk_name",
    "complete_record",
    "extract_vdi",
    "iter_xva",
    "parse_ova_xml",
    "render_ova_xml",
    "verify_xva",
    "write_xva",
    "xxhash_hex",
]
