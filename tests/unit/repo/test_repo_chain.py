"""Writing restore points, reading them back, merging them away (copy path,
on whatever filesystem tmp_path is), checked against a raw reference disk
and against qemu-img. The datastore's synchronous side (listing points,
chain status) and the reference disk's files are used from worker threads, as
the daemon uses them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.repo.repo_testlib import VM, MiB, RefDisk, aiter_of, qemu_raw, read_point
from xenkeep.formats.vhd import VhdFile
from xenkeep.repo.datastore import Datastore
from xenkeep.repo.errors import ChainBrokenError, NotADatastoreError, RepoError


@pytest.fixture
def ds(tmp_path: Path) -> Datastore:
    root = tmp_path / "store"
    root.mkdir()
    return Datastore.initialise(root)


async def backup(ds: Datastore, disks: list[RefDisk], *, full: bool, sectors: bool = False) -> str:
    async with ds.begin_point(VM, vm_record={"name_label": "vm"}, job_id="job-1") as w:
        for d in disks:
            if full:
                await w.write_vhd(d.key, d.full_stream(), delta=False)
            elif sectors:
                await w.write_blocks(d.key, d.sector_delta(), size=d.size, delta=True)
            else:
                await w.write_vhd(d.key, d.delta_stream(), delta=True)
        point = await w.commit()
    for d in disks:
        await asyncio.to_thread(d.snapshot, point.id)
        d.reset_changes()
    return point.id


async def check_all(ds: Datastore, disks: list[RefDisk]) -> None:
    points = await asyncio.to_thread(ds.points, VM)
    assert points
    for p in points:
        for d in disks:
            got = await read_point(ds, VM, p.id, d.key)
            want = await asyncio.to_thread((d.dir / f"{p.id}.raw").read_bytes)
            assert got == want, f"{p.id} disk {d.key}"


def block_offsets(vhd: Path) -> list[int | None]:
    """Where each stored block's data starts in ``vhd``."""
    with VhdFile.open(vhd) as v:
        return [v.block_data_offset(i) for i in v.present_blocks()]


def disk_type(vhd: Path) -> int:
    with VhdFile.open(vhd) as v:
        return v.disk_type


def names_in(directory: Path) -> set[str]:
    return {f.name for f in directory.iterdir()}


def test_not_a_datastore(tmp_path: Path) -> None:
    with pytest.raises(NotADatastoreError, match=r"datastore\.json missing"):
        Datastore(tmp_path)


async def test_full_then_deltas_read_back_byte_identical(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 40 * MiB + 3 * 512, seed=1)
    await asyncio.to_thread(d.random_changes, whole=6, partial=3)
    await backup(ds, [d], full=True)
    for n in range(4):
        await asyncio.to_thread(d.random_changes, whole=2, partial=3)
        await backup(ds, [d], full=False, sectors=n % 2 == 1)
    await check_all(ds, [d])
    points = await asyncio.to_thread(ds.points, VM)
    assert [p.seq for p in points] == [1, 2, 3, 4, 5]
    assert points[0].disks[0].transfer == "full"
    assert points[1].disks[0].transfer == "delta"
    assert points[0].job_id == "job-1"
    # Every stored block's data sits on a 4 KiB boundary (extent sharing needs it).
    vmdir = ds.vmdir(VM)
    for p in points:
        for offset in await asyncio.to_thread(block_offsets, vmdir.vhd_path("0", p.disks[0].file)):
            assert offset is not None and offset % 4096 == 0


async def test_delta_holds_only_changed_blocks(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 64 * MiB, seed=2)
    await asyncio.to_thread(d.random_changes, whole=10, partial=0)
    await backup(ds, [d], full=True)
    await asyncio.to_thread(d.random_changes, whole=0, partial=3)
    await backup(ds, [d], full=False, sectors=True)
    rec = (await asyncio.to_thread(ds.points, VM))[1].disks[0]
    assert rec.blocks == 3
    assert len(await asyncio.to_thread(block_offsets, ds.vmdir(VM).vhd_path("0", rec.file))) == 3


