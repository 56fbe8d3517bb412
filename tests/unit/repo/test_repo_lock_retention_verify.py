"""Chain locks (live, killed and stale holders), retention planning, verify."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.unit.repo.repo_testlib import VM, MiB, RefDisk, rot_block
from xenkeep.repo.datastore import Datastore
from xenkeep.repo.errors import ChainBusyError
from xenkeep.repo.lock import ChainLock, LockOwner, boot_id
from xenkeep.repo.retention import MergeStep, PointSummary, plan_retention

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from xenkeep.repo.lock import ChainLock
    lock = ChainLock(Path(sys.argv[1]), "holder", use_flock=sys.argv[2] == "1")
    lock.acquire()
    print("locked", flush=True)
    time.sleep(600)
    """
)


def start_holder(path: Path, use_flock: bool) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), "1" if use_flock else "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("use_flock", [True, False], ids=["flock", "exclusive-file"])
def test_live_holder_blocks_and_killed_holder_is_recovered(tmp_path: Path, use_flock: bool) -> None:
    path = tmp_path / "lock"
    proc = start_holder(path, use_flock)
    try:
        with pytest.raises(ChainBusyError, match=rf"pid {proc.pid} .*\(holder\)"):
            ChainLock(path, "second", use_flock=use_flock).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    lock = ChainLock(path, "second", use_flock=use_flock)
    lock.acquire()
    try:
        assert lock.recovered is not None and lock.recovered.pid == proc.pid
        owner = LockOwner.parse(path.read_bytes())
        assert owner is not None and owner.pid == os.getpid() and owner.purpose == "second"
    finally:
        lock.release()
    # A clean release leaves nothing to recover.
    again = ChainLock(path, "third", use_flock=use_flock)
    with again:
        assert again.recovered is None


def test_lock_from_another_boot_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    me = LockOwner.me("old job")
    other_boot = {**me.__dict__, "boot_id": "00000000-0000-0000-0000-000000000000"}
    path.write_text(json.dumps(other_boot))
    assert boot_id() != other_boot["boot_id"]
    lock = ChainLock(path, "new", use_flock=False)
    with lock:
        assert lock.recovered is not None and lock.recovered.purpose == "old job"
    # The same content from this boot and a live pid (ours) is not stale.
    path.write_text(json.dumps(me.__dict__))
    with pytest.raises(ChainBusyError, match="old job"):
        ChainLock(path, "new", use_flock=False).acquire()


async def test_two_writers_of_one_vm_never_overlap(tmp_path: Path) -> None:
    ds = await asyncio.to_thread(Datastore.initialise, tmp_path)
    async with ds.begin_point(VM, vm_record={}, job_id="a"):
        with pytest.raises(ChainBusyError, match="backup job a"):
            async with ds.begin_point(VM, vm_record={}, job_id="b"):
                pass
    # Released on exit: a new writer gets in.
    async with ds.begin_point(VM, vm_record={}, job_id="c"):
        pass


def test_retention_plan() -> None:
    pts = [PointSummary(f"p{i}", i) for i in range(1, 6)]
    plan = plan_retention(list(reversed(pts)), 3)
    assert plan.merges == (MergeStep("p1", "p2"), MergeStep("p2", "p3"))
    assert plan.keep == ("p3", "p4", "p5") and plan.blocked is None
    assert plan_retention(pts, 7).merges == ()
    assert plan_retention([], 1).merges == ()
    damaged = [*pts[:1], PointSummary("p2", 2, damaged=True), *pts[2:]]
    plan = plan_retention(damaged, 2)
    assert plan.merges == (MergeStep("p1", "p2"),)[:0]
    assert plan.blocked is not None and "p2 is damaged" in plan.blocked
    assert plan.keep == ("p1", "p2", "p3", "p4", "p5")
    with pytest.raises(ValueError, match="at least one"):
        plan_retention(pts, 0)


async def test_verify_names_the_flipped_block(tmp_path: Path) -> None:
    root = tmp_path / "store"
    await asyncio.to_thread(root.mkdir)
    ds = await asyncio.to_thread(Datastore.initialise, root)
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 20 * MiB, seed=21)
    for i in (1, 4, 7):
        await asyncio.to_thread(d.fill_block, i)
    async with ds.begin_point(VM, vm_record={}) as w:
        await w.write_vhd("0", d.full_stream(), delta=False)
        p1 = await w.commit()
    d.reset_changes()
    await asyncio.to_thread(d.fill_block, 2)
    async with ds.begin_point(VM, vm_record={}) as w:
        await w.write_vhd("0", d.delta_stream(), delta=True)
        p2 = await w.commit()
    assert (await ds.verify()).ok
    full = ds.vmdir(VM).vhd_path("0", p1.disks[0].file)
    await asyncio.to_thread(rot_block, full, 4, at=12345, mask=0x01)
    report = await ds.verify(VM)
    assert not report.ok
    assert {(x.point_id, x.disk, x.file, x.blocks) for x in report.damaged} == {
        (p1.id, "0", p1.disks[0].file, (4,)),
        (p2.id, "0", p1.disks[0].file, (4,)),
    }
    assert "do not match" in report.damaged[0].reason
    # Flagged, not deleted; the damage is listed; merges refuse to spread it.
    assert await asyncio.to_thread(full.exists)
    assert {x.point_id for x in await asyncio.to_thread(ds.damage, VM)} == {p1.id, p2.id}
    result = await ds.prune(VM, keep_last=1)
    assert result.merged == [] and result.plan.blocked is not None
    assert len(await asyncio.to_thread(ds.points, VM)) == 2
