"""Emptying the datastore on purpose: retention applied now, and one point deleted.

A run applies its job's retention after its transfer; a datastore that is
full makes every run fail before that, so retention also runs on its own as
a **prune** operation: when a job's retention is lowered, and on demand. An
administrator may also **delete** one restore point (an operation as well:
deleting any point but the newest merges it into the next one, which moves
the next point's delta). Both go through :class:`~xenkeep.repo.datastore.Datastore`,
whose merges are journalled: a kill leaves each point either whole or gone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from xenkeep.errors import ConflictError, NotFoundError, ValidationError
from xenkeep.ops import OperationContext, Operations, OpStatus
from xenkeep.ops.manager import Outcome
from xenkeep.repo.layout import check_uuid

from .confirm import require_typed
from .jobstore import JobStore
from .kinds import (
    POINT_DELETE,
    POINTS_DELETE,
    PRUNE,
    USES_STORAGE,
    PruneStage,
    job_target,
    one_delete_per_vm,
    one_prune_per_job,
)
from .storage import BackupStorage


def vm_uuid_of(value: str) -> str:
    """The canonical VM uuid, or a ValidationError naming the field."""
    try:
        return check_uuid(value)
    except (ValueError, TypeError, AttributeError):
        raise ValidationError(f"{value!r} is not a VM uuid", field="vm_uuid") from None


class PruneService:
    """Start prunes of a job's chains and deletions of single points."""

    def __init__(self, jobs: JobStore, storage: BackupStorage, ops: Operations) -> None:
        self.jobs = jobs
        self.storage = storage
        self.ops = ops

    async def start_prune(self, job_id: int, *, trigger: str = "manual") -> int:
        """Apply the job's retention to every VM whose newest point it made; the operation id."""
        row = await self.jobs.job(job_id)
        datastore = self.storage.datastore
        keep = row.spec.retention
        job_key = str(job_id)

        async def work(ctx: OperationContext) -> Outcome:
            await ctx.stage(PruneStage.PLAN)

            def mine() -> list[str]:
                out = []
                for vm in datastore.vms():
                    points = datastore.points(vm)
                    if points and points[-1].job_id == job_key:
                        out.append(vm)
                return out

            vms = await asyncio.to_thread(mine)
            await ctx.log(f"keep the newest {keep} restore point(s) of {len(vms)} VM(s)")
            await ctx.stage(PruneStage.MERGE)
            merged = 0
            problems = []
            damaged = []
            for vm in vms:
                started = time.monotonic()
                result = await datastore.prune(vm, keep)
                merged += len(result.merged)
                if result.merged:
                    await ctx.log(
                        f"VM {vm}: merged {len(result.merged)} restore point(s) away "
                        f"in {time.monotonic() - started:.2f}s"
                    )
                if result.damaged:
                    damaged.append(result.damaged)
                    await ctx.log(f"VM {vm}: merge refused: {result.damaged}", level="error")
                for why in (result.plan.blocked, result.deferred):
                    if why:
                        problems.append(f"VM {vm}: {why}")
                        await ctx.log(f"VM {vm}: {why}", level="warning")
            report: dict[str, Any] = {
                "job_id": job_id,
                "retention": keep,
                "vms": len(vms),
                "merged": merged,
                "problems": problems,
                "damaged": damaged,
            }
            if damaged:
                # A merge that would fold damage in was refused: the points
                # stay, flagged, and the administrator has to act.
                return Outcome(report=report, status=OpStatus.FAILED, error="; ".join(damaged))
            return Outcome(report=report)

        return await self.ops.start(
            PRUNE,
            work,
            target=job_target(job_id),
            title=f"prune {row.spec.name}",
            action=f"prune job {row.spec.name}",
            trigger=trigger,
            params={"retention": keep},
            claims=[one_prune_per_job(job_id), USES_STORAGE],
        )

    async def start_delete(self, vm_uuid: str, point_id: str, *, confirm: str | None = None) -> int:
        """Delete one restore point; the operation id. Refused at once (nothing
        started) for a bad uuid, a point that does not exist, or (from a form,
        ``confirm`` given) a typed confirmation that is not the VM's name."""
        vm = vm_uuid_of(vm_uuid)
        datastore = self.storage.datastore
        try:
            point = await asyncio.to_thread(lambda: datastore.vmdir(vm).load_point(point_id))
        except ValueError as exc:
            raise ValidationError(str(exc), field="point_id") from None
        name = str(point.vm.get("name_label", vm))
        if confirm is not None:
            require_typed(name or vm, confirm, f"restore point {point_id} is deleted for good")

        async def work(ctx: OperationContext) -> Outcome:
            await ctx.stage(PruneStage.MERGE)
            started = time.monotonic()
            result = await datastore.delete_point(vm, point_id)
            if result.merged_into:
                await ctx.log(
                    f"restore point {point_id} merged into {result.merged_into} "
                    f"({result.stats.blocks} blocks) in {time.monotonic() - started:.2f}s"
                )
            else:
                await ctx.log(f"restore point {point_id} deleted; no other point needed its files")
            return Outcome(
                report={
                    "vm_uuid": vm,
                    "deleted": point_id,
                    "merged_into": result.merged_into,
                    "blocks": result.stats.blocks,
                }
            )

        return await self.ops.start(
            POINT_DELETE,
            work,
            target=f"vm:{vm}",
            title=f"delete restore point {point_id} of {name}",
            action=f"delete restore point {point_id} of {name}",
            params={"vm_uuid": vm, "point_id": point_id},
            claims=[one_delete_per_vm(vm), USES_STORAGE],
        )

    async def start_delete_all(self, vm_uuid: str, *, confirm: str) -> int:
        """Delete every restore point of a VM whose job is gone; the operation id.

        Refused at once while a job still makes the VM's points (deleting
        them one run before the next would only start a new full), and
        unless ``confirm`` repeats the VM's name. Points go newest first,
        each a commit of its own: a kill leaves the oldest ones whole.
        """
        vm = vm_uuid_of(vm_uuid)
        datastore = self.storage.datastore
        points = await asyncio.to_thread(datastore.points, vm)
        if not points:
            raise NotFoundError(f"VM {vm} has no restore points")
        name = str(points[-1].vm.get("name_label", "")) or vm
        for job_id in sorted({p.job_id for p in points if p.job_id}, reverse=True):
            try:
                row = await self.jobs.job(int(job_id))
            except (NotFoundError, ValueError):
                continue
            raise ConflictError(
                f"job {row.spec.name} still backs up {name}",
                hint="delete its points one by one, or delete the job first",
            )
        require_typed(name, confirm, f"the {len(points)} restore points of {name} are deleted")
        ids = [p.id for p in reversed(points)]

        async def work(ctx: OperationContext) -> Outcome:
            await ctx.stage(PruneStage.MERGE)
            deleted = []
            for point_id in ids:
                await datastore.delete_point(vm, point_id)
                deleted.append(point_id)
                await ctx.log(f"restore point {point_id} deleted")
            return Outcome(report={"vm_uuid": vm, "vm_name": name, "deleted": deleted})

        return await self.ops.start(
            POINTS_DELETE,
            work,
            target=f"vm:{vm}",
            title=f"delete every restore point of {name}",
            action=f"delete the restore points of {name}",
            params={"vm_uuid": vm, "points": len(ids)},
            claims=[one_delete_per_vm(vm), USES_STORAGE],
        )
