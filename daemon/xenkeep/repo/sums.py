"""Per-block checksum files (``<file>.sums``), written next to each VHD.

Layout (integers big-endian)::

    0   magic "XKSUMS\\0\\1"        8 bytes
    8   block size u32, reserved u32
    16  entries, 20 bytes each: block index u32, XXH3-128 digest (16 bytes)
    ... trailer: "XKSUMEND", entry count u32, XXH32 of every byte before the trailer u32

One entry per block present in the VHD, in the order the blocks were
written. The digest covers the block's sector bitmap (``block_size / 4096``
bytes, without the sector padding) followed by its whole data, exactly as
stored, so verify can check a file without its chain.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import xxhash

from .errors import ChecksumFileError
from .fsutil import fsync_dir

MAGIC: Final = b"XKSUMS\x00\x01"
TRAILER: Final = b"XKSUMEND"
_HEAD: Final = struct.Struct(">8sII")
_ENTRY: Final = struct.Struct(">I16s")
_TAIL: Final = struct.Struct(">8sII")


def block_digest(bitmap: bytes, data: bytes | memoryview) -> bytes:
    """The digest stored for one block."""
    h = xxhash.xxh3_128()
    h.update(bitmap)
    h.update(data)
    return h.digest()


class SumsWriter:
    """Stream entries into ``path`` under a temporary name; :meth:`close` fsyncs
    and renames it into place."""

    def __init__(self, path: Path, block_size: int) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.part")
        self._f = self.tmp.open("wb")
        self._h = xxhash.xxh32()
        self.count = 0
        self._put(_HEAD.pack(MAGIC, block_size, 0))

    def _put(self, data: bytes) -> None:
        self._h.update(data)
        self._f.write(data)

    def add(self, index: int, digest: bytes) -> None:
        """Record block ``index``."""
        self._put(_ENTRY.pack(index, digest))
        self.count += 1

    def close(self, *, rename: bool = True) -> None:
        """Finish the file; with ``rename`` move it to its final name durably."""
        self._f.write(_TAIL.pack(TRAILER, self.count, self._h.intdigest()))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        if rename:
            self.tmp.replace(self.path)
            fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Drop the temporary file."""
        self._f.close()
        self.tmp.unlink(missing_ok=True)


def write_sums(path: Path, block_size: int, entries: Iterable[tuple[int, bytes]]) -> None:
    """Write a whole checksum file durably (temporary name, fsync, rename)."""
    w = SumsWriter(path, block_size)
    try:
        for index, digest in entries:
            w.add(index, digest)
    except BaseException:
        w.discard()
        raise
    w.close()


def read_sums(path: Path) -> tuple[int, dict[int, bytes]]:
    """(block size, {block index: digest}) of a checksum file, checked."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ChecksumFileError(f"{path.name}: checksum file missing") from None
    if len(raw) < _HEAD.size + _TAIL.size:
        raise ChecksumFileError(f"{path.name}: truncated checksum file ({len(raw)} bytes)")
    magic, block_size, _r = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise ChecksumFileError(f"{path.name}: not a checksum file (magic {magic!r})")
    tail, count, digest = _TAIL.unpack_from(raw, len(raw) - _TAIL.size)
    body = raw[: len(raw) - _TAIL.size]
    if tail != TRAILER or (len(body) - _HEAD.size) != count * _ENTRY.size:
        raise ChecksumFileError(f"{path.name}: truncated or malformed checksum file")
    if xxhash.xxh32_intdigest(body) != digest:
        raise ChecksumFileError(f"{path.name}: checksum file does not match its own checksum")
    out: dict[int, bytes] = {}
    for index, d in _ENTRY.iter_unpack(body[_HEAD.size :]):
        out[index] = d
    return block_size, out
