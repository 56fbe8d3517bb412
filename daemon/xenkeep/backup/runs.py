"""Backup runs and restores: started as operations, reported, mailed.

A run of a job and a restore of a point are operations of kinds
:data:`~.kinds.BACKUP` and :data:`~.kinds.RESTORE`. This module gives each
its work (a :class:`~.runner.BackupRun` or :class:`~.restore.RestoreRun`
inside), its claims (one run per job; both read the storage) and its report,
and shows operations in the words of backups (runs with a job, VMs, disks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from xenkeep.errors import ConflictError, NotFoundError, ValidationError, XenKeepError
from xenkeep.jobs.conclude import finish_run
from xenkeep.jobs.report import BACKED_UP
from xenkeep.jobs.scheduling import JobKind, tick_jobs
from xenkeep.jobs.snapshots import SweepOnce, find_orphans, sweep, sweep_marked
from xenkeep.mail import MailSettings
from xenkeep.ops import OperationContext, Operations, OpKind, TargetFilter
from xenkeep.ops.claims import ClaimConflictError
from xenkeep.ops.manager import Outcome
from xenkeep.pools.access import PoolAccess
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiFailure

from .const import RESTORING_KEY, SNAPSHOT_KEY, SNAPSHOT_MARKER, RunStatus
from .health import CheckTarget, HealthChecks, sweep_health_checks
from .jobstore import JobRow, JobStore
from .kinds import BACKUP, RESTORE, USES_STORAGE, BackupStage, job_target, one_run_per_job
from .report import restore_log_line
from .restore import RestoreRequest, RestoreRun
from .runner import BackupRun, describe_error
from .storage import BackupStorage

log = logging.getLogger(__name__)

_JOB_PREFIX = "backup-job:"
RUN_KINDS = (OpKind.BACKUP.value, OpKind.RESTORE.value)


def as_run(op: dict[str, Any]) -> dict[str, Any]:
    """An operation in the words of the backup pages and API: a run with its job.

    ``job_id`` and ``job_name`` come from the target and the title; a task
    names its VM and disk (``vm_uuid``, ``vm_name``, ``disk_key``).
    """
    target = str(op.get("target", ""))
    job_id = int(target[len(_JOB_PREFIX) :]) if target.startswith(_JOB_PREFIX) else None
    run = {**op, "job_id": job_id, "job_name": op.get("title", "")}
    if "tasks" in op:
        run["tasks"] = [
            {**t, "vm_uuid": t["subject"], "vm_name": t["name"], "disk_key": t["part"]}
            for t in op["tasks"]
        ]
    return run


class BackupRuns:
    """Start runs of jobs (now or on schedule) and restores; read them back."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        pools: PoolAccess,
        storage: BackupStorage,
        ops: Operations,
        mail: MailSettings,
        appliance_name: Callable[[], Awaitable[str]],
        health: HealthChecks | None = None,
    ) -> None:
        self.jobs = jobs
        #: Starts the health check a job asks for after each run.
        self.health = health
        self.pools = pools
        self.storage = storage
        self.ops = ops
        self.mail = mail
        self._appliance_name = appliance_name
        self._sweep = SweepOnce(pools, self._sweep_pool, what="leftover snapshot(s)")

    # ------------------------------------------------------------------ runs

    def running_backups(self) -> frozenset[int]:
        """Ids of every backup run in progress (their snapshots are theirs)."""
        return frozenset(self.ops.running(kind=OpKind.BACKUP))

    def running_restores(self) -> frozenset[int]:
        """Ids of every restore in progress, health checks' included (what
        they create is theirs)."""
        checks = self.health.running() if self.health is not None else frozenset()
        return frozenset(self.ops.running(kind=OpKind.RESTORE)) | checks

    def running_run(self, job_id: int) -> int | None:
        """The id of the job's run in progress, if any."""
        ids = self.ops.running(kind=OpKind.BACKUP, target=job_target(job_id))
        return ids[0] if ids else None

    async def run_job(self, job_id: int, *, trigger: str = "manual") -> int:
        """Start a run of a job now; its id. ConflictError if one is running."""
        row = await self.jobs.job(job_id)
        _ = self.storage.datastore

        def refusal(exc: ClaimConflictError) -> XenKeepError:
            if exc.claim.key == job_target(job_id):
                return ConflictError(
                    f"job {row.spec.name} is already running (run {exc.holder.id})"
                )
            return exc

        async def work(ctx: OperationContext) -> Outcome:
            return await self._backup(ctx, row)

        return await self.ops.start(
            BACKUP,
            work,
            target=job_target(job_id),
            title=row.spec.name,
            action=f"run job {row.spec.name}",
            trigger=trigger,
            claims=[one_run_per_job(job_id), USES_STORAGE],
            refusal=refusal,
        )

    async def _backup(self, ctx: OperationContext, row: JobRow) -> Outcome:
        started = time.time()
        pool_name = row.spec.pool_id
        error = ""
        cancelled = False
        runner: BackupRun | None = None
        try:
            await ctx.stage(BackupStage.SELECT)
            pool_name = await self.pools.pool_name(row.spec.pool_id)
            client = await self.pools.client(row.spec.pool_id)
            await ctx.log(f"job {row.spec.name} on pool {pool_name} ({row.spec.pool_id})")
            runner = BackupRun(
                ctx=ctx,
                job_id=row.id,
                spec=row.spec,
                client=client,
                datastore=self.storage.datastore,
                running=self.running_backups,
            )
            await ctx.stage(BackupStage.TRANSFER)
            await runner.execute()
        except asyncio.CancelledError:
            cancelled = True
        except Exception as exc:
            error = describe_error(exc)
            log.exception("run %s failed", ctx.id)
            await ctx.log(f"run failed: {error}", level="error")
        await asyncio.shield(ctx.stage(BackupStage.REPORT))
        results = [r.as_dict() for r in runner.results] if runner is not None else []
        own = list(runner.warnings) if runner is not None else []
        health_id = None
        if not cancelled and row.spec.health_check_sr:
            health_id = await asyncio.shield(self._health_check(ctx, row, results, own))
        return await finish_run(
            ctx,
            vms=results,
            error=error,
            cancelled=cancelled,
            stopping=self.ops.stopping,
            mail=self.mail,
            warnings=own,
            extra={"health_check_id": health_id},
            job_name=row.spec.name,
            pool_name=pool_name,
            appliance=await asyncio.shield(self._appliance_name()),
            started=started,
        )

    async def _health_check(
        self,
        ctx: OperationContext,
        row: JobRow,
        results: list[dict[str, Any]],
        warnings: list[str],
    ) -> int | None:
        """Start the job's health check of the points this run made; its id.
        One that cannot start is a warning of the run (the points are made)."""
        targets = [
            CheckTarget(str(v["vm_uuid"]), str(v["vm_name"]), str(v["point_id"]))
            for v in results
            if v.get("status") in BACKED_UP and v.get("point_id")
        ]
        if not targets or self.health is None:
            return None
        try:
            op_id = await self.health.start(
                targets,
                pool_id=row.spec.pool_id,
                sr_uuid=row.spec.health_check_sr,
                guest_wait=row.spec.health_check_timeout,
                trigger=f"after run {ctx.id}",
            )
        except XenKeepError as exc:
            warning = f"the health check could not start: {describe_error(exc)}"
            warnings.append(warning)
            await ctx.log(warning, level="warning")
            return None
        await ctx.log(f"health check of {len(targets)} restore point(s) started: operation {op_id}")
        return op_id

    # ------------------------------------------------------ orphan snapshots

    async def sweep_tick(self, now: float) -> float:
        """Once per pool after the daemon starts: destroy the snapshots of
        runs, the VMs and VDIs of restores and health checks that died (see
        :mod:`xenkeep.jobs.snapshots`)."""
        return await self._sweep.tick(now)

    async def _sweep_pool(self, client: XapiClient) -> list[str]:
        swept = await sweep(
            client,
            running=self.running_backups,
            references=self._reference_snapshot,
            marker=SNAPSHOT_MARKER,
            kept_key=SNAPSHOT_KEY,
        )
        removed = swept.removed + await sweep_marked(
            client, key=RESTORING_KEY, running=self.running_restores, what="restore"
        )
        if self.health is not None:
            removed += await sweep_health_checks(client, running=self.health.running)
        return removed

    async def leftover_snapshots(self, pool_id: str) -> list[str]:
        """The names of the snapshots dead runs left in a pool, not removed
        yet (the sweep removes them at the next start and before each VM's
        next snapshot); the diagnostics show them."""
        client = await self.pools.client(pool_id)
        found = await find_orphans(
            client,
            running=self.running_backups,
            references=self._reference_snapshot,
            marker=SNAPSHOT_MARKER,
            kept_key=SNAPSHOT_KEY,
        )
        return sorted(str(rec.get("name_label", ref)) for ref, rec in found.items())

    async def _reference_snapshot(self, vm_uuid: str) -> str | None:
        """The snapshot uuid the VM's newest restore point was exported from."""
        if not self.storage.configured:
            return None
        points = await asyncio.to_thread(self.storage.datastore.points, vm_uuid)
        if not points:
            return None
        return str(points[-1].vm.get("xenkeep", {}).get("snapshot_uuid", "")) or None

    # --------------------------------------------------------------- restore

    async def restore(self, data: Mapping[str, Any]) -> int:
        """Start a restore; its operation id."""
        req = RestoreRequest.from_input(data)
        ds = self.storage.datastore
        # Both ids were checked by from_input: only "no such point" is left.
        point = await asyncio.to_thread(lambda: ds.vmdir(req.vm_uuid).load_point(req.point_id))
        if req.disk is not None:
            point.disk(req.disk)
        client = await self.pools.client(req.pool_id)
        await self._check_sr(client, req)

        async def work(ctx: OperationContext) -> Outcome:
            runner = RestoreRun(ctx=ctx, request=req, client=client, datastore=ds)
            try:
                report = await runner.execute()
            except asyncio.CancelledError:
                return Outcome(
                    status=RunStatus.CANCELLED, error="cancelled; nothing restored was kept"
                )
            except Exception as exc:
                error = describe_error(exc)
                await ctx.log(f"restore failed: {error}", level="error")
                return Outcome(status=RunStatus.FAILED, error=error)
            await ctx.log(restore_log_line(report))
            if report.get("damage"):
                # What could be read was restored and kept, at the
                # administrator's request; the restore is still not whole.
                error = str(report["damage_summary"])
                await ctx.log(error, level="error")
                return Outcome(report=report, status=RunStatus.FAILED, error=error)
            return Outcome(report=report)

        name = point.vm.get("name_label", req.vm_uuid)
        return await self.ops.start(
            RESTORE,
            work,
            target=f"vm:{req.vm_uuid}",
            title=f"restore {name}",
            action=f"restore {name}",
            params=req.as_dict(),
            claims=[USES_STORAGE],
        )

    async def _check_sr(self, client: XapiClient, req: RestoreRequest) -> None:
        """Refuse, before any run exists, an SR the pool does not have or
        that holds no VM disks (an ISO library)."""
        try:
            sr = await client.call("SR.get_by_uuid", req.sr_uuid)
            record = await client.call("SR.get_record", sr)
        except XapiFailure as exc:
            if exc.xapi_code not in ("UUID_INVALID", "HANDLE_INVALID"):
                raise
            pool = await self.pools.pool_name(req.pool_id)
            raise ValidationError(
                f"pool {pool} has no SR {req.sr_uuid}",
                field="sr_uuid",
                hint="`xenkeep pools` lists each pool's SRs with their free space",
            ) from None
        if record.get("content_type") == "iso" or record.get("type") in ("iso", "udev"):
            raise ValidationError(
                f"SR {record.get('name_label') or req.sr_uuid} holds no VM disks "
                f"({record.get('type')})",
                field="sr_uuid",
            )

    # ------------------------------------------------------------------ read

    async def runs(
        self, *, job_id: int | None = None, only: TargetFilter | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Recent runs and restores, newest first (``only``: on the targets it allows)."""
        target = job_target(job_id) if job_id is not None else None
        ops = await self.ops.find(kinds=RUN_KINDS, target=target, only=only, limit=limit)
        return [as_run(op) for op in ops]

    async def run(self, run_id: int) -> dict[str, Any]:
        """One run or restore (NotFoundError for any other kind of operation)."""
        return as_run(await self._run_op(run_id))

    async def _run_op(self, run_id: int) -> dict[str, Any]:
        op = await self.ops.get(run_id)
        if op["kind"] not in RUN_KINDS:
            raise NotFoundError(f"no run {run_id}")
        return op

    async def detail(self, run_id: int, *, log_after: int = 0) -> dict[str, Any]:
        """A run with its tasks (live progress) and log lines."""
        await self._run_op(run_id)
        return as_run(await self.ops.detail(run_id, log_after=log_after))

    # ------------------------------------------------------------- scheduler

    async def schedule_tick(self, now: float) -> float:
        """Start every due job; the seconds until the next look."""

        async def set_state(job_id: int, slot: float | None, next_run: float) -> None:
            await self.jobs.set_schedule_state(job_id, last_slot=slot, next_run=next_run)

        async def start(job_id: int, trigger: str) -> int:
            return await self.run_job(job_id, trigger=trigger)

        kind = JobKind(
            noun="job",
            running=lambda job_id: self.running_run(job_id) is not None,
            start=start,
            set_state=set_state,
            note=lambda op_id, line: self.ops.store.log(op_id, line),
        )
        return await tick_jobs(await self.jobs.jobs(), now, kind)
