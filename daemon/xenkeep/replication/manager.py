"""The replication service: one door to jobs, runs, replicas, failover and failback.

Created once by the composition root (``ReplicationManager(db, pools, ops=,
scheduler=, ...)``): it registers its schedule and its sweep with the one
scheduler. Runs, starts and failbacks are operations (:mod:`xenkeep.ops`),
so the pages and the API follow them as they follow backups.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from xenkeep.errors import ConflictError, NotFoundError, XenKeepError
from xenkeep.jobs.claims import overwrites_vm
from xenkeep.jobs.preview import SelectionPreview
from xenkeep.jobs.schedule import Schedule, parse_schedule
from xenkeep.jobs.snapshots import destroy_snapshot
from xenkeep.mail import MailSettings
from xenkeep.ops import OperationContext, Operations, Scheduler, TargetFilter
from xenkeep.ops.claims import ClaimConflictError
from xenkeep.ops.manager import Outcome
from xenkeep.pools.access import PoolAccess
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database

from .const import ReplicaState
from .failback import Failback, Sides
from .failover import ReplicaUnusableError, check_startable, replica_in_pool, start_replica
from .job import ReplicationSpec
from .jobs import ReplicationJobs
from .kinds import (
    FAILBACK,
    REPLICA_START,
    one_change_per_replica,
    one_run_per_job,
    replica_target,
)
from .rpo import rpo
from .runs import ReplicationRuns
from .store import JobRow, ReplicaRow, ReplicationStore

__all__ = ["ReplicationManager"]


class ReplicationManager:
    """Replication jobs, their runs and replicas, failover and failback."""

    def __init__(
        self,
        db: Database,
        pools: PoolAccess,
        *,
        ops: Operations,
        scheduler: Scheduler,
        appliance_name: Callable[[], Awaitable[str]],
        secrets: SecretBox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pools = pools
        self.ops = ops
        self._clock = clock
        self.store = ReplicationStore(db)
        self.mail = MailSettings(db, secrets)
        self.runs = ReplicationRuns(
            store=self.store,
            pools=pools,
            ops=ops,
            mail=self.mail,
            appliance_name=appliance_name,
        )
        self.selections = SelectionPreview(pools)
        self.jobs_service = ReplicationJobs(
            self.store, pools, self.runs, changed=scheduler.wake, clock=clock
        )
        scheduler.register("replication jobs", self.runs.schedule_tick)
        scheduler.register("replication leftovers", self.runs.sweep_tick)

    # ------------------------------------------------------------------ jobs

    async def create_job(self, data: Mapping[str, Any]) -> JobRow:
        """Validate (against the pools too) and store a new job."""
        return await self.jobs_service.create(data)

    async def update_job(self, job_id: int, data: Mapping[str, Any]) -> JobRow:
        """Replace a job's settings."""
        return await self.jobs_service.update(job_id, data)

    async def preview_selection(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """What a job's source selection takes now (see :mod:`xenkeep.jobs.preview`)."""
        return await self.selections.preview(data)

    async def delete_job(self, job_id: int) -> None:
        """Remove a job; its replicas stay."""
        await self.jobs_service.delete(job_id)

    async def job(self, job_id: int) -> JobRow:
        """One job."""
        return await self.jobs_service.job(job_id)

    async def job_rows(self) -> list[JobRow]:
        """Every job's stored settings (no run looked at: the permission tree's)."""
        return await self.store.jobs()

    async def jobs(self) -> list[dict[str, Any]]:
        """Every job with its last run, run in progress and replicas' worst RPO."""
        out = []
        for d in await self.jobs_service.list():
            replicas = await self.replicas(job_id=int(d["id"]))
            d["replicas"] = len(replicas)
            d["rpo_exceeded"] = sum(1 for r in replicas if r["rpo"]["exceeded"])
            out.append(d)
        return out

    # ------------------------------------------------------------------ runs

    async def run_job(self, job_id: int, *, trigger: str = "manual") -> int:
        """Start a run of a job now; its operation id."""
        return await self.runs.run_job(job_id, trigger=trigger)

    async def runs_of(
        self, job_id: int | None = None, *, only: TargetFilter | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Recent runs (of one job), newest first (``only``: on the targets it allows)."""
        return await self.runs.runs(job_id=job_id, only=only, limit=limit)

    async def wait(self, op_id: int) -> dict[str, Any]:
        """Wait for an operation of the domain started here; its row."""
        await self.runs.run(op_id)
        return await self.ops.wait(op_id)

    # -------------------------------------------------------------- replicas

    @staticmethod
    def _schedule(spec: ReplicationSpec | None) -> Schedule | None:
        if spec is None or not spec.schedule or not spec.enabled:
            return None
        try:
            return parse_schedule(spec.schedule, spec.timezone)
        except XenKeepError:
            return None

    async def _view(self, row: ReplicaRow, specs: dict[int, JobRow | None]) -> dict[str, Any]:
        if row.job_id is not None and row.job_id not in specs:
            try:
                specs[row.job_id] = await self.store.job(row.job_id)
            except NotFoundError:
                specs[row.job_id] = None
        job = specs.get(row.job_id) if row.job_id is not None else None
        d = row.as_dict()
        # A started replica is no longer kept current, nor one of a paused job.
        kept = row.state is ReplicaState.REPLICATING and job is not None and not job.paused
        d["rpo"] = rpo(
            row.latest_point_at,
            self._clock(),
            schedule=self._schedule(job.spec) if kept and job else None,
            since=row.created_at,
            last_duration=row.last_seconds,
        ).as_dict()
        d["job_paused"] = job.paused if job else ""
        return d

    async def replica_rows(self) -> list[ReplicaRow]:
        """Every replica as stored (no pool looked at: the permission tree's)."""
        return await self.store.replicas()

    async def replicas(self, *, job_id: int | None = None) -> list[dict[str, Any]]:
        """Every replica (of one job) with its source VM, target, latest point and RPO."""
        specs: dict[int, JobRow | None] = {}
        return [await self._view(r, specs) for r in await self.store.replicas(job_id=job_id)]

    async def replica(self, replica_id: int) -> dict[str, Any]:
        """One replica with its RPO."""
        return await self._view(await self.store.replica(replica_id), {})

    async def replica_points(self, replica_id: int) -> list[dict[str, Any]]:
        """The replica's points as its pool has them now, oldest first."""
        row = await self.store.replica(replica_id)
        client = await self.pools.client(row.target_pool_id)
        try:
            found = await replica_in_pool(
                client, row, await self.pools.pool_name(row.target_pool_id)
            )
        except ReplicaUnusableError:
            return []
        return [p.as_dict() for p in found.points]

    async def rpo_exceeded(self) -> list[dict[str, Any]]:
        """The replicas whose RPO is exceeded now (the dashboard's badge)."""
        return [r for r in await self.replicas() if r["rpo"]["exceeded"]]

    async def delete_replica(self, replica_id: int, *, remove_vm: bool) -> None:
        """Forget a replica; with ``remove_vm``, destroy its VM and points in its pool."""
        row = await self.store.replica(replica_id)
        if row.state is not ReplicaState.REPLICATING:
            raise ConflictError(
                f"the replica of {row.source_vm_name} is {row.state.value}: fail back first"
            )
        async with self.ops.holding(
            [one_change_per_replica(replica_id)], action=f"delete replica {replica_id}"
        ):
            if remove_vm and row.vm_uuid:
                client = await self.pools.client(row.target_pool_id)
                found = await replica_in_pool(
                    client, row, await self.pools.pool_name(row.target_pool_id)
                )
                for point in found.points:
                    await destroy_snapshot(client, point.ref)
                await destroy_snapshot(client, found.ref)
            await self.store.delete_replica(replica_id)

    # ------------------------------------------------------ failover, failback

    async def start_replica(self, replica_id: int, *, point_uuid: str | None = None) -> int:
        """Start a replica (failover), from its latest point or a chosen one; the operation id."""
        row = await self.store.replica(replica_id)
        check_startable(row)
        client = await self.pools.client(row.target_pool_id)
        pool_name = await self.pools.pool_name(row.target_pool_id)
        source_pool_name = row.source_pool_id
        # Site A may be gone from the appliance: that is what a failover is for.
        with contextlib.suppress(NotFoundError):
            source_pool_name = await self.pools.pool_name(row.source_pool_id)

        async def work(ctx: OperationContext) -> Outcome:
            report = await start_replica(
                ctx,
                row=await self.store.replica(replica_id),
                client=client,
                pool_name=pool_name,
                source_pool_name=source_pool_name,
                store=self.store,
                point_uuid=point_uuid or None,
            )
            return Outcome(report=report)

        return await self.ops.start(
            REPLICA_START,
            work,
            target=replica_target(replica_id),
            title=f"start replica of {row.source_vm_name}",
            action=f"start the replica of {row.source_vm_name}",
            params={"point_uuid": point_uuid or ""},
            claims=[one_change_per_replica(replica_id)],
            refusal=self._refusal(row),
        )

    async def failback(self, replica_id: int, *, start_source: bool = False) -> int:
        """Copy a started replica's changes back to its source VM and swap roles; the op id."""
        row = await self.store.replica(replica_id)
        if row.state is ReplicaState.REPLICATING:
            raise ReplicaUnusableError(
                f"the replica of {row.source_vm_name} is not started: there is nothing to fail back"
            )
        job = None
        if row.job_id is not None:
            try:
                job = await self.store.job(row.job_id)
            except NotFoundError:
                job = None
        sides = Sides(
            source=await self.pools.client(row.source_pool_id),
            target=await self.pools.client(row.target_pool_id),
            source_name=await self.pools.pool_name(row.source_pool_id),
            target_name=await self.pools.pool_name(row.target_pool_id),
        )

        async def work(ctx: OperationContext) -> Outcome:
            runner = Failback(
                ctx,
                row=await self.store.replica(replica_id),
                sides=sides,
                store=self.store,
                job_name=job.spec.name if job else row.job_name,
                retention=job.spec.retention if job else 3,
                bandwidth_limit=job.spec.bandwidth_limit if job else None,
                start_source=start_source,
            )
            return Outcome(report=await runner.run())

        claims = [one_change_per_replica(replica_id), overwrites_vm(row.source_vm_uuid)]
        if row.job_id is not None:
            claims.append(one_run_per_job(row.job_id))
        return await self.ops.start(
            FAILBACK,
            work,
            target=replica_target(replica_id),
            title=f"fail back {row.source_vm_name}",
            action=f"fail back {row.source_vm_name}",
            params={"start_source": start_source},
            claims=claims,
            refusal=self._refusal(row),
        )

    @staticmethod
    def _refusal(row: ReplicaRow) -> Callable[[ClaimConflictError], XenKeepError]:
        def refusal(exc: ClaimConflictError) -> XenKeepError:
            return ConflictError(
                f"the replica of {row.source_vm_name} is busy: {exc.message}",
                hint="wait for it to finish, or cancel it",
            )

        return refusal