async def test_merge_keeps_every_listed_point_identical(ds: Datastore, tmp_path: Path) -> None:
    disks = [
        await asyncio.to_thread(RefDisk, tmp_path, "0", 48 * MiB, seed=3),
        await asyncio.to_thread(RefDisk, tmp_path, "1", 10 * MiB, seed=4),
    ]
    for d in disks:
        await asyncio.to_thread(d.random_changes, whole=8, partial=2)
    await backup(ds, disks, full=True)
    for n in range(6):
        for d in disks:
            await asyncio.to_thread(d.random_changes, whole=3, partial=4)
        await backup(ds, disks, full=False, sectors=n % 2 == 0)
        result = await ds.prune(VM, keep_last=3)
        assert result.deferred is None
        await check_all(ds, disks)
        assert len(await asyncio.to_thread(ds.points, VM)) == min(n + 2, 3)
    assert not ds.reflink or result.stats.blocks_shared > 0
    # Only the chain files of the kept points remain on disk.
    vmdir = ds.vmdir(VM)

    def kept_files(key: str) -> set[str]:
        wanted = set()
        for p in ds.points(VM):
            wanted.update(vmdir.chain_files(key, p.disk(key).file))
        return {f"{w}.vhd" for w in wanted} | {f"{w}.sums" for w in wanted}

    for d in disks:
        names = await asyncio.to_thread(names_in, vmdir.disk_dir(d.key))
        assert names == await asyncio.to_thread(kept_files, d.key)
    report = await ds.verify(VM)
    assert report.ok, report.damaged
    assert report.points == 3


async def test_merged_full_reads_the_same_in_qemu_img(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 30 * MiB + 512, seed=5)
    await asyncio.to_thread(d.random_changes, whole=5, partial=2)
    await backup(ds, [d], full=True)
    await asyncio.to_thread(d.random_changes, whole=3, partial=3)
    await backup(ds, [d], full=False, sectors=True)
    await asyncio.to_thread(d.random_changes, whole=1, partial=3)
    last = await backup(ds, [d], full=False)
    await ds.prune(VM, keep_last=2)
    oldest = (await asyncio.to_thread(ds.points, VM))[0]
    vhd = ds.vmdir(VM).vhd_path("0", oldest.disks[0].file)
    assert await asyncio.to_thread(disk_type, vhd) == 3  # the merged file is now a dynamic full
    got = await asyncio.to_thread(qemu_raw, vhd, tmp_path / "q.raw")
    assert got == await asyncio.to_thread((d.dir / f"{oldest.id}.raw").read_bytes)
    synth = tmp_path / "synth.vhd"
    stats = await ds.synthesize_full(VM, last, "0", synth)
    assert stats.blocks > 0
    got = await asyncio.to_thread(qemu_raw, synth, tmp_path / "s.raw")
    assert got == await asyncio.to_thread((d.dir / f"{last}.raw").read_bytes)


async def test_abort_leaves_nothing(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 8 * MiB, seed=6)
    await asyncio.to_thread(d.random_changes, whole=2, partial=0)
    with pytest.raises(RuntimeError, match="boom"):
        async with ds.begin_point(VM, vm_record={}) as w:
            await w.write_vhd("0", d.full_stream(), delta=False)
            raise RuntimeError("boom")
    assert await asyncio.to_thread(ds.points, VM) == []
    assert await asyncio.to_thread(names_in, ds.vmdir(VM).disk_dir("0")) == set()


async def test_truncated_stream_is_refused_and_leaves_nothing(
    ds: Datastore, tmp_path: Path
) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 8 * MiB, seed=7)
    await asyncio.to_thread(d.random_changes, whole=3, partial=0)
    data = b"".join([c async for c in d.full_stream()])
    with pytest.raises(RepoError, match="truncated stream"):
        async with ds.begin_point(VM, vm_record={}) as w:
            await w.write_vhd("0", aiter_of([data[: len(data) - 700_000]]), delta=False)
            await w.commit()
    assert await asyncio.to_thread(ds.points, VM) == []
    assert await asyncio.to_thread(names_in, ds.vmdir(VM).disk_dir("0")) == set()


async def test_delta_without_full_is_a_broken_chain(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 8 * MiB, seed=8)
    await asyncio.to_thread(d.fill_block, 1)
    with pytest.raises(ChainBrokenError, match="no previous restore point"):
        async with ds.begin_point(VM, vm_record={}) as w:
            await w.write_vhd("0", d.delta_stream(), delta=True)
    await backup(ds, [d], full=True)
    await asyncio.to_thread(d.fill_block, 2)
    with pytest.raises(ChainBrokenError, match="newest is"):
        async with ds.begin_point(VM, vm_record={}, expect_parent="19990101T000000Z-000001"):
            pass
    with pytest.raises(ChainBrokenError, match="has no such disk"):
        async with ds.begin_point(VM, vm_record={}) as w:
            await w.write_vhd("7", d.delta_stream(), delta=True)


async def test_full_stream_must_be_dynamic(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 8 * MiB, seed=9)
    await asyncio.to_thread(d.fill_block, 0)
    with pytest.raises(RepoError, match="a full must be a dynamic VHD"):
        async with ds.begin_point(VM, vm_record={}) as w:
            await w.write_vhd("0", d.delta_stream(), delta=False)
    with pytest.raises(RepoError, match="not a valid VHD"):
        async with ds.begin_point(VM, vm_record={}) as w:
            await w.write_vhd("0", aiter_of([b"x" * 4096]), delta=False)


