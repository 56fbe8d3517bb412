"""Reading restore points back: the raw disk, or a synthetic full VHD.

Chain resolution is the VHD rule: each sector comes from the newest file of
the chain that holds it. A synthetic full shares whole blocks with the files
they come from when the filesystem allows, so building one costs metadata,
not a copy of the disk.
"""

from __future__ import annotations

import os
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from xenkeep.formats.vhd import DISK_DIFFERENCING, SECTOR, VhdWriter, vhd_timestamp

from .fsutil import durable_rename, share_range
from .layout import VmDir


def iter_raw(vmdir: VmDir, key: str, file: str) -> Iterator[bytes]:
    """The raw disk of a point, one block (2 MiB) at a time."""
    with vmdir.open_chain(key, file) as chain:
        for _index, data in chain.iter_blocks():
            yield data


@dataclass
class SynthStats:
    """How a synthetic full was built."""

    blocks: int = 0
    blocks_shared: int = 0
    blocks_copied: int = 0


def synthesize_full(vmdir: VmDir, key: str, file: str, dest: Path, *, reflink: bool) -> SynthStats:
    """Write the disk of a point as one dynamic VHD at ``dest`` (atomically)."""
    stats = SynthStats()
    tmp = dest.with_name(f".{dest.name}.part")
    with vmdir.open_chain(key, file) as chain, tmp.open("w+b", buffering=0) as out:
        writer = VhdWriter(
            out,
            chain.size,
            uuid=uuidlib.uuid4(),
            timestamp=vhd_timestamp(time.time()),
            block_size=chain.block_size,
        )
        bs = chain.block_size
        ones = b"\xff" * (bs // SECTOR // 8)
        for index in range(writer.block_count):
            owner = None
            for f in chain.files:
                if index < f.block_count and f.block_present(index):
                    owner = f
                    break
            if owner is None:
                continue
            stats.blocks += 1
            whole = owner.disk_type != DISK_DIFFERENCING or owner.read_bitmap(index) == ones
            src_off = owner.block_data_offset(index)
            if whole and reflink and src_off is not None:
                off = writer.allocate_block(index)
                src_fd = os.open(vmdir.disk_dir(key) / owner.name, os.O_RDONLY)
                try:
                    if share_range(src_fd, src_off, bs, out.fileno(), off):
                        stats.blocks_shared += 1
                        continue
                finally:
                    os.close(src_fd)
                got = owner.read_block(index)
                assert got is not None
                os.pwrite(out.fileno(), got[1], off)
                stats.blocks_copied += 1
                continue
            data = chain.read_block(index)
            if data != bytes(bs):
                writer.write_block(index, data)
                stats.blocks_copied += 1
        writer.close()
        os.fsync(out.fileno())
    durable_rename(tmp, dest)
    return stats
