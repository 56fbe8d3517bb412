"""SIGKILL a process writing a restore point at random moments: the point is
either listed complete or not at all, and its leftovers are collected."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.unit.repo.repo_testlib import VM, MiB, RefDisk, read_point
from xenkeep.repo.datastore import Datastore

WRITER = textwrap.dedent(
    """
    import asyncio, sys, uuid
    from pathlib import Path
    from xapisim.vhdio import vhd_stream
    from xenkeep.repo.datastore import Datastore

    async def chunks(it):
        for c in it:
            yield c

    async def main():
        ds = Datastore(Path(sys.argv[1]))
        raw, size = Path(sys.argv[3]), int(sys.argv[4])
        blocks = [int(b) for b in sys.argv[5].split(",")]
        print("ready", flush=True)
        async with ds.begin_point(sys.argv[2], vm_record={}) as w:
            for key in ("0", "1"):
                stream = vhd_stream(raw, size, blocks, parent_uuid=uuid.uuid4())
                await w.write_vhd(key, chunks(stream), delta=True)
            await w.commit()

    asyncio.run(main())
    print("done", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_writer_leaves_whole_points_only(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    ds = Datastore.initialise(root)
    d = RefDisk(tmp_path, "0", 64 * MiB, seed=51)
    d.random_changes(whole=10, partial=0)

    async def first() -> str:
        async with ds.begin_point(VM, vm_record={}) as w:
            for key in ("0", "1"):
                await w.write_vhd(key, d.full_stream(), delta=False)
            return (await w.commit()).id

    p1 = asyncio.run(first())
    d.snapshot(p1)
    d.reset_changes()
    d.random_changes(whole=24, partial=0)
    changed = ",".join(str(b) for b in sorted(d.changed_blocks))
    expected = d.path.read_bytes()
    argv = [sys.executable, "-c", WRITER, str(root), VM, str(d.path), str(d.size), changed]

    def run(delay: float | None) -> float:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        started = time.monotonic()
        if delay is not None:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        return time.monotonic() - started

    span = run(None)
    # The completed write above is the reference run; drop it again.
    listed = ds.points(VM)
    assert len(listed) == 2
    ds.vmdir(VM).point_path(listed[1].id).unlink()
    ds.recover(VM)
    rng = random.Random(5)
    outcomes = set()
    for _ in range(8):
        run(rng.uniform(0, span))
        rec = ds.recover(VM)
        points = ds.points(VM)
        assert points[0].id == p1 and len(points) in (1, 2)
        outcomes.add(len(points))
        for p in points:
            for key in ("0", "1"):
                want = expected if p.id != p1 else (d.dir / f"{p1}.raw").read_bytes()
                assert asyncio.run(read_point(ds, VM, p.id, key)) == want
        vmdir = ds.vmdir(VM)
        for key in ("0", "1"):
            files = {f.name for f in vmdir.disk_dir(key).iterdir()}
            wanted = {p.disk(key).file for p in points}
            assert files == {f"{w}.vhd" for w in wanted} | {f"{w}.sums" for w in wanted}, rec
        if len(points) == 2:
            vmdir.point_path(points[1].id).unlink()
            ds.recover(VM)
    assert 1 in outcomes
