"""What an administrator scans: each backed-up VM's last backup, its age and
result against its job's recovery point objective, and each restore point
with what it is, its size, its job, and whether it was verified and checked.

The rules are pure functions (:func:`rpo_seconds`, :func:`point_verified`,
:func:`vm_result`); :class:`BackupOverview` gathers their inputs from the
datastore, the jobs and the operations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from xenkeep.errors import XenKeepError
from xenkeep.jobs.schedule import parse_schedule
from xenkeep.ops import FINISHED, OpKind

from .job import JobSpec
from .jobstore import JobRow, JobStore
from .kinds import job_target
from .runs import BackupRuns, as_run
from .storage import BackupStorage
from .verify import VerifyService

#: Runs of a job looked through for a VM's last result, and shown on its page.
RUNS_LOOKED_AT: Final = 30
#: Verifies and health checks looked through for a point's.
CHECKS_LOOKED_AT: Final = 50


def rpo_seconds(spec: JobSpec, now: float) -> float | None:
    """How old a VM's newest point of this job may be: the job's own RPO,
    else twice its schedule's interval (one missed run is tolerated, two are
    not); None for a job run by hand only. Pure."""
    if spec.rpo_hours:
        return spec.rpo_hours * 3600.0
    if not spec.schedule:
        return None
    try:
        sched = parse_schedule(spec.schedule, spec.timezone)
    except XenKeepError:
        return None
    first = sched.next_timestamp(now)
    return 2 * (sched.next_timestamp(first) - first)


def point_verified(
    point: Mapping[str, Any], vm_uuid: str, verifies: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The newest finished verify that read this point (``verifies`` newest
    first, as :meth:`VerifyService.history` gives them): ``state`` ok,
    damaged or never, and ``at`` when. Pure."""
    created = float(point.get("created") or 0)
    for v in verifies:
        if v.get("status") not in ("ok", "damaged"):
            continue
        if v.get("vm_uuid") not in (None, "", vm_uuid):
            continue
        if float(v.get("started") or 0) < created:
            continue
        damaged = any(
            d.get("vm_uuid") == vm_uuid and d.get("point_id") == point.get("id")
            for d in v.get("damaged") or []
        )
        return {"state": "damaged" if damaged else "ok", "at": v.get("finished")}
    return {"state": "never", "at": None}


