"""Exports of a restore point: the raw disk, or a synthetic full VHD.

Both read through the checked reader (:mod:`.reader`): each sector comes from
the newest file of the chain that holds it, and every stored block is
checked against its checksum on the way. A synthetic full shares whole
blocks with the files they come from when the filesystem allows, so
building one costs a read of the point (the check), not a copy of the disk.
"""

from __future__ import annotations

import os
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from xenkeep.formats.vhd import VhdWriter, vhd_timestamp

from .fsutil import durable_rename, share_range
from .reader import DiskReader


def iter_raw(reader: DiskReader) -> Iterator[bytes]:
    """The raw disk of a point, one block (2 MiB) at a time."""
    for _index, data in reader.blocks():
        yield data


@dataclass
class SynthStats:
    """How a synthetic full was built."""

    blocks: int = 0
    blocks_shared: int = 0
    blocks_copied: int = 0


def synthesize_full(reader: DiskReader, dest: Path, *, reflink: bool) -> SynthStats:
    """Write the disk of a point as one dynamic VHD at ``dest`` (atomically)."""
    stats = SynthStats()
    tmp = dest.with_name(f".{dest.name}.part")
    zero = bytes(reader.block_size)
    with tmp.open("w+b", buffering=0) as out:
        writer = VhdWriter(
            out,
            reader.size,
            uuid=uuidlib.uuid4(),
            timestamp=vhd_timestamp(time.time()),
            block_size=reader.block_size,
        )
        for index in reader.present_blocks():
            data = reader.block(index)  # checked: damage never reaches the copy
            if data == zero:
                continue
            stats.blocks += 1
            source = reader.block_source(index) if reflink and index not in reader.zeroed else None
            if source is not None:
                vhd, src_off = source
                off = writer.allocate_block(index)
                if share_range(vhd.fileno(), src_off, reader.block_size, out.fileno(), off):
                    stats.blocks_shared += 1
                    continue
                os.pwrite(out.fileno(), data, off)
            else:
                writer.write_block(index, data)
            stats.blocks_copied += 1
        writer.close()
        os.fsync(out.fileno())
    durable_rename(tmp, dest)
    return stats
