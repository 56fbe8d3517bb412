"""SIGKILL a merging process at every step it takes (and at random moments),
then reopen the datastore: every restore point still listed must read back
byte-identical to the reference disk, and the merge must complete."""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.unit.repo.repo_testlib import VM, MiB, RefDisk
from xenkeep.formats.vhd import FOOTER_SIZE, VhdFile
from xenkeep.repo.datastore import Datastore
from xenkeep.repo.merge import repair_tail
from xenkeep.repo.reader import open_disk
from xenkeep.repo.restore import iter_raw

MERGER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from xenkeep.repo import merge
    from xenkeep.repo.datastore import Datastore

    kill_at = int(sys.argv[3])
    seen = []

    def hook(name):
        seen.append(name)
        if len(seen) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    merge.fault_hook = hook
    ds = Datastore(Path(sys.argv[1]))
    ds.reflink  # probe before the timing starts
    print("ready", flush=True)
    result = asyncio.run(ds.prune(sys.argv[2], int(sys.argv[4])))
    print(len(seen), ",".join(seen), flush=True)
    """
)
KEEP = 1
#: The same, deleting the middle restore point (argv[4]: its index) instead of pruning.
DELETER = MERGER.replace(
    "asyncio.run(ds.prune(sys.argv[2], int(sys.argv[4])))",
    "asyncio.run(ds.delete_point(sys.argv[2], ds.points(sys.argv[2])[int(sys.argv[4])].id))",
)


def build(root: Path, work: Path, sizes: tuple[int, int], whole: int) -> list[RefDisk]:
    """Three restore points (full, whole-block delta, sector delta) of two disks."""
    root.mkdir()
    ds = Datastore.initialise(root)
    disks = [RefDisk(work, "0", sizes[0], seed=31), RefDisk(work, "1", sizes[1], seed=32)]

    async def run() -> None:
        for n in range(3):
            for d in disks:
                d.random_changes(whole=whole, partial=3)
            async with ds.begin_point(VM, vm_record={"n": n}) as w:
                for d in disks:
                    if n == 0:
                        await w.write_vhd(d.key, d.full_stream(), delta=False)
                    elif n == 1:
                        await w.write_vhd(d.key, d.delta_stream(), delta=True)
                    else:
                        await w.write_blocks(d.key, d.sector_delta(), size=d.size, delta=True)
                p = await w.commit()
            for d in disks:
                d.snapshot(p.id)
                d.reset_changes()

    asyncio.run(run())
    return disks


def merger(root: Path, kill_at: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", MERGER, str(root), VM, str(kill_at), str(KEEP)],
        stdout=subprocess.PIPE,
        text=True,
    )


def check_state(root: Path, disks: list[RefDisk], all_ids: list[str]) -> list[str]:
    """Reopen (which resumes any merge), check every listed point; return their ids."""
    ds = Datastore(root)
    ds.recover(VM)
    listed = [p.id for p in ds.points(VM)]
    # Only the oldest points may have gone, never the newest, never a gap.
    assert listed == all_ids[len(all_ids) - len(listed) :] and listed
    with ds.reading(VM) as vmdir:
        for pid in listed:
            point = vmdir.load_point(pid)
            for d in disks:
                with open_disk(vmdir, d.key, point.disk(d.key).file) as reader:
                    got = b"".join(iter_raw(reader))
                assert got == (d.dir / f"{pid}.raw").read_bytes(), f"point {pid} disk {d.key}"
    assert not vmdir.journal.exists()
    return listed


def finish_and_check(root: Path, disks: list[RefDisk], all_ids: list[str]) -> None:
    ds = Datastore(root)
    result = asyncio.run(ds.prune(VM, KEEP))
    assert result.deferred is None
    assert check_state(root, disks, all_ids) == all_ids[-KEEP:]
    report = asyncio.run(ds.verify(VM))
    assert report.ok, report.damaged


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_at_every_step_of_a_merge(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    disks = build(pristine, tmp_path, (24 * MiB, 6 * MiB), whole=3)
    all_ids = [p.id for p in Datastore(pristine).points(VM)]
    # A complete run counts the events to kill at.
    work = tmp_path / "count"
    shutil.copytree(pristine, work)
    proc = merger(work, 0)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    events = int(out.splitlines()[-1].split()[0])
    names = out.splitlines()[-1].split()[1].split(",")
    assert names.count("block") >= 10 and "uuid-half" in names and "retired" in names
    finish_and_check(work, disks, all_ids)
    outcomes = set()
    for kill_at in range(1, events + 1):
        work = tmp_path / f"kill-{kill_at}"
        shutil.copytree(pristine, work)
        proc = merger(work, kill_at)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, (
            f"kill at {kill_at} ({names[kill_at - 1]}): {out}"
        )
        outcomes.add(len(check_state(work, disks, all_ids)))
        finish_and_check(work, disks, all_ids)
        shutil.rmtree(work)
    assert outcomes == {1, 2}  # kills landed in the first merge and in the second


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_at_random_moments(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    disks = build(pristine, tmp_path, (64 * MiB, 16 * MiB), whole=12)
    all_ids = [p.id for p in Datastore(pristine).points(VM)]
    work = tmp_path / "timed"
    shutil.copytree(pristine, work)
    proc = merger(work, 0)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    started = time.monotonic()
    proc.communicate(timeout=120)
    span = time.monotonic() - started
    rng = random.Random(7)
    for n in range(10):
        work = tmp_path / f"random-{n}"
        shutil.copytree(pristine, work)
        proc = merger(work, 0)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, span))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        check_state(work, disks, all_ids)
        finish_and_check(work, disks, all_ids)
        shutil.rmtree(work)


def test_torn_append_is_cut_off(tmp_path: Path) -> None:
    """What a kill between a new block's bitmap and its footer leaves behind."""
    root = tmp_path / "store"
    disks = build(root, tmp_path, (8 * MiB, 4 * MiB), whole=1)
    ds = Datastore(root)
    path = ds.vmdir(VM).vhd_path("0", ds.points(VM)[0].disks[0].file)
    before = path.read_bytes()
    with path.open("ab") as f:
        f.write(b"\x00" * 2560 + b"\xff" * 512)  # alignment padding, then a bitmap
    with pytest.raises(Exception, match="truncated file"):
        VhdFile.open(path).__enter__()
    assert repair_tail(path)
    assert path.read_bytes() == before
    assert path.stat().st_size % 512 == 0 and len(before) > FOOTER_SIZE
    assert not repair_tail(path)
    _ = disks


