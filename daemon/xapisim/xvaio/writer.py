"""Writing an XVA: ova.xml, then each disk's chunks with their XXH64 members.

Holes are found with SEEK_DATA/SEEK_HOLE and never read; all-zero chunks are
left out except each disk's first and last. Every member gets the same
mtime, mode and owner, so equal input gives equal bytes.
"""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .layout import BLOCK, CHUNK, OVA_XML, ZERO_BLOCK, ZERO_CHUNK, chunk_checksum


def _tar_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def _member(name: str, data: bytes, mtime: int) -> Iterator[bytes]:
    yield _tar_header(name, len(data), mtime)
    yield data
    if len(data) % BLOCK:
        yield ZERO_BLOCK[: BLOCK - len(data) % BLOCK]


def _data_extents(fd: int, end: int) -> Iterator[tuple[int, int]]:
    pos = 0
    while pos < end:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            raise
        if start >= end:
            return
        hole = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(hole, end)
        pos = hole


def _candidate_chunks(fd: int, size: int) -> Iterator[int]:
    """Chunk indexes that may hold data, in order, always with the first and the last."""
    last = (size - 1) // CHUNK
    done = -1
    for start, end in _data_extents(fd, size):
        for index in range(max(start // CHUNK, done + 1), (end - 1) // CHUNK + 1):
            if index > 0 and done < 0:
                yield 0
                done = 0
            yield index
            done = index
    if done < 0:
        yield 0
        done = 0
    if done < last:
        yield last


def _pread_full(fd: int, length: int, offset: int) -> bytes:
    parts: list[bytes] = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:  # past end of file: the disk reads as zeros there
            parts.append(bytes(length))
            break
        parts.append(data)
        length -= len(data)
        offset += len(data)
    return b"".join(parts)


def xva_stream(
    ova_xml: bytes, disks: Sequence[tuple[str, Path, int]], *, mtime: int = 0
) -> Iterator[bytes]:
    """Yield an uncompressed XVA: ova.xml, then each disk's non-zero chunks with XXH64.

    ``disks`` are (VDI id, raw file, virtual size); they are written in
    lexicographic order of their ids, as XAPI reads them. All-zero chunks
    are left out except each disk's first and last. Every member gets
    ``mtime``, mode 0644 and uid/gid 0, so equal input gives equal bytes.
    """
    ids = [d[0] for d in disks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate disk ids in {ids}")
    for disk_id in ids:
        if not disk_id or "/" in disk_id or len(disk_id) > 80:
            raise ValueError(f"bad disk id {disk_id!r}")
    yield from _member(OVA_XML, ova_xml, mtime)
    for disk_id, path, size in sorted(disks, key=lambda d: d[0]):
        if size <= 0:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            last = (size - 1) // CHUNK
            for index in _candidate_chunks(fd, size):
                offset = index * CHUNK
                data = _pread_full(fd, min(CHUNK, size - offset), offset)
                if 0 < index < last and data == ZERO_CHUNK:
                    continue
                name = f"{disk_id}/{index:08d}"
                yield from _member(name, data, mtime)
                yield from _member(name + ".xxhash", chunk_checksum(data), mtime)
        finally:
            os.close(fd)
    yield ZERO_BLOCK * 2
