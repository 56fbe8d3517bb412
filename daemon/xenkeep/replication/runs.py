"""Replication runs: started as operations (now or on schedule), reported,
mailed in the backups' report format; and the sweep, once per pool after the
daemon starts, of what runs that died left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from xenkeep.errors import ConflictError, NotFoundError, XenKeepError
from xenkeep.jobs.conclude import finish_run
from xenkeep.jobs.scheduling import JobKind, tick_jobs
from xenkeep.jobs.snapshots import SweepOnce, sweep, sweep_marked
from xenkeep.mail import MailSettings
from xenkeep.ops import OperationContext, Operations, OpKind, TargetFilter
from xenkeep.ops.claims import ClaimConflictError
from xenkeep.ops.manager import Outcome
from xenkeep.pools.access import PoolAccess
from xenkeep.xapi.client import XapiClient

from .const import CREATING_KEY, MARKER, REFERENCE_KEY
from .kinds import (
    JOB_PREFIX,
    REPLICATION,
    ReplicationStage,
    describe_error,
    job_target,
    one_change_per_replica,
    one_run_per_job,
)
from .runner import ReplicationRun
from .store import JobRow, ReplicationStore

log = logging.getLogger(__name__)

#: The operation kinds of the domain (runs, starts, failbacks).
KINDS: Final = (
    OpKind.REPLICATION.value,
    OpKind.REPLICA_START.value,
    OpKind.FAILBACK.value,
)


def job_of(op: dict[str, Any]) -> int | None:
    """The job id of a run's operation, from its target."""
    target = str(op.get("target", ""))
    return int(target[len(JOB_PREFIX) :]) if target.startswith(JOB_PREFIX) else None