def test_a_point_a_pending_journal_retires_is_never_listed(tmp_path: Path) -> None:
    """Killed once the journal says ``begin``: the oldest point's metadata is
    still there, but its replay removes it, so listing must not offer it."""
    root = tmp_path / "store"
    disks = build(root, tmp_path, (8 * MiB, 4 * MiB), whole=1)
    all_ids = [p.id for p in Datastore(root).points(VM)]
    proc = merger(root, 1)  # the first event: journal:begin of the first merge
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    ds = Datastore(root)
    assert ds.vmdir(VM).point_path(all_ids[0]).exists()  # the replay has not run yet
    assert [p.id for p in ds.points(VM)] == all_ids[1:]
    assert ds.vm_usage(VM).points == 2
    # Opening the storage at start-up finishes it before anything lists.
    assert ds.recover_all() == {VM: all_ids[0]}
    assert not ds.vmdir(VM).journal.exists()
    assert check_state(root, disks, all_ids) == all_ids[1:]


def deleter(root: Path, kill_at: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DELETER, str(root), VM, str(kill_at), "1"],
        stdout=subprocess.PIPE,
        text=True,
    )


def check_listed(root: Path, disks: list[RefDisk], want: list[str]) -> None:
    """Reopen as the daemon does (finishing any merge), then read every listed point."""
    ds = Datastore(root)
    ds.recover_all()
    assert [p.id for p in ds.points(VM)] == want
    with ds.reading(VM) as vmdir:
        for pid in want:
            point = vmdir.load_point(pid)
            for d in disks:
                with open_disk(vmdir, d.key, point.disk(d.key).file) as reader:
                    got = b"".join(iter_raw(reader))
                assert got == (d.dir / f"{pid}.raw").read_bytes(), f"point {pid} disk {d.key}"
    assert not vmdir.journal.exists()
    report = asyncio.run(ds.verify(VM))
    assert report.ok, report.damaged


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_at_every_step_of_deleting_a_middle_point(tmp_path: Path) -> None:
    """Deleting a point in the middle merges a delta into a delta: a kill at
    any step leaves it gone and every other point intact."""
    pristine = tmp_path / "pristine"
    disks = build(pristine, tmp_path, (24 * MiB, 6 * MiB), whole=3)
    all_ids = [p.id for p in Datastore(pristine).points(VM)]
    want = [all_ids[0], all_ids[2]]
    work = tmp_path / "count"
    shutil.copytree(pristine, work)
    proc = deleter(work, 0)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    events = int(out.splitlines()[-1].split()[0])
    check_listed(work, disks, want)
    for kill_at in range(1, events + 1):
        work = tmp_path / f"kill-{kill_at}"
        shutil.copytree(pristine, work)
        proc = deleter(work, kill_at)
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, kill_at
        check_listed(work, disks, want)
        shutil.rmtree(work)
