"""The merge on real filesystems, mounted from loop images: on XFS (reflink)
and btrfs whole blocks are shared, not copied; on ext4 and tmpfs the copy
path runs. Content is checked against the raw reference and qemu-img.
The test's own looks at the files run in worker threads."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import mounted_image, mounted_tmpfs
from tests.unit.repo.repo_testlib import VM, MiB, RefDisk, qemu_raw, read_point
from xenkeep.repo import merge
from xenkeep.repo.datastore import Datastore

SHARING = {"xfs": True, "btrfs": True, "ext4": False, "tmpfs": False}


def mount_fs(fs: str, tmp_path: Path) -> Iterator[Path]:
    """Mount a fresh filesystem of type ``fs`` and unmount it afterwards."""
    mnt = tmp_path / f"mnt-{fs}"
    if fs == "tmpfs":
        with mounted_tmpfs(mnt, "700m"):
            yield mnt
    else:
        with mounted_image(mnt, fs, 1 << 30):
            yield mnt


@pytest.fixture(params=["xfs", "btrfs", "ext4", "tmpfs"])
def mounted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    fs: str = request.param
    for mnt in mount_fs(fs, tmp_path):
        yield fs, mnt


def shared_bytes(path: Path) -> int:
    """Bytes of ``path`` in extents the filesystem reports as shared (filefrag -v)."""
    out = subprocess.run(
        ["filefrag", "-v", str(path)], check=True, capture_output=True, text=True
    ).stdout
    block = int(re.search(r"blocks of (\d+) bytes", out).group(1))  # type: ignore[union-attr]
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*\d+:\s+\d+\.\.\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+):.*shared", line)
        if m:
            total += int(m.group(1)) * block
    return total


def free_bytes(root: Path) -> int:
    os.sync()
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


def same_as_qemu_reads(vhd: Path, out: Path, expected: Path) -> bool:
    """qemu-img's raw image of ``vhd`` equals the reference ``expected``."""
    return qemu_raw(vhd, out) == expected.read_bytes()


@pytest.mark.root
async def test_merge_shares_extents_or_copies(mounted: tuple[str, Path], tmp_path: Path) -> None:
    fs, mnt = mounted
    root = mnt / "store"
    await asyncio.to_thread(root.mkdir)
    ds = await asyncio.to_thread(Datastore.initialise, root)
    assert await asyncio.to_thread(lambda: ds.reflink) is SHARING[fs]
    assert ds.reflink_note == (
        "reflink: yes — merges are metadata operations"
        if SHARING[fs]
        else "reflink: no — merges copy the changed blocks"
    )
    d = await asyncio.to_thread(RefDisk, tmp_path, "0", 80 * MiB, seed=41)
    await asyncio.to_thread(d.random_changes, whole=20, partial=0)
    async with ds.begin_point(VM, vm_record={}) as w:
        await w.write_vhd("0", d.full_stream(), delta=False)
        p1 = await w.commit()
    await asyncio.to_thread(d.snapshot, p1.id)
    d.reset_changes()
    await asyncio.to_thread(d.random_changes, whole=16, partial=0)
    async with ds.begin_point(VM, vm_record={}) as w:
        await w.write_vhd("0", d.delta_stream(), delta=True)
        p2 = await w.commit()
    await asyncio.to_thread(d.snapshot, p2.id)
    d.reset_changes()
    await asyncio.to_thread(d.random_changes, whole=0, partial=4)
    async with ds.begin_point(VM, vm_record={}) as w:
        await w.write_blocks("0", d.sector_delta(), size=d.size, delta=True)
        p3 = await w.commit()
    await asyncio.to_thread(d.snapshot, p3.id)
    vmdir = ds.vmdir(VM)
    full = vmdir.vhd_path("0", p1.disks[0].file)

    # Look at the full while the merge holds both files: after the copy, before the swap.
    seen: dict[str, int] = {}
    free_before = await asyncio.to_thread(free_bytes, root)

    def hook(event: str) -> None:  # runs in the merge's worker thread
        if event == "sums" and "shared" not in seen:
            seen["free_drop"] = free_before - free_bytes(root)
            # tmpfs has no FIEMAP (and nothing to share).
            seen["shared"] = shared_bytes(full) if fs != "tmpfs" else 0

    merge.fault_hook = hook
    try:
        result = await ds.prune(VM, keep_last=2)
    finally:
        merge.fault_hook = None
    merged = 16 * 2 * MiB
    if SHARING[fs]:
        assert result.stats.blocks_shared == 16 and result.stats.bytes_copied == 0
        assert seen["shared"] >= merged
        if fs == "xfs":
            # The 32 MiB merged cost (almost) no space: extents were shared, not
            # copied. (btrfs's free count moves with metadata chunk allocation.)
            assert seen["free_drop"] < merged // 4
    else:
        assert result.stats.blocks_shared == 0 and result.stats.bytes_copied == merged
        assert seen["shared"] == 0
    assert [p.id for p in await asyncio.to_thread(ds.points, VM)] == [p2.id, p3.id]
    for pid in (p2.id, p3.id):
        want = await asyncio.to_thread((d.dir / f"{pid}.raw").read_bytes)
        assert await read_point(ds, VM, pid, "0") == want
    merged_full = vmdir.vhd_path("0", p2.disks[0].file)
    assert await asyncio.to_thread(
        same_as_qemu_reads, merged_full, tmp_path / "q.raw", d.dir / f"{p2.id}.raw"
    )

    # Partial blocks: the second merge copies only the sectors present.
    result = await ds.prune(VM, keep_last=1)
    assert result.stats.blocks_shared == 0 and 0 < result.stats.bytes_copied < 4 * 2 * MiB
    want = await asyncio.to_thread((d.dir / f"{p3.id}.raw").read_bytes)
    assert await read_point(ds, VM, p3.id, "0") == want

    # A synthetic full of the newest point shares its blocks too.
    synth = root / "synth.vhd"
    stats = await ds.synthesize_full(VM, p3.id, "0", synth)
    assert (stats.blocks_shared > 0) is SHARING[fs]
    assert await asyncio.to_thread(
        same_as_qemu_reads, synth, tmp_path / "s.raw", d.dir / f"{p3.id}.raw"
    )
    assert (await ds.verify(VM)).ok