def point_health(point_id: str, checks: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The newest health check of a point (``checks`` newest first): its
    ``state`` (healthy, unhealthy, running...) and why not, or None."""
    for op in checks:
        for row in (op.get("report") or {}).get("vms") or []:
            if row.get("point_id") == point_id:
                return {
                    "state": row.get("result") or op.get("status"),
                    "why": row.get("why", ""),
                    "at": op.get("finished_at"),
                    "operation_id": op.get("id"),
                }
        if (op.get("params") or {}).get("point_id") == point_id and op["status"] not in FINISHED:
            return {"state": "running", "why": "", "at": None, "operation_id": op.get("id")}
    return None


def vm_result(vm_uuid: str, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The VM's result in the newest finished run of its job (``runs``
    newest first): that run's row for the VM, or the run's own status when
    it failed before reaching the VM. Pure."""
    for run in runs:
        if run.get("status") not in FINISHED:
            continue
        for row in (run.get("report") or {}).get("vms") or []:
            if row.get("vm_uuid") == vm_uuid:
                return {
                    "status": row.get("status"),
                    "error": row.get("error") or "; ".join(row.get("warnings") or []),
                    "run_id": run.get("id"),
                    "at": run.get("finished_at"),
                }
        return {
            "status": run.get("status"),
            "error": run.get("error", ""),
            "run_id": run.get("id"),
            "at": run.get("finished_at"),
        }
    return None


class BackupOverview:
    """The job page's and the dashboard's view of the backups."""

    def __init__(
        self,
        jobs: JobStore,
        runs: BackupRuns,
        storage: BackupStorage,
        verify: VerifyService,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jobs = jobs
        self.runs = runs
        self.storage = storage
        self.verify = verify
        self._clock = clock

    async def health_checks(self, *, vm_uuid: str | None = None) -> list[dict[str, Any]]:
        """Recent health checks, newest first (of one VM's points, or all)."""
        return await self.runs.ops.find(
            kinds=[OpKind.HEALTH_CHECK.value],
            target=f"vm:{vm_uuid}" if vm_uuid else None,
            limit=CHECKS_LOOKED_AT,
        )

    async def points(self, vm_uuid: str) -> list[dict[str, Any]]:
        """A VM's restore points, oldest first, each with whether it was
        verified and the result of its newest health check."""
        points = await self.storage.points(vm_uuid)
        verifies = await self.verify.history(CHECKS_LOOKED_AT)
        checks = await self.runs.ops.find(kinds=[OpKind.HEALTH_CHECK.value], limit=CHECKS_LOOKED_AT)
        for p in points:
            p["verified"] = point_verified(p, vm_uuid, verifies)
            p["health"] = point_health(str(p["id"]), checks)
        return points

    async def vms(self, *, job_id: int | None = None) -> list[dict[str, Any]]:
        """Every backed-up VM (or those whose newest point a job made): its
        last backup and age, its last result, its RPO and whether the newest
        point is older than it."""
        if not self.storage.configured:
            return []
        now = self._clock()
        rows = {row.id: row for row in await self.jobs.jobs()}
        runs_of: dict[int, list[dict[str, Any]]] = {}
        out = []
        for vm in await self.storage.backed_up_vms():
            owner = _job_id(vm.get("job_id"))
            if job_id is not None and owner != job_id:
                continue
            row = rows.get(owner) if owner is not None else None
            if owner is not None and owner not in runs_of and row is not None:
                runs_of[owner] = await self.runs.runs(job_id=owner, limit=RUNS_LOOKED_AT)
            age = max(0.0, now - float(vm["newest"]))
            rpo = rpo_seconds(row.spec, now) if row is not None else None
            out.append(
                {
                    **vm,
                    "job": None if row is None else {"id": row.id, "name": row.spec.name},
                    "age": age,
                    "result": vm_result(vm["vm_uuid"], runs_of.get(owner, []) if owner else []),
                    "rpo": rpo,
                    "rpo_exceeded": rpo is not None and age > rpo,
                }
            )
        return sorted(out, key=lambda v: (str(v.get("name")).lower(), v["vm_uuid"]))

    async def job(self, job_id: int) -> dict[str, Any]:
        """A job's page: its settings, its run in progress, its run history,
        its RPO, and its VMs with their restore points."""
        row: JobRow = await self.jobs.job(job_id)
        now = self._clock()
        runs = [
            as_run(op)
            for op in await self.runs.ops.find(target=job_target(job_id), limit=RUNS_LOOKED_AT)
        ]
        vms = await self.vms(job_id=job_id)
        for vm in vms:
            vm["points"] = await self.points(vm["vm_uuid"])
        finished = [r for r in runs if r["status"] in FINISHED and r["kind"] == "backup"]
        try:
            pool_name = await self.runs.pools.pool_name(row.spec.pool_id)
        except XenKeepError:
            pool_name = f"{row.spec.pool_id} (not connected)"
        return {
            "job": row.as_dict(),
            "pool_name": pool_name,
            "runs": runs,
            "running_run": self.runs.running_run(job_id),
            "last_run": finished[0] if finished else None,
            "rpo": rpo_seconds(row.spec, now),
            "vms": vms,
            "rpo_exceeded": [vm["name"] or vm["vm_uuid"] for vm in vms if vm["rpo_exceeded"]],
        }


def _job_id(raw: object) -> int | None:
    try:
        return int(str(raw))
    except ValueError:
        return None
