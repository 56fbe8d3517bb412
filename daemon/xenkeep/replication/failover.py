"""Starting a replica (failover): the VM on site B takes over.

From the latest point, the replica VM itself starts (brought back to that
point first if a run was cut while writing it). From an older point, a
clone of that point starts and the replica stays as it is. Either way the
started VM's ``start`` is unblocked only for it, the job's schedule is
paused with a reason the job page shows (so the replication does not
overwrite what now runs on site B), and a failure part-way leaves the
replica as it was: blocked again, the clone removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from xenkeep.errors import ConflictError, NotFoundError
from xenkeep.jobs.snapshots import destroy_snapshot
from xenkeep.ops import OperationContext
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiError

from . import replica as replicas
from .const import (
    BASE_KEY,
    CREATING_KEY,
    REPLICA_JOB_KEY,
    REPLICA_OF_KEY,
    SEQ_KEY,
    SOURCE_SNAPSHOT_KEY,
    TAKEN_KEY,
    ReplicaState,
)
from .kinds import StartStage, close_failed
from .replica import Point, Replica
from .runner import start_blocked_reason, utc_stamp
from .store import ReplicaRow, ReplicationStore

#: Marks a started clone must not carry: it is not the job's replica.
_REPLICA_MARKS = (
    REPLICA_OF_KEY,
    REPLICA_JOB_KEY,
    CREATING_KEY,
    BASE_KEY,
    SEQ_KEY,
    SOURCE_SNAPSHOT_KEY,
    TAKEN_KEY,
)


class ReplicaUnusableError(ConflictError):
    """The replica cannot be started or failed back now; the message says why."""

    code = "replica_unusable"


async def replica_in_pool(client: XapiClient, row: ReplicaRow, pool_name: str) -> Replica:
    """The row's replica VM with its points, or ReplicaUnusableError."""
    found = await replicas.locate(
        client, vm_uuid=row.vm_uuid, job_id=row.job_id, source_uuid=row.source_vm_uuid
    )
    if found is None:
        raise ReplicaUnusableError(
            f"the replica of {row.source_vm_name} is not in pool {pool_name} "
            "(deleted outside XenKeep?)"
        )
    if not found.points:
        raise ReplicaUnusableError(
            f"the replica of {row.source_vm_name} has no complete point yet: run the job first"
        )
    return found


def choose_point(replica: Replica, point_uuid: str | None) -> Point:
    """The point asked for (its uuid), or the newest."""
    newest = replica.newest
    assert newest is not None
    if not point_uuid:
        return newest
    for p in replica.points:
        if p.uuid == point_uuid:
            return p
    raise NotFoundError(
        f"the replica has no point {point_uuid}",
        hint="points: " + ", ".join(f"{p.seq} {p.uuid}" for p in replica.points),
    )


async def start_replica(
    ctx: OperationContext,
    *,
    row: ReplicaRow,
    client: XapiClient,
    pool_name: str,
    source_pool_name: str,
    store: ReplicationStore,
    point_uuid: str | None,
) -> dict[str, Any]:
    """Start the replica (or a clone of an older point); the report."""
    task = await ctx.task(subject=row.source_vm_uuid, name=row.source_vm_name, stage="check")
    try:
        return await _start(
            ctx,
            task,
            row=row,
            client=client,
            pool_name=pool_name,
            source_pool_name=source_pool_name,
            store=store,
            point_uuid=point_uuid,
        )
    except BaseException as exc:
        await close_failed(ctx, task, exc)
        raise


async def _start(
    ctx: OperationContext,
    task: int,
    *,
    row: ReplicaRow,
    client: XapiClient,
    pool_name: str,
    source_pool_name: str,
    store: ReplicationStore,
    point_uuid: str | None,
) -> dict[str, Any]:
    await ctx.stage(StartStage.CHECK)
    replica = await replica_in_pool(client, row, pool_name)
    point = choose_point(replica, point_uuid)
    if replica.power_state != "Halted":
        raise ReplicaUnusableError(
            f"the replica {replica.name!r} is already {replica.power_state.lower()}"
        )
    await ctx.stage(StartStage.PREPARE)
    await ctx.update_task(task, stage="prepare")
    cloned = point is not replica.newest
    if cloned:
        name = f"{row.source_vm_name} (replica point {point.seq}, {utc_stamp(point.taken)})"
        vm = str(await client.call("VM.clone", point.ref, name))
        await client.call("VM.set_is_a_template", vm, False)
        for key in _REPLICA_MARKS:
            await client.call("VM.remove_from_other_config", vm, key)
        await client.call("VM.add_to_other_config", vm, "xenkeep-started-from", point.uuid)
        await ctx.log(
            f"cloned replica point {point.seq} ({utc_stamp(point.taken)}) as {name!r}",
            task_id=task,
        )
    else:
        vm = replica.ref
        if not replica.clean:
            await ctx.log(
                "the replica was left mid-run; restoring its latest complete point first",
                level="warning",
                task_id=task,
            )
            replica = await replicas.revert(client, replica, point)
    vm_uuid = str(await client.call("VM.get_uuid", vm))
    await ctx.stage(StartStage.START)
    await ctx.update_task(task, stage="start")
    try:
        await replicas.unblock_start(client, vm)
        await client.call("VM.start", vm, False, False)
    except BaseException:
        # Back as it was: a replica nobody can start by accident, no clone.
        with contextlib.suppress(XapiError):
            await asyncio.shield(_undo_start(client, row, vm, cloned, source_pool_name))
        raise
    now = time.time()
    await store.update_replica(
        row.id,
        state=ReplicaState.STARTED,
        started_vm_uuid=vm_uuid,
        started_point_uuid=point.uuid,
        started_at=now,
    )
    if row.job_id is not None:
        await store.set_paused(
            row.job_id,
            f"the replica of {row.source_vm_name} was started on pool {pool_name} at "
            f"{utc_stamp(now)} (point {point.seq} of {utc_stamp(point.taken)}): the schedule "
            "waits so that the replication does not overwrite it; fail back to resume",
        )
    await ctx.update_task(task, status="success", stage="done", finished_at=now)
    await ctx.log(
        f"started {'the clone' if cloned else 'the replica'} {vm_uuid} of {row.source_vm_name} "
        f"from point {point.seq} ({utc_stamp(point.taken)}); its data is "
        f"{now - point.taken:.0f} s old",
        task_id=task,
    )
    return {
        "replica_id": row.id,
        "vm_name": row.source_vm_name,
        "started_vm_uuid": vm_uuid,
        "point_id": point.uuid,
        "point_seq": point.seq,
        "point_taken": point.taken,
        "cloned": cloned,
    }


async def _undo_start(
    client: XapiClient, row: ReplicaRow, vm: str, cloned: bool, source_pool_name: str
) -> None:
    if cloned:
        await destroy_snapshot(client, vm)  # the clone and its disks
    else:
        reason = start_blocked_reason(row.source_vm_name, source_pool_name)
        await replicas.block_start(client, vm, reason)


def check_startable(row: ReplicaRow) -> None:
    """Refuse at once what cannot be started (before an operation is made)."""
    if row.state is not ReplicaState.REPLICATING:
        raise ReplicaUnusableError(
            f"the replica of {row.source_vm_name} is already {row.state.value}",
            hint="fail back first",
        )
    if not row.latest_point_uuid and not row.vm_uuid:
        raise ReplicaUnusableError(
            f"the replica of {row.source_vm_name} has no point yet: run the job first"
        )
