"""A run that dies while the pool snapshots leaves a snapshot XenKeep never
tagged; the next run, and the daemon's start, find it by its name and remove
it, while the reference snapshot of the newest point stays."""

from __future__ import annotations

import asyncio

from tests.integration.backup.conftest import POOL_ID, MiB, TestVm, sr_uuid, vdi_sha256
from tests.integration.backup.test_backup_faults import first_backup
from xenkeep.backup.const import RESTORING_KEY
from xenkeep.backup.manager import BackupManager
from xenkeep.xapi.client import XapiClient


async def orphan_a_snapshot(manager: BackupManager, client: XapiClient, vm: TestVm) -> int:
    """Cancel a run while ``VM.snapshot`` runs in the pool (the call is cut
    as a killed daemon cuts it); wait until the pool has made the snapshot."""
    job_id, _point, _digest = await first_backup(manager, vm)
    assert len(await client.call("VM.get_snapshots", vm.ref)) == 1
    await client.call("sim.inject_fault", "delay_call", {"method": "VM.snapshot", "seconds": 1.0})
    run_id = await manager.run_job(job_id)
    while not any(
        "snapshotting as" in line["message"] for line in (await manager.run_detail(run_id))["log"]
    ):
        await asyncio.sleep(0.01)
    await manager.cancel(run_id)
    assert (await manager.wait(run_id))["status"] == "cancelled"
    # The pool finishes the call nobody waits for any more.
    while len(await client.call("VM.get_snapshots", vm.ref)) < 2:
        await asyncio.sleep(0.05)
    await client.call("sim.clear_faults")
    return job_id


async def test_the_next_run_removes_a_snapshot_its_dead_run_left(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job_id = await orphan_a_snapshot(manager, client, vm)
    run = await manager.wait(await manager.run_job(job_id))
    assert run["status"] == "success", run
    # Only the new reference is left, and the delta chain went on.
    assert len(await client.call("VM.get_snapshots", vm.ref)) == 1
    assert run["report"]["vms"][0]["transfers"] == {"0": "delta"}
    log = [line["message"] for line in (await manager.run_detail(run["id"]))["log"]]
    assert any("left by a run that died" in m for m in log), log


async def test_the_start_of_the_daemon_removes_it(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job_id = await orphan_a_snapshot(manager, client, vm)
    await manager.schedule_tick()  # the first look of the scheduler after a start
    [kept] = await client.call("VM.get_snapshots", vm.ref)
    # The one kept is the reference the newest point was exported from: the
    # next run is a delta on it, and then replaces it.
    run = await manager.wait(await manager.run_job(job_id))
    assert run["status"] == "success", run
    assert run["report"]["vms"][0]["transfers"] == {"0": "delta"}
    assert kept not in await client.call("VM.get_snapshots", vm.ref)
    assert len(await client.call("VM.get_snapshots", vm.ref)) == 1


async def test_what_a_dead_restore_left_is_removed_at_start(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    """A restore marks the VM and VDIs it creates until it succeeds; a
    restore killed midway leaves them marked, and the start removes them."""
    _job, point, digest = await first_backup(manager, vm)
    sr = await sr_uuid(client)
    done = await manager.wait(
        await manager.restore(
            {"pool_id": POOL_ID, "vm_uuid": vm.uuid, "point_id": point, "sr_uuid": sr}
        )
    )
    assert done["status"] == "success", done
    kept_vm = done["report"]["new_vm"]
    assert RESTORING_KEY not in await client.call("VM.get_other_config", kept_vm)
    before_vms = set(await client.call("VM.get_all"))
    before_vdis = set(await client.call("VDI.get_all"))
    # What a restore (operation 9999, not running) killed after its disk left.
    sr_ref = await client.call("SR.get_by_uuid", sr)
    vdi = await client.call(
        "VDI.create",
        {
            "SR": sr_ref,
            "virtual_size": str(MiB),
            "type": "user",
            "name_label": "half restored",
            "sharable": False,
            "read_only": False,
            "other_config": {RESTORING_KEY: "9999"},
        },
    )
    half = await client.call("VM.create", {**await client.call("VM.get_record", kept_vm)})
    await client.call("VM.add_to_other_config", half, RESTORING_KEY, "9999")
    await manager.schedule_tick()
    assert set(await client.call("VM.get_all")) == before_vms
    assert set(await client.call("VDI.get_all")) == before_vdis
    assert vdi not in before_vdis and half not in before_vms
    # The restore that finished keeps its VM and disk.
    [vbd] = await client.call("VM.get_VBDs", kept_vm)
    assert await vdi_sha256(client, await client.call("VBD.get_VDI", vbd)) == digest
