"""Builders of VHD files shared by the VHD tests (imported by them, not a conftest)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from pathlib import Path

from xenkeep.formats import vhd

MIB = 1 << 20

#: (sectors present, data) per block index of a differencing disk
DiffBlocks = Mapping[int, tuple[set[int], bytes]]


class OneWayStream:
    """A readable stream with no seek or tell, like an HTTP body; short reads."""

    def __init__(self, data: bytes, piece: int = 65536) -> None:
        self._buf = io.BytesIO(data)
        self._piece = piece

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            size = self._piece
        return self._buf.read(min(size, self._piece))


def dynamic_from_bytes(
    path: Path,
    raw: bytes,
    *,
    uid: uuid.UUID | None = None,
    block_size: int = vhd.DEFAULT_BLOCK_SIZE,
) -> uuid.UUID:
    """Write ``raw`` as a dynamic VHD (zero blocks absent); return its UUID."""
    uid = uid or uuid.uuid4()
    zero = bytes(block_size)
    with (
        path.open("w+b") as out,
        vhd.VhdWriter(out, len(raw), uuid=uid, block_size=block_size) as w,
    ):
        for index in range(w.block_count):
            data = raw[index * block_size : (index + 1) * block_size]
            if data != zero[: len(data)]:
                w.write_block(index, data)
    return uid


def diff_file(
    path: Path,
    size: int,
    parent_uuid: uuid.UUID,
    blocks: DiffBlocks,
    *,
    block_size: int = vhd.DEFAULT_BLOCK_SIZE,
    uid: uuid.UUID | None = None,
) -> uuid.UUID:
    """Write a differencing VHD holding ``blocks``; return its UUID."""
    uid = uid or uuid.uuid4()
    parent = vhd.VhdParent(parent_uuid, name="parent.vhd")
    with (
        path.open("w+b") as out,
        vhd.VhdWriter(out, size, uuid=uid, parent=parent, block_size=block_size) as w,
    ):
        for index in sorted(blocks):
            sectors, data = blocks[index]
            w.write_block(index, data, vhd.bitmap_from_sectors(sectors, block_size))
    return uid


def apply_diff(base: bytes, blocks: DiffBlocks, block_size: int = vhd.DEFAULT_BLOCK_SIZE) -> bytes:
    """The disk a child with ``blocks`` over ``base`` reads as (the model)."""
    out = bytearray(base)
    for index, (sectors, data) in blocks.items():
        for s in sectors:
            at = index * block_size + s * vhd.SECTOR
            if at < len(out):
                out[at : at + vhd.SECTOR] = data[s * vhd.SECTOR : (s + 1) * vhd.SECTOR]
    return bytes(out)
