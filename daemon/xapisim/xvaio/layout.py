"""The XVA archive layout: member names, sizes, checksums and the error type.

Written independently of the product's codec on purpose: a bug shared by both
sides of a test would be invisible.

An XVA is a tar archive (ustar headers of 512 bytes, bodies padded to 512)::

    ova.xml                      the VM metadata, always the first member
    Ref:3/00000000               1 MiB of disk data (the last chunk may be shorter)
    Ref:3/00000000.xxhash        XXH64 of that chunk as 16 upper-case hex digits
    Ref:3/00000002               all-zero chunks may be left out ...
    Ref:3/00000002.xxhash
    ...                          ... except the first and the last of each disk
    Ref:7/00000000               the next disk: directories in lexicographic order
    ...
    <two zero blocks>            the normal end of archive

Older exports carry ``.checksum`` members (SHA-1, 40 lower-case hex digits)
instead of ``.xxhash``; both are accepted on import. Chunk numbers are
zero-padded to 8 digits and strictly increase within a disk.

``ova.xml`` is one XML-RPC ``<value>`` as XAPI's marshaller writes it:
strings and integers as bare text (``<value>1</value>``), booleans, doubles
and dates tagged. It holds a struct ``{version: {hostname, date,
product_version, product_brand, build_number, xapi_major, xapi_minor,
export_vsn}, objects: [{class, id, snapshot}, ...]}`` where ``id`` is
``Ref:<n>`` and ``snapshot`` is the object's full record whose references
use those ids. Disks are streamed for the VDIs of non-CD VBDs whose SR is
not an ISO SR, plus suspend VDIs, each for the VDI's ``virtual_size``.
"""

from __future__ import annotations

import re

import xxhash

CHUNK = 1024 * 1024
BLOCK = 512
OVA_XML = "ova.xml"
#: ova.xml of real VMs is a few hundred KiB; anything far bigger is refused
#: rather than held in memory.
MAX_OVA_XML = 64 * 1024 * 1024
CHUNK_NAME = re.compile(r"([^/]+)/([0-9]{8})(\.xxhash|\.checksum)?")
ZERO_CHUNK = bytes(CHUNK)
ZERO_BLOCK = bytes(BLOCK)


class XvaError(ValueError):
    """An XVA stream or its ova.xml is malformed, truncated or inconsistent."""


def chunk_checksum(data: bytes) -> bytes:
    """The ``.xxhash`` member body: XXH64 (seed 0) as 16 upper-case hex digits."""
    return xxhash.xxh64_hexdigest(data).upper().encode("ascii")
