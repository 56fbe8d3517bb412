"""The operation kinds of the replication domain, their stages and claims.

- one run per job;
- one run, start or failback per replica at a time (a run takes the
  replicas of its job that exist when it starts);
- a run reads its source VMs as a backup does (shared, taken per VM once
  selected); a failback overwrites its source VM, so nothing else reads it
  meanwhile (:mod:`xenkeep.jobs.claims`).
"""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum
from typing import Final

from xenkeep.errors import XenKeepError
from xenkeep.ops import Claim, OperationContext, OperationKind, OpKind, OpStatus
from xenkeep.xapi.errors import XapiFailure

JOB_PREFIX: Final = "replication-job:"
REPLICA_PREFIX: Final = "replica:"


def describe_error(exc: BaseException) -> str:
    """A user-facing cause for a failure (never a bare traceback)."""
    if isinstance(exc, XapiFailure):
        return f"the pool refused: {exc}"
    if isinstance(exc, XenKeepError):
        return exc.message + (f" — {exc.hint}" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


async def close_failed(ctx: OperationContext, task_id: int, exc: BaseException) -> None:
    """Mark a sub-task as ended by ``exc`` (failed, or cancelled), whatever else is cut."""
    cancelled = isinstance(exc, asyncio.CancelledError)
    await asyncio.shield(
        ctx.update_task(
            task_id,
            status=OpStatus.CANCELLED.value if cancelled else OpStatus.FAILED.value,
            error=describe_error(exc) if isinstance(exc, Exception) else "cancelled",
            finished_at=time.time(),
        )
    )


def job_target(job_id: int) -> str:
    """The target of a job's runs."""
    return f"{JOB_PREFIX}{job_id}"


def replica_target(replica_id: int) -> str:
    """The target of a replica's start and failback."""
    return f"{REPLICA_PREFIX}{replica_id}"


def one_run_per_job(job_id: int) -> Claim:
    """Two runs of a job would race for its replicas' chains."""
    return Claim.sole(job_target(job_id), "one run per job")


def one_change_per_replica(replica_id: int) -> Claim:
    """A run, a start and a failback all change the replica: one at a time."""
    return Claim.sole(
        replica_target(replica_id), "one run, start or failback of a replica at a time"
    )


class ReplicationStage(StrEnum):
    """Stages of a replication run as a whole (its VMs have :class:`~.const.VmStage`)."""

    SELECT = "select"
    TRANSFER = "transfer"
    REPORT = "report"


class StartStage(StrEnum):
    """Stages of starting a replica (failover)."""

    CHECK = "check"
    PREPARE = "prepare"
    START = "start"


class FailbackStage(StrEnum):
    """Stages of a failback."""

    CHECK = "check"
    SNAPSHOT = "snapshot"
    TRANSFER = "transfer"
    SWAP = "swap"
    CLEANUP = "cleanup"


REPLICATION: Final = OperationKind(
    OpKind.REPLICATION, "replication", ReplicationStage, describe_error
)
REPLICA_START: Final = OperationKind(
    OpKind.REPLICA_START, "replica start", StartStage, describe_error
)
FAILBACK: Final = OperationKind(OpKind.FAILBACK, "failback", FailbackStage, describe_error)
