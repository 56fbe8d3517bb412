"""The container of an XVA: a POSIX ustar archive, plain or gzip-compressed.

A member is a 512-byte header, its data, then zeros up to the next multiple of
512; two zero blocks end the archive. Header fields (octal numbers are ASCII,
zero-padded, NUL-terminated)::

    0    name [100]             257  magic "ustar\\0", version "00"
    100  mode [8]   (0644)      265  owner name [32] ("root")
    108  uid [8], 116 gid [8]   297  group name [32] ("root")
    124  size [12]              345  name prefix [155] (joined to name with "/")
    136  mtime [12]
    148  checksum [8]: sum of the header's bytes, this field taken as spaces
    156  typeflag: "0" file, "5" directory, "x"/"g" pax, "L" GNU long name

The writer writes only regular files with the values in brackets, so the
bytes depend on the names, contents and mtime alone. The reader is strict and
streaming: it checks every header's checksum, takes GNU base-256 sizes
(members of 8 GiB and more), folds pax ``path`` and GNU long names into the
next member, and reports truncation with the archive offset. XAPI may send the
archive gzip-compressed (``use_compression=true``); zstd is refused by name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final

from ..errors import XvaFormatError
from ..streams import SupportsRead, read_upto
from .members import CHUNK_SIZE

BLOCK: Final = 512
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"

# --------------------------------------------------------------------------
# Writing


def _octal(value: int, width: int) -> bytes:
    digits = b"%o" % value
    if len(digits) > width - 1:
        raise ValueError(f"{value} does not fit a {width}-byte tar field")
    return digits.rjust(width - 1, b"0") + b"\0"


def tar_header(name: str, size: int, mtime: int) -> bytes:
    """The header of a regular file member ``name`` of ``size`` bytes."""
    raw_name = name.encode("ascii")
    if len(raw_name) > 100:
        raise ValueError(f"tar member name too long: {name!r}")
    h = bytearray(BLOCK)
    h[0 : len(raw_name)] = raw_name
    h[100:108] = _octal(0o644, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(mtime, 12)
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[265:269] = b"root"
    h[297:301] = b"root"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


# --------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Member:
    """A file member's header: its name (long names folded in), size and type."""

    name: str
    size: int
    typeflag: bytes


class TarStream:
    """A strict, streaming ustar/GNU/pax reader that reports truncation precisely."""

    def __init__(self, src: SupportsRead) -> None:
        self._src = src
        self.offset = 0

    def _read(self, n: int, what: str) -> bytes:
        data = read_upto(self._src, n)
        self.offset += len(data)
        if len(data) < n:
            raise XvaFormatError(
                f"truncated archive: {what} ends after {len(data)} of {n} bytes "
                f"(archive offset {self.offset})"
            )
        return data

    def _header(self) -> bytes | None:
        block = read_upto(self._src, BLOCK)
        self.offset += len(block)
        if not block:
            raise XvaFormatError(
                f"truncated archive: no end-of-archive marker (archive offset {self.offset})"
            )
        if len(block) < BLOCK:
            raise XvaFormatError(
                f"truncated archive: partial tar header at offset {self.offset - len(block)}"
            )
        if block == bytes(BLOCK):
            second = read_upto(self._src, BLOCK)
            self.offset += len(second)
            if second != bytes(BLOCK):
                raise XvaFormatError(
                    "truncated archive: end-of-archive marker is not two zero blocks "
                    f"(archive offset {self.offset})"
                )
            return None
        return block

    def next(self) -> Member | None:
        """Header of the next file member (pax and GNU long names folded in), or None at end."""
        long_name: str | None = None
        while True:
            start = self.offset
            block = self._header()
            if block is None:
                if long_name is not None:
                    raise XvaFormatError("archive ends after an extended header")
                return None
            _check_header_sum(block, start)
            size = _parse_size(block[124:136], start)
            typeflag = block[156:157]
            if typeflag in (b"x", b"g", b"L"):
                if size > 1 << 20:
                    raise XvaFormatError(f"extended header of {size} bytes at offset {start}")
                payload = self._read(size, "extended header")
                self.skip_padding(size)
                if typeflag == b"x":
                    long_name = _pax_path(payload, start) or long_name
                elif typeflag == b"L":
                    long_name = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
                continue
            name = _header_name(block)
            if long_name is not None:
                name, long_name = long_name, None
            return Member(name, size, typeflag)

    def read_data(self, member: Member) -> bytes:
        data = self._read(member.size, f"member {member.name!r}")
        self.skip_padding(member.size)
        return data

    def skip_padding(self, size: int) -> None:
        pad = -size % BLOCK
        if pad:
            self._read(pad, "member padding")


def _check_header_sum(block: bytes, offset: int) -> None:
    field_ = block[148:156].split(b"\0", 1)[0].strip()
    try:
        stored = int(field_, 8)
    except ValueError:
        raise XvaFormatError(f"not a tar header at archive offset {offset}") from None
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + b" " * 8 + block[156:])
    if stored not in (unsigned, signed):
        raise XvaFormatError(f"bad tar header checksum at archive offset {offset}")


def _parse_size(raw: bytes, offset: int) -> int:
    if raw[0] & 0x80:
        # GNU base-256 for members of 8 GiB and more.
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise XvaFormatError(f"bad size field in tar header at offset {offset}") from None


def _header_name(block: bytes) -> str:
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "replace")


def _pax_path(payload: bytes, offset: int) -> str | None:
    path: str | None = None
    rest = payload
    while rest:
        length_text, _, _ = rest.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            raise XvaFormatError(f"bad pax header at archive offset {offset}") from None
        if length <= 0 or length > len(rest):
            raise XvaFormatError(f"bad pax record length at archive offset {offset}")
        record, rest = rest[:length], rest[length:]
        key, _, value = record[len(length_text) + 1 : -1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "replace")
    return path


class _Prefixed:
    """Gives back bytes already read for sniffing before the rest of the stream."""

    def __init__(self, prefix: bytes, src: SupportsRead) -> None:
        self._prefix = prefix
        self._src = src

    def read(self, size: int = -1, /) -> bytes:
        if self._prefix:
            take = self._prefix if size < 0 else self._prefix[:size]
            self._prefix = self._prefix[len(take) :]
            return take
        return self._src.read(size)


class _Gunzip:
    """Streaming gzip decoding with bounded buffers and format errors, not zlib's."""

    def __init__(self, src: SupportsRead) -> None:
        self._src = src
        self._z = zlib.decompressobj(wbits=31)
        self._buf = bytearray()

    def read(self, size: int = -1, /) -> bytes:
        want = CHUNK_SIZE if size < 0 else size
        while len(self._buf) < want and not self._z.eof:
            tail = self._z.unconsumed_tail
            if not tail:
                tail = self._src.read(1 << 16)
                if not tail:
                    raise XvaFormatError("truncated archive: the gzip stream ends early")
            try:
                self._buf += self._z.decompress(tail, CHUNK_SIZE)
            except zlib.error as exc:
                raise XvaFormatError(f"corrupt gzip stream: {exc}") from None
        out = bytes(self._buf[:want])
        del self._buf[:want]
        return out


def open_archive(src: SupportsRead) -> SupportsRead:
    """``src`` as an uncompressed tar stream: gzip is decoded, zstd refused."""
    head = read_upto(src, 4)
    if head.startswith(_GZIP_MAGIC):
        return _Gunzip(_Prefixed(head, src))
    if head == _ZSTD_MAGIC:
        raise XvaFormatError(
            "zstd-compressed XVA: not supported here; export uncompressed or with gzip"
        )
    return _Prefixed(head, src)
