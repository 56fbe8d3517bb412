"""Backups and restores through the simulator, over the wire."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.integration.backup.conftest import (
    POOL_ID,
    TestVm,
    job_input,
    sr_uuid,
    vdi_sha256,
)
from xenkeep.backup.manager import BackupManager
from xenkeep.xapi.client import XapiClient


def flip_byte(path: Path, offset: int) -> None:
    """Rot one byte of a stored file, as a failing disk would."""
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))


async def restore_disk_sha(
    manager: BackupManager, client: XapiClient, vm_uuid: str, point_id: str, sr: str
) -> str:
    run_id = await manager.restore(
        {"pool_id": POOL_ID, "vm_uuid": vm_uuid, "point_id": point_id, "sr_uuid": sr, "disk": "0"}
    )
    run = await manager.wait(run_id)
    assert run["status"] == "success", run
    [vdi] = run["report"]["new_vdis"]
    digest = await vdi_sha256(client, vdi)
    await client.call("VDI.destroy", vdi)
    return digest


async def test_first_run_full_then_deltas_and_restore(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job = await manager.create_job(job_input())
    run_id = await manager.run_job(job.id)
    run = await manager.wait(run_id)
    assert run["status"] == "success", run
    first = await vm.sha256()
    [row] = run["report"]["vms"]
    assert row["transfers"] == {"0": "full"}
    assert "first backup" in row["reasons"]["0"]
    full_bytes = row["bytes"]

    await vm.write(4096, b"\x42" * 4096)
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    second = await vm.sha256()
    [row] = run["report"]["vms"]
    assert row["transfers"] == {"0": "delta"}
    # One 2 MiB block changed, out of the two the full held.
    assert row["bytes"] < full_bytes * 0.6

    points = await manager.points(vm.uuid)
    assert len(points) == 2
    sr = await sr_uuid(client)
    assert await restore_disk_sha(manager, client, vm.uuid, points[0]["id"], sr) == first
    assert await restore_disk_sha(manager, client, vm.uuid, points[1]["id"], sr) == second

    # Only one XenKeep snapshot stays: the reference for the next delta.
    snaps = await client.call("VM.get_snapshots", vm.ref)
    assert len(snaps) == 1
    detail = await manager.run_detail(run["id"])
    assert any(t["disk_key"] == "0" and t["transfer"] == "delta" for t in detail["tasks"])
    assert any("delta against snapshot" in line["message"] for line in detail["log"])


async def test_restore_whole_vm(manager: BackupManager, client: XapiClient, vm: TestVm) -> None:
    job = await manager.create_job(job_input())
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    want = await vm.sha256()
    [point] = await manager.points(vm.uuid)
    run_id = await manager.restore(
        {
            "pool_id": POOL_ID,
            "vm_uuid": vm.uuid,
            "point_id": point["id"],
            "sr_uuid": await sr_uuid(client),
            "name": "restored copy",
        }
    )
    run = await manager.wait(run_id)
    assert run["status"] == "success", run
    new_vm = run["report"]["new_vm"]
    rec: dict[str, Any] = await client.call("VM.get_record", new_vm)
    assert rec["name_label"] == "restored copy"
    assert rec["VCPUs_max"] == 1
    vbds = rec["VBDs"]
    assert len(vbds) == 1
    vdi = await client.call("VBD.get_VDI", vbds[0])
    assert await vdi_sha256(client, vdi) == want
    # The network interface came back on the same network, with a new MAC.
    [src_vif] = await client.call("VM.get_VIFs", vm.ref)
    [new_vif] = rec["VIFs"]
    assert await client.call("VIF.get_network", new_vif) == await client.call(
        "VIF.get_network", src_vif
    )
    assert rec["other_config"]["xenkeep-restored-from"] == f"{vm.uuid}/{point['id']}"


async def test_missing_reference_snapshot_forces_a_full_and_says_why(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job = await manager.create_job(job_input())
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    # Someone deletes the reference snapshot outside XenKeep.
    [snap] = await client.call("VM.get_snapshots", vm.ref)
    for vbd in await client.call("VM.get_VBDs", snap):
        await client.call("VDI.destroy", await client.call("VBD.get_VDI", vbd))
    await client.call("VM.destroy", snap)
    await vm.write(0, b"\x01" * 512)
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    [row] = run["report"]["vms"]
    assert row["transfers"] == {"0": "full"}
    assert "is missing from the pool" in row["reasons"]["0"]
    detail = await manager.run_detail(run["id"])
    assert any("full — reference snapshot VDI" in x["message"] for x in detail["log"])
    points = await manager.points(vm.uuid)
    sr = await sr_uuid(client)
    assert await restore_disk_sha(manager, client, vm.uuid, points[-1]["id"], sr) == (
        await vm.sha256()
    )


async def test_damaged_chain_forces_a_full_and_says_why(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job = await manager.create_job(job_input())
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    # A block of the stored full rots on disk; verify finds it.
    vhds = await asyncio.to_thread(lambda: list(manager.datastore.root.rglob("*.vhd")))
    assert len(vhds) == 1
    await asyncio.to_thread(flip_byte, vhds[0], 4 * 4096 + 1000)
    report = await manager.datastore.verify(vm.uuid)
    assert report.damaged, report
    await vm.write(0, b"\x02" * 512)
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    [row] = run["report"]["vms"]
    assert row["transfers"] == {"0": "full"}
    assert row["reasons"]["0"].startswith("chain damaged:"), row["reasons"]
    points = await manager.points(vm.uuid)
    sr = await sr_uuid(client)
    assert await restore_disk_sha(manager, client, vm.uuid, points[-1]["id"], sr) == (
        await vm.sha256()
    )


async def test_full_every_n_survives_merges(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job = await manager.create_job(job_input(retention=2, full_every=3))
    kinds, reasons = [], []
    for _ in range(6):
        await vm.scribble(writes=1)
        run = await manager.wait(await manager.run_job(job.id))
        assert run["status"] == "success", run
        [row] = run["report"]["vms"]
        kinds.append(row["transfers"]["0"])
        reasons.append(row["reasons"]["0"])
    # Retention 2 merges the old fulls away; the count still holds.
    assert kinds == ["full", "delta", "delta", "full", "delta", "delta"]
    assert reasons[3].startswith("full every 3 restore points reached"), reasons
