"""The members of an XVA archive: their names, sizes and checksum members.

Member names, in archive order::

    ova.xml                     the VM's records (:mod:`.records`), first, at most 64 MiB
    Ref:002/00000000            chunk 0 of the VDI whose object id is Ref:002
    Ref:002/00000000.xxhash     XXH64 (seed 0) of that chunk, 16 upper-case hex digits
    Ref:002/00000000.checksum   (older exports, instead) SHA-1, 40 lower-case hex digits

A chunk holds the disk bytes at ``index * CHUNK_SIZE``: 1 MiB, except the last
chunk of a disk whose size is not a multiple of 1 MiB (some writers pad that
one to a full MiB). The index is eight decimal digits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Final

import xxhash

CHUNK_SIZE: Final = 1 << 20
OVA_XML: Final = "ova.xml"
#: ova.xml of a VM with many disks is a few hundred KiB; anything near this
#: bound is not an XVA and must not be loaded into memory.
MAX_OVA_XML: Final = 64 << 20
#: A chunk or its checksum member: (VDI id, index, suffix or None).
CHUNK_RE: Final = re.compile(r"^(Ref:[^/]+)/(\d{8})(\.xxhash|\.checksum)?$")
ZERO_CHUNK: Final = bytes(CHUNK_SIZE)

ProgressFn = Callable[[int], None]


def chunk_name(vdi_id: str, index: int) -> str:
    """Member name of chunk ``index`` of VDI ``vdi_id`` (``Ref:2/00000003``)."""
    return f"{vdi_id}/{index:08d}"


def xxhash_hex(data: bytes) -> str:
    """The ``.xxhash`` member content for ``data``: XXH64, seed 0, 16 upper-case hex."""
    return f"{xxhash.xxh64_intdigest(data):016X}"


def sha1_hex(data: bytes) -> str:
    """The ``.checksum`` member content of older exports: SHA-1, lower-case hex."""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()
