"""Reading an XVA strictly, forward only: plain or gzip tar, every chunk verified.

read_xva yields the parsed ova.xml first, then each chunk of disk data only
after its checksum member (XXH64 ``.xxhash`` or SHA-1 ``.checksum``) has been
read and compared. Order, sizes and names are checked against ova.xml; any
deviation raises XvaError naming the member and the byte offset.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

from .layout import (
    BLOCK,
    CHUNK,
    CHUNK_NAME,
    MAX_OVA_XML,
    OVA_XML,
    ZERO_BLOCK,
    ZERO_CHUNK,
    XvaError,
    chunk_checksum,
)
from .ovaxml import parse_ova_xml, xva_disks


@dataclass(frozen=True)
class XvaHeader:
    """The first item of read_xva: ova.xml, parsed, and the disks to expect."""

    ova: dict[str, Any]
    xml: bytes
    disks: list[tuple[str, int]] = field(default_factory=list)


class XvaChunk(NamedTuple):
    """One verified chunk of disk data: bytes [offset, offset + len(data)) of disk_id.

    A tuple, so ``disk_id, index, data = chunk`` works too.
    """

    disk_id: str
    chunk_index: int
    data: bytes

    @property
    def offset(self) -> int:
        """Byte offset of the chunk in its disk."""
        return self.chunk_index * CHUNK


XvaItem = XvaHeader | XvaChunk


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    at: int


class _Input:
    """Forward-only reads, transparently un-gzipping a gzip-compressed XVA."""

    def __init__(self, src: BinaryIO) -> None:
        self.src = src
        self.pos = 0
        self.pending = b""
        self.inflate: Any = None
        head = self._raw(4)
        if head[:2] == b"\x1f\x8b":
            self.inflate = zlib.decompressobj(wbits=31)
        elif head == b"\x28\xb5\x2f\xfd":
            raise XvaError("zstd-compressed XVA: the simulator only reads plain or gzip tar")
        self.carry = head

    def _raw(self, n: int) -> bytes:
        parts = []
        while n > 0:
            chunk = self.src.read(n)
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _more(self) -> bytes:
        raw = self.carry or self.src.read(CHUNK)
        self.carry = b""
        if self.inflate is None:
            return raw
        while True:
            if not raw:
                if not self.inflate.eof:
                    raise XvaError(f"gzip stream truncated after {self.pos} bytes of archive")
                return b""
            if self.inflate.eof:
                raise XvaError("data after the end of the gzip stream")
            try:
                # Bounded output: a small input must not inflate into a huge buffer.
                out: bytes = self.inflate.decompress(raw, 4 * CHUNK)
            except zlib.error as exc:
                raise XvaError(
                    f"corrupt gzip stream after {self.pos} bytes of archive: {exc}"
                ) from None
            self.carry = self.inflate.unconsumed_tail or self.inflate.unused_data
            if out:
                return out
            raw = self.carry or self.src.read(CHUNK)
            self.carry = b""

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        if self.inflate is None:
            # Plain tar: straight from the source, no staging copies.
            head = self.carry[:n]
            self.carry = self.carry[len(head) :]
            data = head + self._raw(n - len(head)) if len(head) < n else head
            self.pos += len(data)
            return data
        parts = [self.pending[:n]]
        have = len(parts[0])
        self.pending = self.pending[have:]
        while have < n:
            chunk = self._more()
            if not chunk:
                break
            take = chunk[: n - have]
            self.pending = chunk[n - have :]
            parts.append(take)
            have += len(take)
        data = b"".join(parts)
        self.pos += len(data)
        return data


class _Tar:
    def __init__(self, src: BinaryIO) -> None:
        self.input = _Input(src)
        self.ended = False

    @property
    def pos(self) -> int:
        return self.input.pos

    def exact(self, n: int, what: str) -> bytes:
        start = self.pos
        data = self.input.read(n)
        if len(data) < n:
            raise XvaError(
                f"archive truncated at byte {self.pos}: {what} needs {n} bytes from byte {start}"
            )
        return data

    def next(self, expecting: str) -> _Member | None:
        """The next member's header, or None at the end-of-archive marker."""
        at = self.pos
        block = self.input.read(BLOCK)
        if not block:
            raise XvaError(
                f"archive truncated at byte {at}: no end-of-archive marker (expecting {expecting})"
            )
        if len(block) < BLOCK:
            raise XvaError(f"archive truncated at byte {self.pos}: partial member header")
        if block == ZERO_BLOCK:
            if self.exact(BLOCK, "end-of-archive marker") != ZERO_BLOCK:
                raise XvaError(f"lone zero block at byte {at} (end-of-archive needs two)")
            self._drain()
            return None
        stored_field = block[148:156]
        summed = bytearray(block)
        summed[148:156] = b" " * 8
        unsigned = sum(summed)
        try:
            stored = int(stored_field.rstrip(b"\x00 ").strip() or b"-1", 8)
        except ValueError:
            stored = -1
        # Some old tars summed signed bytes; only worth computing on a mismatch.
        if stored != unsigned and stored != sum(b - 256 if b > 127 else b for b in summed):
            raise XvaError(
                f"member header at byte {at}: checksum mismatch (stored {stored_field!r},"
                f" computed {unsigned:o})"
            )
        try:
            name = block[:100].split(b"\x00", 1)[0].decode("utf-8")
            magic = block[257:265]
            prefix = block[345:500].split(b"\x00", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            raise XvaError(f"member header at byte {at}: name is not UTF-8") from None
        if magic == b"ustar\x0000" and prefix:
            name = f"{prefix}/{name}"
        kind = block[156:157]
        if kind not in (b"0", b"\x00"):
            raise XvaError(
                f"member {name!r} at byte {at}: type {kind.decode('latin-1')!r} is not allowed"
                " (only regular files)"
            )
        size = _tar_number(block[124:136])
        if size is None:
            raise XvaError(f"member {name!r} at byte {at}: bad size field {block[124:136]!r}")
        return _Member(name, size, at)

    def body(self, member: _Member) -> bytes:
        data = self.exact(member.size, f"member {member.name!r}")
        if member.size % BLOCK:
            self.exact(BLOCK - member.size % BLOCK, f"padding of member {member.name!r}")
        return data

    def _drain(self) -> None:
        # Writers may pad to a record size; anything but zeros is a second archive or junk.
        while True:
            at = self.pos
            rest = self.input.read(CHUNK)
            if not rest:
                return
            if rest != ZERO_CHUNK[: len(rest)]:
                raise XvaError(f"data after the end-of-archive marker at byte {at}")


def _tar_number(field_: bytes) -> int | None:
    if field_[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([field_[0] & 0x7F]) + field_[1:], "big")
    text = field_.rstrip(b"\x00 ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return None


def read_xva(src: BinaryIO, *, disks: Mapping[str, int] | None = None) -> Iterator[XvaItem]:
    """Read an XVA strictly, yielding the parsed header first, then verified chunks.

    ``src`` is read forward only (read() only); plain and gzip tar are
    accepted. The disks to expect come from ova.xml (see xva_disks) unless
    ``disks`` maps VDI ids to sizes. Each chunk is yielded only after its
    checksum member has been read and verified. Raises XvaError, naming the
    member, when ova.xml is not first or is malformed, a member is unknown,
    out of order, the wrong size or missing its checksum, a checksum differs,
    a disk is incomplete, or the archive is truncated.
    """
    tar = _Tar(src)
    first = tar.next(OVA_XML)
    if first is None or first.name != OVA_XML:
        found = "the end of the archive" if first is None else repr(first.name)
        raise XvaError(f"the first member must be {OVA_XML}, found {found}")
    if first.size > MAX_OVA_XML:
        raise XvaError(f"{OVA_XML} is {first.size} bytes, more than the {MAX_OVA_XML} allowed")
    xml = tar.body(first)
    ova = parse_ova_xml(xml)
    expected = sorted(disks.items()) if disks is not None else xva_disks(ova)
    yield XvaHeader(ova, xml, expected)
    for disk_id, size in expected:
        yield from _read_disk(tar, disk_id, size)
    extra = tar.next("the end of the archive")
    if extra is not None:
        raise XvaError(f"unexpected member {extra.name!r} after the last disk")


def _read_disk(tar: _Tar, disk_id: str, size: int) -> Iterator[XvaChunk]:
    if size <= 0:
        return
    last = (size - 1) // CHUNK
    previous = -1
    while previous < last:
        expecting = f"chunk {last:08d} of {disk_id}" if previous >= 0 else f"{disk_id}/00000000"
        member = tar.next(expecting)
        if member is None:
            raise XvaError(f"archive ends before disk {disk_id} is complete (missing {expecting})")
        match = CHUNK_NAME.fullmatch(member.name)
        if match is None or match.group(1) != disk_id:
            raise XvaError(f"unexpected member {member.name!r} (expecting {expecting})")
        if match.group(3):
            raise XvaError(f"checksum member {member.name!r} without its chunk")
        index = int(match.group(2))
        if previous < 0 and index != 0:
            raise XvaError(f"chunk {member.name!r}: the first chunk of {disk_id} must be 00000000")
        if index <= previous:
            raise XvaError(
                f"chunk {member.name!r} is out of order (after {disk_id}/{previous:08d})"
            )
        if index > last:
            raise XvaError(f"chunk {member.name!r} lies beyond the {size}-byte disk")
        want = min(CHUNK, size - index * CHUNK)
        if member.size != want:
            raise XvaError(f"chunk {member.name!r} is {member.size} bytes, expected {want}")
        data = tar.body(member)
        _verify(tar, member.name, data)
        yield XvaChunk(disk_id, index, data)
        previous = index


def _verify(tar: _Tar, name: str, data: bytes) -> None:
    member = tar.next(f"{name}.xxhash")
    if member is None:
        raise XvaError(f"chunk {name!r} is not followed by its checksum member (archive ends)")
    if member.name == name + ".xxhash":
        computed = chunk_checksum(data)
    elif member.name == name + ".checksum":
        computed = hashlib.sha1(data, usedforsecurity=False).hexdigest().encode("ascii")
    else:
        raise XvaError(
            f"chunk {name!r} is not followed by its checksum member (found {member.name!r})"
        )
    if member.size > 128:
        raise XvaError(f"checksum member {member.name!r} is {member.size} bytes")
    stored = tar.body(member)
    if stored != computed:
        raise XvaError(
            f"checksum mismatch for {name!r}: stored {stored.decode('latin-1')!r},"
            f" computed {computed.decode()!r}"
        )
