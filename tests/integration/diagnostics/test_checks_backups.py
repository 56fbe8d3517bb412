"""The backup checks in their ok and failing states: the last verify, failed
runs of each kind of job, and jobs overdue for their schedule (RPO)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.diagnostics.conftest import Diag
from xapisim import RunningSimulator
from xenkeep.diagnostics import CheckStatus
from xenkeep.diagnostics.checks import default_checks
from xenkeep.diagnostics.checks.backups import checks_for, overdue_since
from xenkeep.diagnostics.sources import run_kinds
from xenkeep.ops import OpKind
from xenkeep.web import keys

OK, WARNING, FAILURE = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.FAILURE
DAY = 86400.0


async def finished_op(
    diag: Diag, kind: str, target: str, status: str, report: dict[str, object] | None = None
) -> int:
    """An operation of ``kind`` that ended with ``status``, as the model stores it."""
    store = keys.operations(diag.server.app).store
    op_id = await store.create(kind, target=target, title=target, trigger="test")
    await store.update(
        op_id,
        status=status,
        started_at=diag.service.sources.clock(),
        finished_at=diag.service.sources.clock(),
        error="" if status == "success" else "SR_FULL on sr-1",
        report=dict(report or {}),
    )
    return op_id


async def test_the_last_verify(diag: Diag, tmp_path: Path) -> None:
    assert (await diag.one("backup.verify")).value == "no backup storage, nothing to verify"
    store = tmp_path / "store"
    await asyncio.to_thread(store.mkdir)
    await keys.backup(diag.server.app).use_directory(str(store))
    r = await diag.one("backup.verify")
    assert r.status is WARNING and "never verified" in r.value and "Verify now" in r.remedy
    await finished_op(diag, "verify", "datastore", "success", {"status": "ok", "points": 3})
    r = await diag.one("backup.verify")
    assert r.status is OK and "no damage in 3 restore point(s)" in r.value
    later = diag.service.sources.clock() + 20 * DAY
    r = await diag.one("backup.verify", clock=lambda: later)
    assert r.status is WARNING and "old" in r.remedy
    await finished_op(
        diag, "verify", "datastore", "failed", {"status": "damaged", "damaged": [{"point_id": "p"}]}
    )
    r = await diag.one("backup.verify")
    assert r.status is FAILURE and "1 damaged restore point" in r.value


async def test_failed_runs_of_each_kind_of_job(diag: Diag) -> None:
    # One check per kind of run, taken from the operation kinds.
    ids = [c.id for c in default_checks()]
    assert [f"runs.{k.value}" for k in run_kinds()] == [i for i in ids if i.startswith("runs.")]
    assert [c.id for c in checks_for([OpKind.BACKUP, OpKind.RESTORE])][1:3] == [
        "runs.backup",
        "runs.restore",
    ]
    assert (await diag.one("runs.backup")).status is OK
    await finished_op(diag, "backup", "backup-job:1", "success")
    await finished_op(diag, "backup", "backup-job:1", "failed")
    r = await diag.one("runs.backup")
    assert r.status is FAILURE and "SR_FULL on sr-1" in r.value and "1 failed" in r.value
    await finished_op(diag, "backup", "backup-job:1", "success")
    r = await diag.one("runs.backup")
    assert r.status is WARNING and "later runs succeeded" in r.value
    # A week later the failure is history.
    week = diag.service.sources.clock() + 8 * DAY
    assert (await diag.one("runs.backup", clock=lambda: week)).status is OK


def test_overdue_is_two_missed_slots() -> None:
    daily = "0 3 * * *"
    since = 1_700_000_000.0  # 2023-11-14 22:13 UTC
    assert overdue_since(daily, "UTC", since, since + DAY) is None
    assert overdue_since(daily, "UTC", since, since + 2 * DAY) is not None


async def test_jobs_overdue(diag: Diag, sim: RunningSimulator) -> None:
    pool = await keys.pools(diag.server.app).add(sim.url, "root", "demo")
    backup = keys.backup(diag.server.app)
    store = Path(diag.server.app[keys.SETTINGS].state_dir) / "store"
    await asyncio.to_thread(store.mkdir)
    await backup.use_directory(str(store))
    job = await backup.create_job(
        {
            "name": "nightly",
            "selector": "tag",
            "targets": ["xk-test"],
            "pool_id": str(pool.id),
            "schedule": "0 3 * * *",
        }
    )
    r = await diag.one("backup.overdue")
    assert r.status is OK and "1 scheduled job(s), none overdue" in r.value
    three_days = diag.service.sources.clock() + 3 * DAY
    r = await diag.one("backup.overdue", clock=lambda: three_days)
    assert r.status is FAILURE and "nightly (never succeeded" in r.value
    await finished_op(diag, "backup", f"backup-job:{job.id}", "success")
    one_day = diag.service.sources.clock() + DAY
    assert (await diag.one("backup.overdue", clock=lambda: one_day)).status is OK
    r = await diag.one("backup.overdue", clock=lambda: three_days)
    assert r.status is FAILURE and "newest good run" in r.value
