"""Deleting one restore point (an administrator emptying a full datastore):
every other point reads back byte-identical, and the files go."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.unit.repo.repo_testlib import VM, MiB, RefDisk
from tests.unit.repo.test_repo_chain import backup, check_all
from xenkeep.repo.datastore import Datastore
from xenkeep.repo.errors import PointNotFoundError


@pytest.fixture
def ds(tmp_path: Path) -> Datastore:
    root = tmp_path / "store"
    root.mkdir()
    return Datastore.initialise(root)


async def chain(ds: Datastore, tmp_path: Path, kinds: str) -> tuple[list[RefDisk], list[str]]:
    """Points of two disks: ``F`` a full, ``D`` a whole-block delta, ``S`` a sector delta."""
    disks = [
        RefDisk(tmp_path, "0", 12 * MiB + 512, seed=5),
        RefDisk(tmp_path, "1", 6 * MiB, seed=6),
    ]
    ids = []
    for kind in kinds:
        for d in disks:
            d.random_changes(whole=2, partial=3)
        ids.append(await backup(ds, disks, full=kind == "F", sectors=kind == "S"))
    return disks, ids


def vhd_files(ds: Datastore) -> int:
    return sum(1 for _ in ds.vmdir(VM).disks.glob("*/*.vhd"))


async def ok(ds: Datastore, disks: list[RefDisk], ids: list[str]) -> None:
    assert [p.id for p in await asyncio.to_thread(ds.points, VM)] == ids
    await check_all(ds, disks)
    report = await ds.verify(VM)
    assert report.ok, report.damaged
    assert vhd_files(ds) == 2 * len(ids)  # nothing left behind
    assert not ds.vmdir(VM).journal.exists()


@pytest.mark.parametrize("kinds", ["FDSS", "FSDS", "FSSD"])
async def test_a_point_in_the_middle_is_merged_into_its_child(
    ds: Datastore, tmp_path: Path, kinds: str
) -> None:
    disks, ids = await chain(ds, tmp_path, kinds)
    result = await ds.delete_point(VM, ids[1])
    assert result.merged_into == ids[2]
    await ok(ds, disks, [ids[0], *ids[2:]])
    # And the next one too, down to the full and the newest.
    await ds.delete_point(VM, ids[2])
    await ok(ds, disks, [ids[0], ids[3]])


async def test_the_oldest_the_newest_and_the_last(ds: Datastore, tmp_path: Path) -> None:
    disks, ids = await chain(ds, tmp_path, "FSDS")
    assert (await ds.delete_point(VM, ids[0])).merged_into == ids[1]
    await ok(ds, disks, ids[1:])
    assert (await ds.delete_point(VM, ids[3])).merged_into is None
    await ok(ds, disks, ids[1:3])
    await ds.delete_point(VM, ids[1])
    await ds.delete_point(VM, ids[2])
    assert await asyncio.to_thread(ds.points, VM) == []
    assert vhd_files(ds) == 0


async def test_a_full_nothing_depends_on_is_dropped(ds: Datastore, tmp_path: Path) -> None:
    disks, ids = await chain(ds, tmp_path, "FDF")
    result = await ds.delete_point(VM, ids[1])
    assert result.stats.blocks == 0  # the next point is a full: nothing merged
    await ok(ds, disks, [ids[0], ids[2]])
    await ds.delete_point(VM, ids[0])
    await ok(ds, disks, [ids[2]])


async def test_an_unknown_point_changes_nothing(ds: Datastore, tmp_path: Path) -> None:
    disks, ids = await chain(ds, tmp_path, "FD")
    with pytest.raises(PointNotFoundError, match="no restore point 20990101"):
        await ds.delete_point(VM, "20990101T000000Z-000009")
    await ok(ds, disks, ids)
