"""Helpers for the repository tests: a reference disk kept as a plain raw
file next to the datastore, changed at random, and exported the way XAPI
does through the simulator's own VHD writer (an implementation separate from
``xenkeep.formats.vhd`` on purpose)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TypeVar

from xapisim.vhdio import vhd_stream
from xenkeep.formats.vhd import SECTOR, VhdFile, bitmap_from_sectors
from xenkeep.repo.datastore import Datastore

T = TypeVar("T")
MiB = 1 << 20
BLOCK = 2 * MiB
VM = "6f1c1b8e-1d7a-4d64-9a4a-3b0f1f0b2c11"


async def aiter_of(items: Iterable[T]) -> AsyncIterator[T]:
    """An async iterator over ``items`` (what an HTTP body looks like)."""
    for item in items:
        yield item


class RefDisk:
    """A raw reference disk plus a copy of its bytes at every restore point."""

    def __init__(self, workdir: Path, key: str, size: int, seed: int = 0) -> None:
        self.key = key
        self.size = size
        self.dir = workdir / f"ref-{key}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "current.raw"
        with self.path.open("wb") as f:
            f.truncate(size)
        self.rng = random.Random(seed)
        self.changed_blocks: set[int] = set()
        self.changed_sectors: dict[int, set[int]] = {}

    @property
    def blocks(self) -> int:
        return -(-self.size // BLOCK)

    def write(self, offset: int, data: bytes) -> None:
        """Change the disk, remembering which blocks and sectors moved."""
        with self.path.open("r+b") as f:
            f.seek(offset)
            f.write(data)
        end = offset + len(data)
        for sector in range(offset // SECTOR, -(-end // SECTOR)):
            self.changed_sectors.setdefault(sector * SECTOR // BLOCK, set()).add(
                sector % (BLOCK // SECTOR)
            )

    def fill_block(self, index: int) -> None:
        """Rewrite a whole block with random bytes."""
        n = min(BLOCK, self.size - index * BLOCK)
        self.write(index * BLOCK, self.rng.randbytes(n))
        self.changed_blocks.add(index)

    def scribble(self, index: int, pieces: int = 3) -> None:
        """Change a few random sector runs inside one block."""
        n = min(BLOCK, self.size - index * BLOCK) // SECTOR
        for _ in range(pieces):
            first = self.rng.randrange(n)
            count = self.rng.randint(1, min(9, n - first))
            self.write(
                (index * BLOCK // SECTOR + first) * SECTOR, self.rng.randbytes(count * SECTOR)
            )

    def random_changes(self, whole: int, partial: int) -> None:
        """Rewrite ``whole`` random blocks and scribble into ``partial`` others."""
        picks = self.rng.sample(range(self.blocks), min(self.blocks, whole + partial))
        for i in picks[:whole]:
            self.fill_block(i)
        for i in picks[whole:]:
            self.scribble(i)

    def reset_changes(self) -> None:
        self.changed_blocks.clear()
        self.changed_sectors.clear()

    def snapshot(self, name: str) -> Path:
        """Keep the current bytes as the expected content of a restore point."""
        dest = self.dir / f"{name}.raw"
        shutil.copyfile(self.path, dest)
        return dest

    def full_stream(self) -> AsyncIterator[bytes]:
        """A full export (dynamic VHD of the non-zero blocks), as XAPI sends it."""
        return aiter_of(vhd_stream(self.path, self.size))

    def delta_stream(self) -> AsyncIterator[bytes]:
        """A delta export of every block touched since the last reset: whole
        blocks, as XAPI's export_raw_vdi with base= sends them."""
        blocks = sorted(self.changed_blocks | set(self.changed_sectors))
        return aiter_of(vhd_stream(self.path, self.size, blocks, parent_uuid=uuid.uuid4()))

    async def sector_delta(self) -> AsyncIterator[tuple[int, bytes, bytes]]:
        """A delta holding only the changed sectors (partial bitmaps)."""
        for item in await asyncio.to_thread(self._sector_items):
            yield item

    def _sector_items(self) -> list[tuple[int, bytes, bytes]]:
        items = []
        with self.path.open("rb") as f:
            for index in sorted(self.changed_blocks | set(self.changed_sectors)):
                f.seek(index * BLOCK)
                data = f.read(BLOCK).ljust(BLOCK, b"\0")
                if index in self.changed_blocks:
                    sectors: set[int] = set(range(BLOCK // SECTOR))
                else:
                    sectors = self.changed_sectors[index]
                # Sectors not in the bitmap must not matter: poison them.
                buf = bytearray(b"\xee" * BLOCK)
                for s in sectors:
                    buf[s * SECTOR : (s + 1) * SECTOR] = data[s * SECTOR : (s + 1) * SECTOR]
                items.append((index, bitmap_from_sectors(sectors), bytes(buf)))
        return items


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def read_point(ds: Datastore, vm: str, point: str, key: str) -> bytes:
    """The raw disk of a restore point, through the datastore's reader."""
    parts = [chunk async for chunk in ds.read_disk(vm, point, key)]
    return b"".join(parts)


def qemu_raw(vhd: Path, out: Path) -> bytes:
    """Convert a dynamic VHD with qemu-img (an independent reader) and return the bytes."""
    subprocess.run(
        ["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(vhd), str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def rot_block(vhd: Path, block: int, at: int = 777, mask: int = 0xFF) -> None:
    """Flip bits of one byte of a stored block's data, as disk rot would."""
    with VhdFile.open(vhd) as v:
        offset = v.block_data_offset(block)
    assert offset is not None, f"block {block} is not present in {vhd}"
    with vhd.open("r+b") as f:
        f.seek(offset + at)
        byte = f.read(1)
        f.seek(offset + at)
        f.write(bytes([byte[0] ^ mask]))
