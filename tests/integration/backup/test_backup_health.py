"""Health checks against the simulator: a job's run checks the points it
made (restored without networks, started, its guest seen, removed), the
point says healthy or why not, and nothing of the check stays in the pool,
even when the original VM blocks ``destroy``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.backup.conftest import POOL_ID, TestVm, job_input, make_vm, sr_uuid
from xenkeep.backup.health import HEALTH_CHECK_KEY
from xenkeep.backup.manager import BackupManager
from xenkeep.errors import XenKeepError
from xenkeep.xapi.client import XapiClient


async def check_vms(client: XapiClient) -> list[str]:
    """Names of the VMs health checks made that are still in the pool."""
    return sorted(
        str(rec["name_label"])
        for rec in (await client.call("VM.get_all_records")).values()
        if HEALTH_CHECK_KEY in (rec.get("other_config") or {})
    )


async def finished(manager: BackupManager, op_id: int) -> dict[str, Any]:
    op = await manager.ops.wait(op_id)
    return await manager.ops.detail(int(op["id"]))


async def test_a_run_checks_the_health_of_its_points(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    # The original is protected: the check's copy inherits that, and is still removed.
    await client.call("VM.add_to_blocked_operations", vm.ref, "destroy", "production")
    sr = await sr_uuid(client)
    job = await manager.create_job(job_input(health_check_sr=sr, health_check_timeout=60))
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    check_id = run["report"]["health_check_id"]
    assert check_id, run["report"]
    check = await finished(manager, check_id)
    assert check["kind"] == "health-check" and check["status"] == "success", check
    [row] = check["report"]["vms"]
    point = run["report"]["vms"][0]["point_id"]
    assert (row["point_id"], row["result"]) == (point, "healthy"), row
    assert "Debian GNU/Linux" in row["why"] and "PV drivers" in row["why"], row
    assert await check_vms(client) == []
    # Without networks: a second copy of a running server takes no address.
    log = [line["message"] for line in check["log"]]
    assert any("started; waiting up to 60 s" in m for m in log), log
    # The point says it, and the job's page too.
    [p] = await manager.points(vm.uuid)
    assert p["health"]["state"] == "healthy" and p["health"]["operation_id"] == check_id
    page = await manager.job_overview(job.id)
    assert page["vms"][0]["points"][0]["health"]["state"] == "healthy"


async def test_a_guest_that_never_reports_is_unhealthy(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    silent = await make_vm(client, vm.sim, "bk-no-agent", seed=9)
    await client.call("VM.add_to_other_config", silent.ref, "xapisim-guest-agent", "none")
    job = await manager.create_job(job_input())
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    points = {v["vm_name"]: v["point_id"] for v in run["report"]["vms"]}
    sr = await sr_uuid(client)
    op_id = await manager.health_check(
        silent.uuid,
        points["bk-no-agent"],
        {"pool_id": POOL_ID, "sr_uuid": sr, "health_check_timeout": "10"},
    )
    check = await finished(manager, op_id)
    assert check["status"] == "failed", check
    [row] = check["report"]["vms"]
    assert row["result"] == "unhealthy"
    assert "did not report within 10 s" in row["why"], row
    assert check["error"].startswith("1 of 1 unhealthy: bk-no-agent: its guest did not report")
    assert await check_vms(client) == []
    [p] = await manager.points(silent.uuid)
    assert p["health"]["state"] == "unhealthy" and "did not report" in p["health"]["why"]

    # A VM the pool cannot start is unhealthy, with the pool's words.
    await client.call(
        "sim.inject_fault", "fail_call", {"method": "VM.start", "error": ["NO_HOSTS_AVAILABLE"]}
    )
    op_id = await manager.health_check(
        vm.uuid, points["bk-test-01"], {"pool_id": POOL_ID, "sr_uuid": sr}
    )
    check = await finished(manager, op_id)
    await client.call("sim.clear_faults")
    assert check["status"] == "failed"
    assert "could not start it" in check["report"]["vms"][0]["why"]
    assert "NO_HOSTS_AVAILABLE" in check["report"]["vms"][0]["why"]
    assert await check_vms(client) == []


async def test_bad_input_starts_nothing(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job = await manager.create_job(job_input())
    run = await manager.wait(await manager.run_job(job.id))
    point = run["report"]["vms"][0]["point_id"]
    before = await manager.ops.find(limit=100)
    sr = await sr_uuid(client)
    bad = [
        ({"pool_id": POOL_ID, "sr_uuid": "00000000-0000-4000-8000-000000000000"}, "has no SR"),
        ({"pool_id": POOL_ID, "sr_uuid": sr, "health_check_timeout": "5"}, "between 10"),
        ({"pool_id": "", "sr_uuid": sr}, "choose the SR"),
    ]
    for data, words in bad:
        with pytest.raises(XenKeepError, match=words):
            await manager.health_check(vm.uuid, point, data)
    with pytest.raises(XenKeepError, match="no restore point"):
        await manager.health_check(
            vm.uuid, "20990101T000000Z-000099", {"pool_id": POOL_ID, "sr_uuid": sr}
        )
    # A job whose health check SR is not in its pool is refused when saved.
    with pytest.raises(XenKeepError, match="has no SR"):
        await manager.create_job(
            job_input(name="x", health_check_sr="00000000-0000-4000-8000-000000000000")
        )
    assert await manager.ops.find(limit=100) == before
