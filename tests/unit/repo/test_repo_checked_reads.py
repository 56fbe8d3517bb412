"""Every read of stored blocks is checked: a byte flipped in a full, in a delta
(whole or partial block), in a merged full, or in a checksum file is refused
or flagged by each reader (raw read, synthetic full, merge, verify), the
block is named, the point is marked damaged, and the points that do not
read the damage still restore byte-identical.

The chain used throughout, one disk of six 2 MiB blocks:

    P1  full    blocks 0-5
    P2  delta   block 1 partial (a few sectors), block 2 whole
    P3  delta   blocks 0 and 3 whole
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from tests.unit.repo.repo_testlib import VM, MiB, RefDisk, read_point, rot_block
from xenkeep.repo.datastore import Datastore
from xenkeep.repo.errors import DamagedDataError
from xenkeep.repo.sums import read_sums, write_sums

BLOCK = 2 * MiB


@pytest.fixture
def ds(tmp_path: Path) -> Datastore:
    root = tmp_path / "store"
    root.mkdir()
    return Datastore.initialise(root)


async def point(ds: Datastore, d: RefDisk, kind: str) -> str:
    async with ds.begin_point(VM, vm_record={"name_label": "vm"}) as w:
        if kind == "full":
            await w.write_vhd(d.key, d.full_stream(), delta=False)
        elif kind == "sectors":
            await w.write_blocks(d.key, d.sector_delta(), size=d.size, delta=True)
        else:
            await w.write_vhd(d.key, d.delta_stream(), delta=True)
        p = await w.commit()
    await asyncio.to_thread(d.snapshot, p.id)
    d.reset_changes()
    return p.id


async def three_points(ds: Datastore, tmp_path: Path) -> tuple[RefDisk, list[str]]:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 6 * BLOCK, seed=17)
    for i in range(6):
        await asyncio.to_thread(d.fill_block, i)
    p1 = await point(ds, d, "full")
    await asyncio.to_thread(d.scribble, 1)
    await asyncio.to_thread(d.fill_block, 2)
    p2 = await point(ds, d, "sectors")
    await asyncio.to_thread(d.fill_block, 0)
    await asyncio.to_thread(d.fill_block, 3)
    p3 = await point(ds, d, "whole")
    return d, [p1, p2, p3]


async def vhd_of(ds: Datastore, point_id: str) -> Path:
    vmdir = ds.vmdir(VM)
    point = await asyncio.to_thread(vmdir.load_point, point_id)
    return vmdir.vhd_path("0", point.disk("0").file)


async def sums_of(ds: Datastore, point_id: str) -> Path:
    return (await vhd_of(ds, point_id)).with_suffix(".sums")


async def expect(d: RefDisk, point_id: str) -> bytes:
    return await asyncio.to_thread((d.dir / f"{point_id}.raw").read_bytes)


async def refused(ds: Datastore, point_id: str) -> DamagedDataError:
    with pytest.raises(DamagedDataError) as caught:
        await read_point(ds, VM, point_id, "0")
    return caught.value


async def intact(ds: Datastore, d: RefDisk, point_id: str) -> None:
    assert await read_point(ds, VM, point_id, "0") == await expect(d, point_id), point_id


async def damaged_points(ds: Datastore) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for x in await asyncio.to_thread(ds.damage, VM):
        out.setdefault(x.point_id, set()).update(x.blocks)
    return out


async def salvaged(ds: Datastore, point_id: str) -> bytes:
    parts = [c async for c in ds.read_disk(VM, point_id, "0", salvage=True)]
    return b"".join(parts)


def zero_block(raw: bytes, index: int) -> bytes:
    return raw[: index * BLOCK] + bytes(BLOCK) + raw[(index + 1) * BLOCK :]


async def test_a_byte_flipped_in_the_full(ds: Datastore, tmp_path: Path) -> None:
    d, (p1, p2, p3) = await three_points(ds, tmp_path)
    await asyncio.to_thread(rot_block, await vhd_of(ds, p1), 0, at=4321)
    err = await refused(ds, p1)
    assert f"restore point {p1}" in err.message and "disk 0" in err.message
    assert "block 0 of" in err.message and "does not match its checksum" in err.message
    # P3's delta replaces block 0 whole: it holds an intact copy, and reads it.
    assert f"an intact copy of block 0: restore point {p3} (newer)" in err.message
    assert [(f.file, f.blocks) for f in err.findings] == [((await vhd_of(ds, p1)).stem, (0,))]
    await refused(ds, p2)
    await intact(ds, d, p3)
    # Recorded: the points reading the block are damaged, P3 is not.
    assert await damaged_points(ds) == {p1: {0}, p2: {0}}
    # What can be read: the rest, byte-identical, the damaged block as zeros.
    assert await salvaged(ds, p1) == zero_block(await expect(d, p1), 0)
    # Verify agrees, block for block.
    report = await ds.verify(VM)
    assert {(x.point_id, x.blocks) for x in report.damaged} == {(p1, (0,)), (p2, (0,))}


async def test_a_byte_flipped_in_a_delta(ds: Datastore, tmp_path: Path) -> None:
    d, (p1, p2, p3) = await three_points(ds, tmp_path)
    await asyncio.to_thread(rot_block, await vhd_of(ds, p3), 3, at=99)
    err = await refused(ds, p3)
    assert "block 3 of" in err.message
    assert f"an intact copy of block 3: restore point {p1} (older), {p2} (older)" in err.message
    await intact(ds, d, p2)
    await intact(ds, d, p1)
    assert await damaged_points(ds) == {p3: {3}}


async def test_a_byte_flipped_in_a_partial_block(ds: Datastore, tmp_path: Path) -> None:
    d, (p1, p2, p3) = await three_points(ds, tmp_path)
    await asyncio.to_thread(rot_block, await vhd_of(ds, p2), 1, at=7)
    # P3 reads block 1 through P2's partial block: both are refused.
    assert "block 1 of" in (await refused(ds, p2)).message
    assert "block 1 of" in (await refused(ds, p3)).message
    await intact(ds, d, p1)
    assert await damaged_points(ds) == {p2: {1}, p3: {1}}


async def test_a_byte_flipped_in_a_merged_full(ds: Datastore, tmp_path: Path) -> None:
    d, (p1, p2, p3) = await three_points(ds, tmp_path)
    await asyncio.to_thread(d.fill_block, 2)
    p4 = await point(ds, d, "whole")
    result = await ds.prune(VM, keep_last=3)
    assert [s.retire for s in result.merged] == [p1]
    merged = await vhd_of(ds, p2)
    await asyncio.to_thread(rot_block, merged, 2, at=2048)
    err = await refused(ds, p2)
    assert "block 2 of" in err.message and f"restore point {p4} (newer)" in err.message
    await refused(ds, p3)
    await intact(ds, d, p4)


@pytest.mark.parametrize("how", ["missing", "truncated", "corrupted"])
async def test_a_damaged_checksum_file(ds: Datastore, tmp_path: Path, how: str) -> None:
    d, (p1, p2, p3) = await three_points(ds, tmp_path)
    sums = await sums_of(ds, p2)

    def damage() -> None:
        if how == "missing":
            sums.unlink()
        elif how == "truncated":
            raw = sums.read_bytes()
            sums.write_bytes(raw[: len(raw) - 7])
        else:
            raw = bytearray(sums.read_bytes())
            raw[20] ^= 0x40
            sums.write_bytes(bytes(raw))

    await asyncio.to_thread(damage)
    # Refused before any block is read, the file named as unchecked.
    err = await refused(ds, p2)
    assert f"{sums.stem}.vhd cannot be checked" in err.message
    assert err.findings and not err.findings[0].blocks
    await refused(ds, p3)
    await intact(ds, d, p1)
    assert set(await damaged_points(ds)) == {p2, p3}

    # Restorable only with the explicit choice: then as stored, listed unchecked.
    def salvage() -> tuple[bytes, dict[str, list[int]], set[int]]:
        with ds.open_point_disk(VM, p2, "0", salvage=True) as reader:
            got = b"".join(data for _i, data in reader.blocks())
            return got, reader.unchecked, reader.zeroed

    got, unchecked, zeroed = await asyncio.to_thread(salvage)
    assert unchecked == {sums.stem: [1, 2]} and zeroed == set()
    assert got == await expect(d, p2)
    report = await ds.verify(VM)
    assert {x.point_id for x in report.damaged} == {p2, p3}


async def test_a_block_lost_from_the_table_is_not_read_from_the_parent(
    ds: Datastore, tmp_path: Path
) -> None:
    d, (p1, _p2, p3) = await three_points(ds, tmp_path)
    sums = await sums_of(ds, p3)

    def claim_block_5() -> None:
        bs, entries = read_sums(sums)
        write_sums(sums, bs, sorted({**entries, 5: bytes(16)}.items()))

    # The checksums say P3's file holds block 5; its table does not (as if
    # the entry were lost): block 5 must not come from the full instead.
    await asyncio.to_thread(claim_block_5)
    err = await refused(ds, p3)
    assert "block 5 of" in err.message and "missing from the file" in err.message
    await intact(ds, d, p1)


async def test_a_synthetic_full_is_checked(ds: Datastore, tmp_path: Path) -> None:
    d, (_p1, p2, _p3) = await three_points(ds, tmp_path)
    await asyncio.to_thread(rot_block, await vhd_of(ds, p2), 2, at=5)
    dest = tmp_path / "synth.vhd"
    with pytest.raises(DamagedDataError, match="block 2 of"):
        await ds.synthesize_full(VM, p2, "0", dest)
    assert not await asyncio.to_thread(dest.exists)
    await ds.synthesize_full(VM, p2, "0", dest, salvage=True)
    from tests.unit.repo.repo_testlib import qemu_raw

    raw = await asyncio.to_thread(qemu_raw, dest, tmp_path / "synth.raw")
    assert raw == zero_block(await expect(d, p2), 2)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "damaged" not in p.parts and not p.name.endswith("lock")
    }


@pytest.mark.parametrize(
    ("target", "block"),
    [("delta", 2), ("full under a partial block", 1)],
)
async def test_a_merge_never_folds_damage_in(
    ds: Datastore, tmp_path: Path, target: str, block: int
) -> None:
    d, (p1, p2, p3) = await three_points(ds, tmp_path)
    vhd = await vhd_of(ds, p2 if target == "delta" else p1)
    await asyncio.to_thread(rot_block, vhd, block, at=1000)
    before = await asyncio.to_thread(tree_digest, ds.root)
    result = await ds.prune(VM, keep_last=2)
    assert result.merged == []
    assert result.damaged is not None
    assert f"restore point {p1}" in result.damaged and f"into {p2}" in result.damaged
    assert f"block {block} of {vhd.stem}.vhd" in result.damaged
    assert "nothing was changed" in result.damaged
    # Nothing moved: the same files with the same bytes, no journal, no plan.
    assert await asyncio.to_thread(tree_digest, ds.root) == before
    assert [p.id for p in await asyncio.to_thread(ds.points, VM)] == [p1, p2, p3]
    assert block in (await damaged_points(ds))[p2]
    if target == "delta":
        await intact(ds, d, p1)
    # Retention now sees the damage and plans no merge over it.
    again = await ds.prune(VM, keep_last=2)
    assert again.merged == [] and again.plan.blocked is not None
    # Deleting the point is the same merge, refused the same way.
    await asyncio.to_thread(ds.vmdir(VM).damaged.joinpath(f"{vhd.stem}.json").unlink)
    with pytest.raises(DamagedDataError, match=f"block {block} of"):
        await ds.delete_point(VM, p1)
    assert await asyncio.to_thread(tree_digest, ds.root) == before
