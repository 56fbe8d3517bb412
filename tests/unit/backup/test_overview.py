"""The rules of what an administrator scans, on synthetic data: the RPO of
a job, whether a point was verified, its last health check, a VM's result."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from xenkeep.backup.job import validate_job
from xenkeep.backup.overview import point_health, point_verified, rpo_seconds, vm_result

UUID = "6a0c3c1e-1f3a-4f0c-9d8e-1a2b3c4d5e6f"
OTHER = "0b0c3c1e-1f3a-4f0c-9d8e-1a2b3c4d5e6f"


def job(**over: object) -> dict[str, object]:
    return {"name": "j", "selector": "pool", "pool_id": "1", **over}


def test_the_rpo_is_the_jobs_own_or_twice_its_schedules_interval() -> None:
    now = dt.datetime(2026, 3, 10, 12, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    assert rpo_seconds(validate_job(job(rpo_hours=30)), now) == 30 * 3600
    daily = validate_job(job(schedule="0 2 * * *", timezone="Europe/Paris"))
    assert rpo_seconds(daily, now) == 2 * 86400
    hourly = validate_job(job(schedule="15 * * * *"))
    assert rpo_seconds(hourly, now) == 2 * 3600
    weekly = validate_job(job(schedule="0 4 * * 0"))
    assert rpo_seconds(weekly, now) == 14 * 86400
    assert rpo_seconds(validate_job(job()), now) is None  # manual runs only


def test_a_point_is_verified_by_the_newest_verify_that_read_it() -> None:
    point = {"id": "p2", "created": 100.0}
    verifies = [
        {"status": "running", "started": 400.0},  # not finished: no word yet
        {"status": "ok", "vm_uuid": OTHER, "started": 300.0, "finished": 310.0},
        {
            "status": "damaged",
            "vm_uuid": None,
            "started": 200.0,
            "finished": 250.0,
            "damaged": [{"vm_uuid": UUID, "point_id": "p2"}],
        },
        {"status": "ok", "vm_uuid": UUID, "started": 150.0, "finished": 160.0},
    ]
    assert point_verified(point, UUID, verifies) == {"state": "damaged", "at": 250.0}
    assert point_verified(point, UUID, verifies[3:]) == {"state": "ok", "at": 160.0}
    # A verify that started before the point existed did not read it.
    assert point_verified({"id": "p3", "created": 500.0}, UUID, verifies)["state"] == "never"


def test_a_points_health_is_its_newest_check() -> None:
    checks = [
        {"id": 9, "status": "running", "params": {"point_id": "p3"}, "report": {}},
        {
            "id": 8,
            "status": "failed",
            "finished_at": 80.0,
            "report": {"vms": [{"point_id": "p2", "result": "unhealthy", "why": "no agent"}]},
        },
        {
            "id": 7,
            "status": "success",
            "finished_at": 70.0,
            "report": {"vms": [{"point_id": "p2", "result": "healthy", "why": "Debian"}]},
        },
    ]
    assert point_health("p2", checks) == {
        "state": "unhealthy",
        "why": "no agent",
        "at": 80.0,
        "operation_id": 8,
    }
    assert point_health("p3", checks)["state"] == "running"  # type: ignore[index]
    assert point_health("p1", checks) is None


def test_a_vms_result_is_its_row_in_the_newest_finished_run() -> None:
    runs = [
        {"id": 5, "status": "running", "report": {}},
        {
            "id": 4,
            "status": "warning",
            "finished_at": 40.0,
            "report": {"vms": [{"vm_uuid": UUID, "status": "warning", "warnings": ["left"]}]},
        },
        {"id": 3, "status": "success", "report": {"vms": [{"vm_uuid": UUID, "status": "success"}]}},
    ]
    assert vm_result(UUID, runs) == {
        "status": "warning",
        "error": "left",
        "run_id": 4,
        "at": 40.0,
    }
    # A run that failed before it reached the VM is the VM's result too.
    failed = [{"id": 6, "status": "failed", "error": "pool gone", "report": {"vms": []}}, *runs]
    assert vm_result(UUID, failed)["status"] == "failed"  # type: ignore[index]
    assert vm_result(UUID, []) is None