class ReplicationRuns:
    """Start runs of jobs (now or on schedule); read them back."""

    def __init__(
        self,
        *,
        store: ReplicationStore,
        pools: PoolAccess,
        ops: Operations,
        mail: MailSettings,
        appliance_name: Callable[[], Awaitable[str]],
    ) -> None:
        self.store = store
        self.pools = pools
        self.ops = ops
        self.mail = mail
        self._appliance_name = appliance_name
        self._sweep = SweepOnce(pools, self._sweep_pool, what="replication leftover(s)")

    def running_operations(self) -> frozenset[int]:
        """Ids of every operation running now (a marked snapshot of one is not an orphan)."""
        return frozenset(self.ops.running())

    def running_run(self, job_id: int) -> int | None:
        """The id of the job's run in progress, if any."""
        ids = self.ops.running(kind=OpKind.REPLICATION, target=job_target(job_id))
        return ids[0] if ids else None

    async def run_job(self, job_id: int, *, trigger: str = "manual") -> int:
        """Start a run of a job now; its operation id. ConflictError if one is running."""
        row = await self.store.job(job_id)
        replica_ids = frozenset(r.id for r in await self.store.replicas(job_id=job_id))

        def refusal(exc: ClaimConflictError) -> XenKeepError:
            if exc.claim.key == job_target(job_id):
                return ConflictError(
                    f"job {row.spec.name} is already running (run {exc.holder.id})"
                )
            return exc

        async def work(ctx: OperationContext) -> Outcome:
            return await self._run(ctx, row, replica_ids)

        return await self.ops.start(
            REPLICATION,
            work,
            target=job_target(job_id),
            title=row.spec.name,
            action=f"run replication job {row.spec.name}",
            trigger=trigger,
            claims=[one_run_per_job(job_id), *(one_change_per_replica(i) for i in replica_ids)],
            refusal=refusal,
        )

    async def _run(self, ctx: OperationContext, row: JobRow, claimed: frozenset[int]) -> Outcome:
        spec = row.spec
        started = time.time()
        source_name, target_name = spec.pool_id, spec.target_pool_id
        error = ""
        cancelled = False
        runner: ReplicationRun | None = None
        try:
            await ctx.stage(ReplicationStage.SELECT)
            source_name = await self.pools.pool_name(spec.pool_id)
            target_name = await self.pools.pool_name(spec.target_pool_id)
            source = await self.pools.client(spec.pool_id)
            target = await self.pools.client(spec.target_pool_id)
            await ctx.log(
                f"job {spec.name}: pool {source_name} ({spec.pool_id}) to SR "
                f"{spec.target_sr_uuid} of pool {target_name} ({spec.target_pool_id})"
            )
            runner = ReplicationRun(
                ctx=ctx,
                job=row,
                source=source,
                target=target,
                source_pool_name=source_name,
                target_pool_name=target_name,
                store=self.store,
                running=self.running_operations,
                claimed=claimed,
            )
            await ctx.stage(ReplicationStage.TRANSFER)
            await runner.execute()
        except asyncio.CancelledError:
            cancelled = True
        except Exception as exc:
            error = describe_error(exc)
            log.exception("replication run %s failed", ctx.id)
            await ctx.log(f"run failed: {error}", level="error")
        await asyncio.shield(ctx.stage(ReplicationStage.REPORT))
        return await finish_run(
            ctx,
            vms=[r.as_dict() for r in runner.results] if runner is not None else [],
            error=error,
            cancelled=cancelled,
            stopping=self.ops.stopping,
            mail=self.mail,
            job_name=spec.name,
            pool_name=source_name,
            appliance=await asyncio.shield(self._appliance_name()),
            started=started,
            kind="replication",
            target=f"SR {spec.target_sr_uuid} of {target_name}",
        )

    # ----------------------------------------------------------------- sweep

    async def sweep_tick(self, now: float) -> float:
        """Once per pool after the daemon starts: destroy the marked source
        snapshots and the half-made replicas and disks of runs that died."""
        return await self._sweep.tick(now)

    async def _sweep_pool(self, client: XapiClient) -> list[str]:
        swept = await sweep(
            client, running=self.running_operations, marker=MARKER, kept_key=REFERENCE_KEY
        )
        return swept.removed + await sweep_marked(
            client, key=CREATING_KEY, running=self.running_operations, what="replication"
        )

    # ------------------------------------------------------------------ read

    async def runs(
        self, *, job_id: int | None = None, only: TargetFilter | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Recent runs (of one job), newest first (``only``: on the targets it allows)."""
        target = job_target(job_id) if job_id is not None else None
        ops = await self.ops.find(
            kinds=(OpKind.REPLICATION.value,), target=target, only=only, limit=limit
        )
        return [{**op, "job_id": job_of(op)} for op in ops]

    async def operations(self, *, target: str, limit: int = 20) -> list[dict[str, Any]]:
        """Recent operations of the domain on one target (a replica's starts, failbacks)."""
        return await self.ops.find(kinds=KINDS, target=target, limit=limit)

    async def run(self, op_id: int) -> dict[str, Any]:
        """One operation of the domain (NotFoundError for any other kind)."""
        op = await self.ops.get(op_id)
        if op["kind"] not in KINDS:
            raise NotFoundError(f"no replication operation {op_id}")
        return op

    # ------------------------------------------------------------- scheduler

    async def schedule_tick(self, now: float) -> float:
        """Start every due job that is not paused; the seconds until the next look."""

        async def set_state(job_id: int, slot: float | None, next_run: float) -> None:
            await self.store.set_schedule_state(job_id, last_slot=slot, next_run=next_run)

        async def start(job_id: int, trigger: str) -> int:
            return await self.run_job(job_id, trigger=trigger)

        kind = JobKind(
            noun="replication job",
            running=lambda job_id: self.running_run(job_id) is not None,
            start=start,
            set_state=set_state,
            note=lambda op_id, line: self.ops.store.log(op_id, line),
            paused=lambda row: getattr(row, "paused", ""),
        )
        return await tick_jobs(await self.store.jobs(), now, kind)
