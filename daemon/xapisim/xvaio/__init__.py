"""The simulator's own XVA codec (GET /export, PUT /import).

Written independently of the product's codec on purpose: a bug shared by both
sides of a test would be invisible. One job per module:

- ``layout``: the archive's members and checksums; the format is described there.
- ``ovaxml``: encoding and strictly parsing ova.xml, and which disks it implies.
- ``writer``: an XVA stream out of ova.xml and sparse disk files.
- ``reader``: reading an XVA forward only, verifying every chunk.

Everything streams: memory holds at most one chunk, whatever the disk size.
The names callers use are re-exported here: ``from xapisim.xvaio import read_xva``.
"""

from .layout import BLOCK, CHUNK, MAX_OVA_XML, OVA_XML, XvaError, chunk_checksum
from .ovaxml import (
    DEFAULT_VERSION,
    REQUIRED_VERSION_FIELDS,
    DateTime,
    build_ova_xml,
    encode_value,
    ova_version,
    parse_ova_xml,
    parse_value,
    xva_disks,
)
from .reader import XvaChunk, XvaHeader, XvaItem, read_xva
from .writer import xva_stream

__all__ = [
    "BLOCK",
    "CHUNK",
    "DEFAULT_VERSION",
    "MAX_OVA_XML",
    "OVA_XML",
    "REQUIRED_VERSION_FIELDS",
    "DateTime",
    "XvaChunk",
    "XvaError",
    "XvaHeader",
    "XvaItem",
    "build_ova_xml",
    "chunk_checksum",
    "encode_value",
    "ova_version",
    "parse_ova_xml",
    "parse_value",
    "read_xva",
    "xva_disks",
    "xva_stream",
]
