"""What a run or a restore ends with agrees with what happened: XenKeep's own
snapshot whose destroy is blocked is still removed, a leftover makes a run
end with a warning, a cancelled run counts the bytes its disks moved, a
failed restore leaves no disk "running", a merged point reads as a full."""

from __future__ import annotations

import pytest

from tests.integration.backup.conftest import POOL_ID, TestVm, job_input, sr_uuid
from tests.integration.backup.test_backup_faults import first_backup, start_slow_run
from xenkeep.backup.const import SNAPSHOT_KEY
from xenkeep.backup.manager import BackupManager
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiFailure

MiB = 1 << 20


async def reference_snapshot(client: XapiClient, vm: TestVm) -> str:
    """The snapshot the newest restore point of ``vm`` was exported from."""
    [snap] = await client.call("VM.get_snapshots", vm.ref)
    assert SNAPSHOT_KEY in await client.call("VM.get_other_config", snap)
    return str(snap)


async def test_a_snapshot_whose_destroy_is_blocked_is_still_removed(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    """A block on XenKeep's own snapshot (put there by a tool that protects
    a VM's snapshots with it) is lifted there, so the snapshots do not pile
    up run after run."""
    job_id, _point, _digest = await first_backup(manager, vm)
    old = await reference_snapshot(client, vm)
    await client.call("VM.add_to_blocked_operations", old, "destroy", "protected")
    with pytest.raises(XapiFailure) as refused:  # the pool refuses as XAPI does
        await client.call("VM.destroy", old)
    assert refused.value.description == ["OPERATION_BLOCKED", old, "protected"]

    run = await manager.wait(await manager.run_job(job_id))
    assert run["status"] == "success", run
    assert await reference_snapshot(client, vm) != old
    assert old not in await client.call("VM.get_all")
    log = [line["message"] for line in (await manager.run_detail(run["id"]))["log"]]
    assert any("had destroy blocked" in m and "lifted" in m for m in log), log


async def test_a_run_that_leaves_a_snapshot_behind_ends_with_a_warning(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job_id, _point, _digest = await first_backup(manager, vm)
    old = await reference_snapshot(client, vm)
    await client.call(
        "sim.inject_fault",
        "fail_call",
        {"method": "VM.destroy", "error": ["OTHER_OPERATION_IN_PROGRESS", "VM", old]},
    )
    run = await manager.wait(await manager.run_job(job_id))
    await client.call("sim.clear_faults")
    assert run["status"] == "warning", run
    [row] = run["report"]["vms"]
    assert row["status"] == "warning" and row["point_id"], row
    [warning] = run["report"]["warnings"]
    assert warning.startswith("bk-test-01: the previous reference snapshot") and old in warning
    assert "stays in the pool" in warning and "OTHER_OPERATION_IN_PROGRESS" in warning
    # The run's error line says it, not "—"; the VM's row too.
    assert run["error"] == warning, run["error"]
    detail = await manager.run_detail(run["id"])
    [vm_task] = [t for t in detail["tasks"] if t["disk_key"] is None]
    assert vm_task["status"] == "warning" and "stays in the pool" in vm_task["error"]
    # The point was made: the next run is a delta and removes the leftover.
    again = await manager.wait(await manager.run_job(job_id))
    assert again["status"] == "success", again
    assert again["report"]["vms"][0]["transfers"] == {"0": "delta"}
    assert old not in await client.call("VM.get_all")


async def test_a_job_that_selects_nothing_is_not_a_success(
    manager: BackupManager, vm: TestVm
) -> None:
    job = await manager.create_job(job_input(targets="no-such-tag"))
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "warning", run
    assert "selects no VM" in run["error"], run["error"]


async def test_a_cancelled_run_counts_what_its_disks_moved(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job_id, _point, _digest = await first_backup(manager, vm)
    await vm.write(0, vm.rng.randbytes(8 * MiB))
    run_id = await start_slow_run(manager, client, job_id)
    await manager.cancel(run_id)
    run = await manager.wait(run_id)
    await client.call("sim.clear_faults")
    assert run["status"] == "cancelled"
    tasks = (await manager.run_detail(run_id))["tasks"]
    [disk] = [t for t in tasks if t["disk_key"] == "0"]
    [vm_row] = [t for t in tasks if t["disk_key"] is None]
    assert disk["status"] == "cancelled" and disk["bytes"] > 0, disk
    # The run, its report and its VM agree with the disk.
    assert run["bytes"] == disk["bytes"] == vm_row["bytes"], (run["bytes"], disk, vm_row)
    assert run["report"]["bytes"] == disk["bytes"], run["report"]
    assert run["report"]["vms"][0]["bytes"] == disk["bytes"]


async def test_a_failed_restore_leaves_no_disk_running(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    _job, point, _digest = await first_backup(manager, vm)
    await client.call(
        "sim.inject_fault", "fail_call", {"method": "VDI.create", "error": ["SR_FULL", "1", "0"]}
    )
    run = await manager.wait(
        await manager.restore(
            {
                "pool_id": POOL_ID,
                "vm_uuid": vm.uuid,
                "point_id": point,
                "sr_uuid": await sr_uuid(client),
            }
        )
    )
    await client.call("sim.clear_faults")
    assert run["status"] == "failed" and "SR_FULL" in run["error"], run
    tasks = (await manager.run_detail(run["id"]))["tasks"]
    assert tasks, run
    for task in tasks:
        assert task["status"] == "failed", task
        assert "SR_FULL" in task["error"], task


async def test_after_merges_the_oldest_point_is_a_full_taken_as_a_delta(
    manager: BackupManager, vm: TestVm
) -> None:
    job = await manager.create_job(job_input(retention=2))
    for _ in range(3):
        run = await manager.wait(await manager.run_job(job.id))
        assert run["status"] == "success", run
        await vm.scribble()
    oldest, newest = await manager.points(vm.uuid)
    # The oldest was taken as a delta and merged into the full: it is one now.
    assert oldest["type"] == "full", oldest
    assert [(d["type"], d["transfer"]) for d in oldest["disks"]] == [("full", "delta")]
    assert newest["type"] == "delta" and newest["disks"][0]["transfer"] == "delta"
    assert oldest["size"] > newest["size"] > 0
    assert oldest["job_name"] == "test job" and oldest["job_id"] == str(job.id)
