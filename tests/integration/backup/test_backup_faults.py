"""Faults: a run fails (or retries) with a clear message, never lists an
incomplete restore point, and leaves the existing points intact."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.backup.conftest import POOL_ID, TestVm, job_input, sr_uuid, vdi_sha256
from tests.integration.backup.test_backup_runs import restore_disk_sha
from tests.support.mounts import mounted_tmpfs
from xenkeep.backup.manager import BackupManager
from xenkeep.errors import ConflictError, ValidationError
from xenkeep.repo.errors import PointNotFoundError
from xenkeep.xapi.client import XapiClient

MiB = 1 << 20


async def first_backup(manager: BackupManager, vm: TestVm) -> tuple[int, str, str]:
    job = await manager.create_job(job_input())
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    return job.id, run["report"]["vms"][0]["point_id"], await vm.sha256()


async def assert_intact(
    manager: BackupManager, client: XapiClient, vm: TestVm, expected: dict[str, str]
) -> None:
    points = await manager.points(vm.uuid)
    assert [p["id"] for p in points] == list(expected)
    sr = await sr_uuid(client)
    for pid, digest in expected.items():
        assert await restore_disk_sha(manager, client, vm.uuid, pid, sr) == digest


async def test_one_dropped_export_is_resumed(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job_id, _p, _d = await first_backup(manager, vm)
    await vm.scribble()
    await client.call(
        "sim.inject_fault", "drop_transfer", {"bytes": 300_000, "path": "/export_raw_vdi"}
    )
    run = await manager.wait(await manager.run_job(job_id))
    assert run["status"] == "success", run
    detail = await manager.run_detail(run["id"])
    # Resumed in the transfer, or exported again when the resumed stream
    # did not match: either way said in the log, and the point is right.
    assert any(
        "resumed after 1 broken" in line["message"] or "exporting the disk again" in line["message"]
        for line in detail["log"]
    ), detail["log"]
    points = await manager.points(vm.uuid)
    sr = await sr_uuid(client)
    assert await restore_disk_sha(manager, client, vm.uuid, points[-1]["id"], sr) == (
        await vm.sha256()
    )


async def test_export_dropped_for_good_fails_clearly(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job_id, point, digest = await first_backup(manager, vm)
    await vm.scribble()
    await client.call(
        "sim.inject_fault",
        "drop_transfer",
        {"bytes": 100_000, "count": 20, "path": "/export_raw_vdi"},
    )
    run = await manager.wait(await manager.run_job(job_id))
    await client.call("sim.clear_faults")
    assert run["status"] == "failed"
    [row] = run["report"]["vms"]
    assert row["status"] == "failed"
    assert "export" in row["error"] and "bytes" in row["error"], row["error"]
    await assert_intact(manager, client, vm, {point: digest})
    # The failed run left no snapshot behind; the reference stays.
    assert len(await client.call("VM.get_snapshots", vm.ref)) == 1
    # And the next run continues the chain with a delta.
    run = await manager.wait(await manager.run_job(job_id))
    assert run["status"] == "success", run
    assert run["report"]["vms"][0]["transfers"] == {"0": "delta"}


async def test_failing_snapshot(manager: BackupManager, client: XapiClient, vm: TestVm) -> None:
    job_id, point, digest = await first_backup(manager, vm)
    await client.call(
        "sim.inject_fault",
        "fail_call",
        {"method": "VM.snapshot", "error": ["SR_BACKEND_FAILURE_44", "", "no space"]},
    )
    run = await manager.wait(await manager.run_job(job_id))
    assert run["status"] == "failed"
    error = run["report"]["vms"][0]["error"]
    assert "SR_BACKEND_FAILURE_44" in error, error
    # The run's own error says it too, not only its VM row.
    assert run["error"] == f"1 of 1 VMs failed: bk-test-01: {error}", run["error"]
    assert run["report"]["error"] == run["error"]
    await assert_intact(manager, client, vm, {point: digest})


async def test_sr_full_on_restore(manager: BackupManager, client: XapiClient, vm: TestVm) -> None:
    _job, point, _digest = await first_backup(manager, vm)
    pool = (await client.call("pool.get_all"))[0]
    sr = await client.call("pool.get_default_SR", pool)
    await client.call("sim.inject_fault", "sr_full", {"sr": sr})
    run_id = await manager.restore(
        {
            "pool_id": POOL_ID,
            "vm_uuid": vm.uuid,
            "point_id": point,
            "sr_uuid": await client.call("SR.get_uuid", sr),
            "name": "should not exist",
        }
    )
    run = await manager.wait(run_id)
    await client.call("sim.clear_faults")
    assert run["status"] == "failed"
    assert "SR_FULL" in run["error"], run["error"]
    # The half-created VM was removed.
    assert await client.call("VM.get_by_name_label", "should not exist") == []


@pytest.fixture
def small_datastore(tmp_path: Path) -> Iterator[Path]:
    """A 7 MiB tmpfs: room for one small full, not for a big delta."""
    with mounted_tmpfs(tmp_path / "small", "7m") as mnt:
        yield mnt


@pytest.mark.root
async def test_datastore_full_during_a_write(
    manager: BackupManager, client: XapiClient, vm: TestVm, small_datastore: Path
) -> None:
    await manager.use_directory(str(small_datastore))
    job_id, point, digest = await first_backup(manager, vm)
    # Four new 2 MiB blocks: more than the free space.
    await vm.write(4 * MiB, vm.rng.randbytes(8 * MiB))
    run = await manager.wait(await manager.run_job(job_id))
    assert run["status"] == "failed"
    error = run["report"]["vms"][0]["error"]
    assert "backup storage is full" in error, error
    await assert_intact(manager, client, vm, {point: digest})
    # Files of the failed write are gone once the chain is next opened.
    # (The repo's SumsWriter.discard can raise ENOSPC while closing and skip
    # its own cleanup; recovery is what guarantees it.)
    await asyncio.to_thread(manager.datastore.recover, vm.uuid)
    names = await asyncio.to_thread(lambda: [p.name for p in small_datastore.rglob("*")])
    assert [n for n in names if n.endswith(".part") or ".tmp-" in n] == []


async def start_slow_run(manager: BackupManager, client: XapiClient, job_id: int) -> int:
    """A run of ``job_id`` with the export throttled, once disk 0 shows progress."""
    await client.call("sim.inject_fault", "throttle", {"bytes_per_second": 256 * 1024})
    run_id = await manager.run_job(job_id)
    for _ in range(2400):
        detail = await manager.run_detail(run_id)
        if any(t["disk_key"] == "0" and t["bytes"] > 0 for t in detail["tasks"]):
            return run_id
        await asyncio.sleep(0.05)
    pytest.fail("the export never showed progress")


async def test_cancel_a_run(manager: BackupManager, client: XapiClient, vm: TestVm) -> None:
    job_id, point, digest = await first_backup(manager, vm)
    await vm.scribble()
    run_id = await start_slow_run(manager, client, job_id)
    await manager.cancel(run_id)
    run = await manager.wait(run_id)
    await client.call("sim.clear_faults")
    assert run["status"] == "cancelled"
    await assert_intact(manager, client, vm, {point: digest})


async def test_storage_is_not_swapped_under_a_run(
    manager: BackupManager, client: XapiClient, vm: TestVm, tmp_path: Path
) -> None:
    job_id, _, _ = await first_backup(manager, vm)
    before = (await manager.storage_status())["path"]
    other = tmp_path / "other-store"
    await asyncio.to_thread(other.mkdir)
    # Enough changed data that the throttled delta is still running below.
    await vm.write(0, vm.rng.randbytes(4 * MiB))
    run_id = await start_slow_run(manager, client, job_id)
    with pytest.raises(ConflictError, match="while a backup runs"):
        await manager.use_directory(str(other))
    assert not await asyncio.to_thread(lambda: any(other.iterdir())), (
        "the refused directory was written to"
    )
    await client.call("sim.clear_faults")
    run = await manager.wait(run_id)
    assert run["status"] == "success", run
    assert (await manager.storage_status())["path"] == before
    assert len(await manager.points(vm.uuid)) == 2


async def test_daemon_stop_interrupts_a_run_cleanly(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job_id, point, digest = await first_backup(manager, vm)
    await vm.scribble()
    run_id = await start_slow_run(manager, client, job_id)
    await manager.stop()
    await client.call("sim.clear_faults")
    run = await manager.run(run_id)
    assert run["status"] == "interrupted", run
    assert [p["id"] for p in await manager.points(vm.uuid)] == [point]
    assert await vm.sha256() != digest  # the VM moved on; the point did not


async def test_a_dropped_import_is_retried(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    """Backups retry a broken export; a restore retries a broken import the
    only way the protocol allows: the whole disk again, from the start."""
    _job, point, digest = await first_backup(manager, vm)
    await client.call(
        "sim.inject_fault", "drop_transfer", {"bytes": 300_000, "path": "/import_raw_vdi"}
    )
    sr = await sr_uuid(client)
    run_id = await manager.restore(
        {"pool_id": POOL_ID, "vm_uuid": vm.uuid, "point_id": point, "sr_uuid": sr, "disk": "0"}
    )
    run = await manager.wait(run_id)
    assert run["status"] == "success", run
    [vdi] = run["report"]["new_vdis"]
    assert await vdi_sha256(client, vdi) == digest
    log = [line["message"] for line in (await manager.run_detail(run_id))["log"]]
    assert any("connection to the pool broke" in m and "importing again" in m for m in log), log


async def test_an_import_dropped_for_good_says_so(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    _job, point, _digest = await first_backup(manager, vm)
    vdis_before = set(await client.call("VDI.get_all"))
    await client.call(
        "sim.inject_fault",
        "drop_transfer",
        {"bytes": 300_000, "count": 20, "path": "/import_raw_vdi"},
    )
    sr = await sr_uuid(client)
    run = await manager.wait(
        await manager.restore(
            {"pool_id": POOL_ID, "vm_uuid": vm.uuid, "point_id": point, "sr_uuid": sr, "disk": "0"}
        )
    )
    await client.call("sim.clear_faults")
    assert run["status"] == "failed"
    # What happened, not "the pool refused".
    assert "the connection to the pool broke" in run["error"], run["error"]
    assert "3 times" in run["error"] and "refused" not in run["error"], run["error"]
    assert set(await client.call("VDI.get_all")) == vdis_before  # nothing half-restored left


async def test_bad_ids_of_a_restore_are_named_for_what_they_are(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    _job, point, _digest = await first_backup(manager, vm)
    good = {"pool_id": POOL_ID, "vm_uuid": vm.uuid, "point_id": point, "sr_uuid": "x"}
    with pytest.raises(ValidationError, match="is not a restore point id") as info:
        await manager.restore({**good, "point_id": "../../etc/passwd"})
    assert info.value.field == "point_id"
    with pytest.raises(ValidationError, match="is not a VM uuid") as info:
        await manager.restore({**good, "vm_uuid": "web-01"})
    assert info.value.field == "vm_uuid"
    with pytest.raises(PointNotFoundError, match="no restore point 20990101T000000Z-000001"):
        await manager.restore({**good, "point_id": "20990101T000000Z-000001"})
    with pytest.raises(ValidationError, match="control characters") as info:
        await manager.restore({**good, "name": "restored\r\nvm"})
    assert info.value.field == "name"
