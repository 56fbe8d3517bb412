"""Deltas with partial blocks, end to end: the simulator exports only the
changed sectors of each block (as a real differencing disk can hold them),
and a randomized schedule of guest writes (single sectors, runs across block
boundaries, zeros over data, rewrites of the same bytes) goes through
backups, retention merges, deletions of a point, restores and verify. Every
retained point restores byte-identical into the pool, and the newest one
also through qemu-img, an independent VHD reader, from a synthetic full."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import subprocess
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.integration.backup.conftest import POOL_ID, job_input, make_vm, sr_uuid
from tests.integration.backup.test_backup_checked_restore import disk_bytes
from xapisim import RunningSimulator
from xenkeep.backup.manager import BackupManager
from xenkeep.formats.vhd import VhdFile
from xenkeep.xapi.client import XapiClient

MiB = 1 << 20
BLOCK = 2 * MiB
SECTOR = 512
SIZE = 8 * MiB + 3 * SECTOR  # four whole blocks and a short last one
SECTORS = SIZE // SECTOR
_names = itertools.count()

#: (first sector, sector count, what is written: random bytes, zeros, or the bytes already there)
Write = tuple[int, int, str]


@st.composite
def writes(draw: st.DrawFn) -> Write:
    shape = draw(st.sampled_from(["sector", "across", "run"]))
    if shape == "sector":
        first, count = draw(st.integers(0, SECTORS - 1)), 1
    elif shape == "across":
        boundary = draw(st.integers(1, SIZE // BLOCK)) * (BLOCK // SECTOR)
        first = boundary - draw(st.integers(1, 8))
        count = min(SECTORS - first, draw(st.integers(2, 16)))
    else:
        first = draw(st.integers(0, SECTORS - 1))
        count = min(SECTORS - first, draw(st.integers(1, 600)))
    return first, count, draw(st.sampled_from(["random", "random", "zeros", "same"]))


steps = st.lists(st.lists(writes(), min_size=1, max_size=4), min_size=2, max_size=5)


async def apply(client: XapiClient, vdi: str, rng: random.Random, write: Write) -> None:
    first, count, kind = write
    if kind == "same":
        raw = await client.call("sim.read_vdi", vdi, first * SECTOR, count * SECTOR)
        await client.call("sim.write_vdi", vdi, first * SECTOR, raw)
        return
    data = rng.randbytes(count * SECTOR) if kind == "random" else bytes(count * SECTOR)
    await client.call("sim.write_vdi", vdi, first * SECTOR, base64.b64encode(data).decode())


async def retag(client: XapiClient, vm_ref: str, tag: str) -> None:
    """Give the VM a tag of its own, so the example's job backs up it alone."""
    await client.call("VM.remove_tags", vm_ref, "xk-test")
    await client.call("VM.add_tags", vm_ref, tag)


def partial_blocks_stored(root: Path) -> int:
    """Blocks of stored deltas whose bitmap leaves some sectors to the parent."""
    found = 0
    for path in root.rglob("*.vhd"):
        with VhdFile.open(path) as v:
            if v.parent_uuid is None:
                continue
            for index in v.present_blocks():
                bitmap = v.read_bitmap(index)
                if bitmap is not None and bitmap != b"\xff" * len(bitmap):
                    found += 1
    return found


async def restored(manager: BackupManager, client: XapiClient, vm_uuid: str, point: str) -> bytes:
    run = await manager.wait(
        await manager.restore(
            {
                "pool_id": POOL_ID,
                "vm_uuid": vm_uuid,
                "point_id": point,
                "sr_uuid": await sr_uuid(client),
                "disk": "0",
            }
        )
    )
    assert run["status"] == "success", run
    [vdi] = run["report"]["new_vdis"]
    got = await disk_bytes(client, vdi)
    await client.call("VDI.destroy", vdi)
    return got


def qemu_read(vhd: Path) -> bytes:
    raw = vhd.with_suffix(".raw")
    subprocess.run(
        ["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(vhd), str(raw)],
        check=True,
        capture_output=True,
    )
    return raw.read_bytes()


@hypothesis.settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    schedule=steps,
    retention=st.integers(2, 4),
    delete_middle=st.booleans(),
    seed=st.integers(0, 2**32),
)
async def test_randomized_writes_restore_byte_identical(
    manager: BackupManager,
    client: XapiClient,
    sim: RunningSimulator,
    tmp_path: Path,
    schedule: list[list[Write]],
    retention: int,
    delete_middle: bool,
    seed: int,
) -> None:
    assert sim.pool.partial_blocks, "the suite's simulators export partial blocks"
    n = next(_names)
    rng = random.Random(seed)
    vm = await make_vm(client, sim, f"partial-{n}", size=SIZE, seed=seed)
    tag = f"xk-partial-{n}"
    await retag(client, vm.ref, tag)
    job = await manager.create_job(job_input(name=f"partial {n}", targets=tag, retention=retention))
    expected: dict[str, bytes] = {}
    for step, changes in enumerate([[], *schedule]):
        for write in changes:
            await apply(client, vm.vdi, rng, write)
        run = await manager.wait(await manager.run_job(job.id))
        assert run["status"] == "success", run
        [row] = run["report"]["vms"]
        assert row["transfers"] == {"0": "full" if step == 0 else "delta"}, row
        expected[row["point_id"]] = await disk_bytes(client, vm.vdi)
    points = [p["id"] for p in await manager.points(vm.uuid)]
    assert len(points) == min(retention, len(schedule) + 1)
    if delete_middle and len(points) >= 3:
        op = await manager.ops.wait(await manager.delete_point(vm.uuid, points[1]))
        assert op["status"] == "success", op
        points.pop(1)
    assert [p["id"] for p in await manager.points(vm.uuid)] == points
    for point in points:
        assert await restored(manager, client, vm.uuid, point) == expected[point], point
    report = await manager.datastore.verify(vm.uuid)
    assert report.ok, report.damaged
    synth = tmp_path / f"synth-{n}.vhd"
    await manager.datastore.synthesize_full(vm.uuid, points[-1], "0", synth)
    assert await asyncio.to_thread(qemu_read, synth) == expected[points[-1]]


async def test_a_few_changed_sectors_are_stored_as_a_partial_block(
    manager: BackupManager, client: XapiClient, sim: RunningSimulator
) -> None:
    vm = await make_vm(client, sim, "partial-one", size=SIZE)
    job = await manager.create_job(job_input(retention=3))
    assert (await manager.wait(await manager.run_job(job.id)))["status"] == "success"
    await apply(client, vm.vdi, random.Random(1), (5, 1, "random"))
    run: dict[str, Any] = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    root = manager.datastore.root
    assert await asyncio.to_thread(partial_blocks_stored, root) == 1
