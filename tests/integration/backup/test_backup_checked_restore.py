"""Restores check every block on the way to the pool (simulator, partial-block
deltas): a byte flipped in a stored delta stops the restore before the block
reaches the pool and nothing is left there; the point is marked damaged with
the block; an older point restores byte-identical; "restore what can be
read" restores the rest and lists the zeroed block; a backup run's merge
refuses to fold the damage in."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from tests.integration.backup.conftest import (
    POOL_ID,
    TestVm,
    job_input,
    sr_uuid,
    vdi_sha256,
)
from tests.unit.repo.repo_testlib import rot_block
from xenkeep.backup.manager import BackupManager
from xenkeep.xapi.client import XapiClient

MiB = 1 << 20
BLOCK = 2 * MiB


async def disk_bytes(client: XapiClient, vdi: str) -> bytes:
    """A (small) VDI's whole content, from the simulator's backing file."""
    path = Path(await client.call("sim.vdi_path", vdi))
    size = int(await client.call("VDI.get_virtual_size", vdi))
    data = await asyncio.to_thread(path.read_bytes)
    return data.ljust(size, b"\0")[:size]


async def restore(
    manager: BackupManager, client: XapiClient, vm: TestVm, point_id: str, **more: Any
) -> dict[str, Any]:
    run_id = await manager.restore(
        {
            "pool_id": POOL_ID,
            "vm_uuid": vm.uuid,
            "point_id": point_id,
            "sr_uuid": await sr_uuid(client),
            **more,
        }
    )
    return await manager.wait(run_id)


async def stored_vhd(manager: BackupManager, vm: TestVm, point_id: str) -> Path:
    ds = manager.datastore
    vmdir = ds.vmdir(vm.uuid)
    point = await asyncio.to_thread(vmdir.load_point, point_id)
    return vmdir.vhd_path("0", point.disk("0").file)


async def vdis_in_pool(client: XapiClient) -> set[str]:
    return set(await client.call("VDI.get_all"))


async def three_points(
    manager: BackupManager, client: XapiClient, vm: TestVm, retention: int = 7
) -> tuple[int, list[str], list[bytes]]:
    """P1 a full, P2 and P3 deltas of a few sectors each (partial blocks)."""
    job = await manager.create_job(job_input(retention=retention))
    contents = []
    for change in (None, (4096, 4096), (7 * BLOCK - 3 * MiB + 512, 1024)):
        if change is not None:
            offset, length = change
            await vm.write(offset, vm.rng.randbytes(length))
        run = await manager.wait(await manager.run_job(job.id))
        assert run["status"] == "success", run
        contents.append(await disk_bytes(client, vm.vdi))
    ids = [p["id"] for p in await manager.points(vm.uuid)]
    return job.id, ids, contents


async def test_a_damaged_block_never_reaches_the_pool(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    _job, (p1, p2, p3), contents = await three_points(manager, client, vm)
    # The last delta changed a few sectors of block 5: rot a byte of it.
    delta = await stored_vhd(manager, vm, p3)
    await asyncio.to_thread(rot_block, delta, 5, at=600)
    before = await vdis_in_pool(client)
    vms_before = set(await client.call("VM.get_all"))

    run = await restore(manager, client, vm, p3)
    assert run["status"] == "failed", run
    error = run["error"]
    assert f"restore point {p3}" in error and "disk 0" in error
    assert f"block 5 of {delta.stem}.vhd does not match its checksum" in error
    assert f"an intact copy of block 5: restore point {p1} (older), {p2} (older)" in error
    # The VM and its disk were created, then removed: nothing of it stays.
    assert await vdis_in_pool(client) == before
    assert set(await client.call("VM.get_all")) == vms_before

    # The point is marked damaged, with the block, for the pages and the API.
    points = {p["id"]: p for p in await manager.points(vm.uuid)}
    assert points[p3]["damage"] == [
        {
            "disk": "0",
            "file": delta.stem,
            "reason": "blocks do not match their checksums",
            "blocks": [5],
        }
    ]
    assert points[p1]["damage"] == points[p2]["damage"] == []
    # Known now: the next restore of it is refused before anything is created.
    again = await restore(manager, client, vm, p3, disk="0")
    assert again["status"] == "failed" and "block 5" in again["error"]
    detail = await manager.run_detail(again["id"])
    assert not any("created VM" in line["message"] for line in detail["log"])
    assert await vdis_in_pool(client) == before

    # An intact older point restores byte-identical.
    ok = await restore(manager, client, vm, p2, disk="0")
    assert ok["status"] == "success", ok
    [vdi] = ok["report"]["new_vdis"]
    assert await vdi_sha256(client, vdi) == hashlib.sha256(contents[1]).hexdigest()

    # Restore what can be read: kept, block 5 as zeros, listed; still failed.
    salvaged = await restore(manager, client, vm, p3, disk="0", salvage=True)
    assert salvaged["status"] == "failed", salvaged
    assert "restored what could be read" in salvaged["error"]
    assert "disk 0 blocks 5 damaged, restored as zeros" in salvaged["error"]
    [damage] = salvaged["report"]["damage"]
    assert damage["zeroed"] == [5] and damage["disk"] == "0"
    [vdi] = salvaged["report"]["new_vdis"]
    want = contents[2][: 5 * BLOCK] + bytes(BLOCK) + contents[2][6 * BLOCK :]
    assert await disk_bytes(client, vdi) == want
    # Kept: no longer marked as a restore in progress (the sweep leaves it).
    other = await client.call("VDI.get_other_config", vdi)
    assert "xenkeep-restoring" not in other


async def test_a_merge_in_a_backup_run_refuses_damage(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job_id, ids, contents = await three_points(manager, client, vm, retention=2)
    # Retention 2 merged P1 away already; P2 is the full now, P3 its delta.
    p2, p3 = ids
    delta = await stored_vhd(manager, vm, p3)
    await asyncio.to_thread(rot_block, delta, 5, at=10)
    await vm.write(0, b"\x07" * 512)
    run = await manager.wait(await manager.run_job(job_id))
    [row] = run["report"]["vms"]
    assert row["error"].startswith(
        f"merge refused: restore point {p2} of VM {vm.uuid} was not merged into {p3}"
    )
    assert "block 5 of" in row["error"] and "nothing was changed" in row["error"]
    # Nothing was folded in: P2 (the full) still restores byte-identical.
    assert [p["id"] for p in await manager.points(vm.uuid)][:2] == [p2, p3]
    ok = await restore(manager, client, vm, p2, disk="0")
    assert ok["status"] == "success", ok
    [vdi] = ok["report"]["new_vdis"]
    assert await disk_bytes(client, vdi) == contents[1]