async def test_raw_full_and_usage(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 12 * MiB, seed=10)
    await asyncio.to_thread(d.fill_block, 2)
    await asyncio.to_thread(d.fill_block, 5)
    raw = await asyncio.to_thread(d.path.read_bytes)
    async with ds.begin_point(VM, vm_record={}) as w:
        rec = await w.write_raw(
            "0", aiter_of([raw[i : i + 300_000] for i in range(0, len(raw), 300_000)]), size=d.size
        )
        p = await w.commit()
    assert rec.blocks == 2  # zero blocks stay absent
    assert await read_point(ds, VM, p.id, "0") == raw
    use = await asyncio.to_thread(ds.vm_usage, VM)
    assert use.points == 1 and use.stored == 2 * 2 * MiB
    assert use.allocated >= 4 * MiB
    space = await asyncio.to_thread(ds.usage)
    assert space.capacity > space.free > 0 and space.used > 0
    assert await asyncio.to_thread(ds.vms) == [VM]
    assert (await asyncio.to_thread(lambda: ds.reflink_note)).startswith("reflink: ")
    _ = uuid


async def test_killed_backup_leftovers_are_collected(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 8 * MiB, seed=11)
    await asyncio.to_thread(d.fill_block, 1)
    await backup(ds, [d], full=True)
    vmdir = ds.vmdir(VM)
    # What a killed writer leaves: a partial VHD and a complete but uncommitted one.
    partial = vmdir.disk_dir("0") / f"{uuid.uuid4()}.vhd.part"
    await asyncio.to_thread(partial.write_bytes, b"partial")
    orphan = vmdir.disk_dir("0") / f"{uuid.uuid4()}.vhd"
    await asyncio.to_thread(orphan.write_bytes, b"never committed")
    rec = await asyncio.to_thread(ds.recover, VM)
    assert len(rec.removed) == 2
    names = await asyncio.to_thread(names_in, vmdir.disk_dir("0"))
    assert {Path(n).suffix for n in names} == {".vhd", ".sums"}
    await check_all(ds, [d])


async def test_cancelled_backup_stops_and_leaves_nothing(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 16 * MiB, seed=12)
    await asyncio.to_thread(d.random_changes, whole=6, partial=0)
    data = b"".join([c async for c in d.full_stream()])
    stalled = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        yield data[: 3 * MiB]
        stalled.set()
        await asyncio.Event().wait()  # a transfer that hangs
        yield b""

    async def job() -> None:
        async with ds.begin_point(VM, vm_record={}) as w:
            await w.write_vhd("0", stalling(), delta=False)
            await w.commit()

    task = asyncio.create_task(job())
    await stalled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(ds.points, VM) == []
    # The lock is free again and the next backup collects what was left.
    async with ds.begin_point(VM, vm_record={}) as w:
        await w.write_vhd("0", aiter_of([data]), delta=False)
        p = await w.commit()
    assert await read_point(ds, VM, p.id, "0") == await asyncio.to_thread(d.path.read_bytes)
    names = await asyncio.to_thread(names_in, ds.vmdir(VM).disk_dir("0"))
    assert names == {f"{p.disks[0].file}.vhd", f"{p.disks[0].file}.sums"}


async def test_new_full_in_the_chain_and_chain_status(ds: Datastore, tmp_path: Path) -> None:
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 12 * MiB, seed=13)
    status = await asyncio.to_thread(ds.chain_status, VM, "0")
    assert not status.can_delta and status.reason is not None and "first backup" in status.reason
    await asyncio.to_thread(d.random_changes, whole=3, partial=1)
    p1 = await backup(ds, [d], full=True)
    assert (await asyncio.to_thread(ds.chain_status, VM, "0")).can_delta
    assert "not in restore point" in str((await asyncio.to_thread(ds.chain_status, VM, "1")).reason)
    await asyncio.to_thread(d.random_changes, whole=2, partial=1)
    p2 = await backup(ds, [d], full=True)  # "full every N"
    await asyncio.to_thread(d.random_changes, whole=1, partial=2)
    p3 = await backup(ds, [d], full=False, sectors=True)
    old_file = (await asyncio.to_thread(ds.points, VM))[0].disks[0].file
    result = await ds.prune(VM, keep_last=2)
    assert [s.retire for s in result.merged] == [p1]
    assert result.stats.blocks == 0  # nothing to merge: p2 is a full
    points = await asyncio.to_thread(ds.points, VM)
    assert [p.id for p in points] == [p2, p3]
    assert not await asyncio.to_thread(ds.vmdir(VM).vhd_path("0", old_file).exists)
    await check_all(ds, [d])
    # A damaged chain is reported as the reason for the next full.
    await asyncio.to_thread(ds.vmdir(VM).vhd_path("0", points[0].disks[0].file).unlink)
    status = await asyncio.to_thread(ds.chain_status, VM, "0")
    assert not status.can_delta and "missing" in str(status.reason)
