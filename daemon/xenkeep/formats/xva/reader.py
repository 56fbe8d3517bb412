"""Reading an XVA: ova.xml, then every chunk once its checksum matched.

What a valid archive looks like to this reader, in stream order:

- ``ova.xml`` first, a regular file of at most 64 MiB, well-formed
  (:mod:`.records`);
- then for each VDI listed in ova.xml that has data, in increasing id order
  and each once: chunks ``<vdi>/<index>`` with indexes strictly increasing
  from ``00000000`` to the last chunk of the VDI's ``virtual_size``, each
  chunk followed by its ``.xxhash`` (XXH64) or ``.checksum`` (SHA-1) member;
- the end-of-archive marker. Directory entries some tar tools add are skipped.

A chunk is 1 MiB, or the rest of the disk for the last one (a last chunk
padded to 1 MiB is accepted and the padding dropped). Chunks that are absent
are holes: the disk reads zeros there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import XvaFormatError
from ..streams import SupportsRead
from .members import (
    CHUNK_RE,
    CHUNK_SIZE,
    MAX_OVA_XML,
    OVA_XML,
    chunk_name,
    sha1_hex,
    xxhash_hex,
)
from .records import XvaHeader, parse_ova_xml
from .tar import TarStream, open_archive


@dataclass(frozen=True)
class XvaChunk:
    """One verified chunk of disk data: bytes at ``index * CHUNK_SIZE`` of VDI ``vdi_id``."""

    vdi_id: str
    index: int
    data: bytes
    checksum: str  # "xxhash" or "sha1"

    @property
    def offset(self) -> int:
        """Byte offset of the chunk in its disk."""
        return self.index * CHUNK_SIZE


def iter_xva(src: SupportsRead) -> Iterator[XvaHeader | XvaChunk]:
    """Read an XVA from ``src``, yielding the header then verified chunks.

    The archive may be plain tar or gzip-compressed (``use_compression=true``).

    Checks, in stream order: ova.xml first and well-formed; every chunk
    followed by its ``.xxhash`` or ``.checksum`` member with a matching sum;
    chunk numbers strictly increasing within a VDI, starting at 0, within
    the VDI's virtual size and ending with its last chunk; VDI directories in
    increasing order, each once, each one declared in ova.xml; the archive
    ending with the end-of-archive marker. Any violation raises
    :class:`XvaFormatError`; chunks are yielded only once their sum matched.
    """
    tar = TarStream(open_archive(src))
    first = tar.next()
    if first is None:
        raise XvaFormatError("empty archive: no ova.xml")
    if first.name == OVA_XML and first.typeflag not in (b"0", b"\0"):
        raise XvaFormatError("ova.xml is not a regular file")
    if first.name != OVA_XML:
        raise XvaFormatError(f"first member is {first.name!r}, expected 'ova.xml'")
    if first.size > MAX_OVA_XML:
        raise XvaFormatError(f"ova.xml of {first.size} bytes is implausibly large")
    header = parse_ova_xml(tar.read_data(first))
    sizes = header.vdi_sizes()
    yield header

    done: list[str] = []
    current: str | None = None
    last_index = -1
    pending: tuple[str, int, bytes] | None = None  # chunk awaiting its checksum member

    def finish_vdi(vdi: str, last: int) -> None:
        expected_last = (sizes[vdi] - 1) // CHUNK_SIZE if sizes[vdi] else -1
        if last != expected_last:
            raise XvaFormatError(
                f"VDI {vdi}: last chunk is {last:08d}, expected {expected_last:08d} "
                f"(virtual size {sizes[vdi]})"
            )

    while True:
        member = tar.next()
        if member is None:
            break
        if member.typeflag == b"5":
            continue  # directory entries carry no data; some tar tools add them
        if member.typeflag not in (b"0", b"\0"):
            raise XvaFormatError(f"member {member.name!r} is not a regular file")
        match = CHUNK_RE.match(member.name)
        if match is None:
            raise XvaFormatError(f"unexpected member {member.name!r}")
        vdi, index, suffix = match.group(1), int(match.group(2)), match.group(3)
        if suffix:
            if pending is None or (pending[0], pending[1]) != (vdi, index):
                raise XvaFormatError(f"checksum member {member.name!r} without its chunk")
            if member.size > 128:
                raise XvaFormatError(f"checksum member {member.name!r} is {member.size} bytes")
            stored = tar.read_data(member).decode("ascii", "replace").strip()
            data = pending[2]
            if suffix == ".xxhash":
                actual, kind = xxhash_hex(data), "xxhash"
                ok = stored.upper() == actual
            else:
                actual, kind = sha1_hex(data), "sha1"
                ok = stored.lower() == actual
            if not ok:
                raise XvaFormatError(
                    f"checksum mismatch for {chunk_name(vdi, index)}: "
                    f"stored {kind} {stored!r}, computed {actual}"
                )
            pending = None
            yield XvaChunk(vdi, index, data, kind)
            continue
        if pending is not None:
            raise XvaFormatError(
                f"chunk {chunk_name(pending[0], pending[1])} is not followed by its "
                f".xxhash or .checksum member (next member is {member.name!r})"
            )
        if vdi not in sizes:
            raise XvaFormatError(f"chunk {member.name!r} belongs to no VDI listed in ova.xml")
        if vdi != current:
            if current is not None:
                finish_vdi(current, last_index)
                done.append(current)
            if vdi in done:
                raise XvaFormatError(f"VDI {vdi} appears again after other VDIs")
            if done and vdi < done[-1]:
                raise XvaFormatError(f"VDI {vdi} comes after {done[-1]}: ids must increase")
            current, last_index = vdi, -1
            if index != 0:
                raise XvaFormatError(f"VDI {vdi} starts at chunk {index:08d}, not 00000000")
        if index <= last_index:
            raise XvaFormatError(
                f"chunk {member.name!r} after chunk {last_index:08d}: numbers must increase"
            )
        size = sizes[vdi]
        expected = min(CHUNK_SIZE, size - index * CHUNK_SIZE)
        if expected <= 0:
            raise XvaFormatError(f"chunk {member.name!r} lies beyond the VDI's size {size}")
        # Some writers pad the last chunk to a full MiB; the padding is dropped.
        if member.size not in (expected, CHUNK_SIZE):
            raise XvaFormatError(
                f"chunk {member.name!r} is {member.size} bytes, expected {expected}"
            )
        last_index = index
        pending = (vdi, index, tar.read_data(member))
    if pending is not None:
        raise XvaFormatError(
            f"chunk {chunk_name(pending[0], pending[1])} has no .xxhash or .checksum member"
        )
    if current is not None:
        finish_vdi(current, last_index)


@dataclass
class XvaSummary:
    """What :func:`verify_xva` found: the header and per-VDI chunk counts."""

    header: XvaHeader
    chunks: dict[str, int]
    data_bytes: int


def verify_xva(src: SupportsRead) -> XvaSummary:
    """Read the whole archive, checking everything :func:`iter_xva` checks."""
    header: XvaHeader | None = None
    chunks: dict[str, int] = {}
    data_bytes = 0
    for item in iter_xva(src):
        if isinstance(item, XvaHeader):
            header = item
            chunks = dict.fromkeys(item.vdi_sizes(), 0)
        else:
            chunks[item.vdi_id] += 1
            data_bytes += len(item.data)
    assert header is not None  # iter_xva yields the header first or raises
    return XvaSummary(header, chunks, data_bytes)


def extract_vdi(src: SupportsRead, vdi_id: str, dest: Path) -> int:
    """Write the disk of VDI ``vdi_id`` to the file ``dest`` and return its size.

    The file gets the VDI's virtual size; absent chunks stay holes. The whole
    archive is verified on the way, so a corrupt XVA never yields a file that
    looks complete: ``dest`` is only left behind when the archive is valid.
    """
    size: int | None = None
    dest = Path(dest)
    try:
        with dest.open("wb") as out:
            for item in iter_xva(src):
                if isinstance(item, XvaHeader):
                    sizes = item.vdi_sizes()
                    if vdi_id not in sizes:
                        raise XvaFormatError(f"ova.xml lists no VDI {vdi_id}")
                    size = sizes[vdi_id]
                    out.truncate(size)
                elif item.vdi_id == vdi_id:
                    assert size is not None
                    out.seek(item.offset)
                    out.write(item.data[: size - item.offset])
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    assert size is not None
    return size
