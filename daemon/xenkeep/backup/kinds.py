"""The kinds of operation the backup domain runs, their stages and their rules.

Concurrency is declared here, where the work is defined:

- one run per job;
- nothing changes the storage (format, attach, detach, another directory)
  while anything reads or writes it (a backup, a restore, a verify);
- one verify at a time;
- a prune of a job's points and a run of that job never run together (both
  merge the same chains); one deletion per VM at a time.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from xenkeep.ops import Claim, OperationKind, OpKind

from .const import Stage
from .runner import describe_error

#: The claim key of the datastore in use.
STORAGE: Final = "backup-storage"

USES_STORAGE: Final = Claim.shared(STORAGE)
CHANGES_STORAGE: Final = Claim.sole(
    STORAGE, "nothing changes the backup storage while anything reads or writes it"
)
ONE_VERIFY: Final = Claim.sole("backup-verify", "one verify at a time")


def one_run_per_job(job_id: int) -> Claim:
    """A job runs once at a time: two runs would race for its chain."""
    return Claim.sole(job_target(job_id), "one run per job")


def one_prune_per_job(job_id: int) -> Claim:
    """A prune merges the job's chains as its runs do: never both at once."""
    return Claim.sole(job_target(job_id), "one run or prune per job")


def one_delete_per_vm(vm_uuid: str) -> Claim:
    """Two deletions of one VM's points would merge into the same chain."""
    return Claim.sole(f"backup-points:{vm_uuid}", "one deletion of a VM's restore points at a time")


def job_target(job_id: int) -> str:
    """The target of a job's runs."""
    return f"backup-job:{job_id}"


class BackupStage(StrEnum):
    """Stages of a backup run as a whole (its VMs have :class:`Stage`)."""

    SELECT = "select"
    TRANSFER = "transfer"
    REPORT = "report"


class VerifyStage(StrEnum):
    """Stages of a verify."""

    MEASURE = "measure"
    READ = "read"
    REPORT = "report"


class PruneStage(StrEnum):
    """Stages of a prune (retention applied now) and of a point deletion."""

    PLAN = "plan"
    MERGE = "merge"


class HealthStage(StrEnum):
    """Stages of a health check (its restore's VM task has :class:`Stage`)."""

    RESTORE = "restore"
    START = "start"
    WAIT = "wait"
    CLEANUP = "cleanup"


class DiskStage(StrEnum):
    """Stages of making a disk the backup storage."""

    #: Wiping the disk and making the filesystem (the helper mounts it too).
    ERASE = "erase"
    MOUNT = "mount"
    OPEN = "open"


BACKUP: Final = OperationKind(OpKind.BACKUP, "backup", BackupStage, describe_error)
#: A restore's stages are those of its VM task (create, import, done).
RESTORE: Final = OperationKind(OpKind.RESTORE, "restore", Stage, describe_error)
VERIFY: Final = OperationKind(OpKind.VERIFY, "verify", VerifyStage, describe_error)
DISK_FORMAT: Final = OperationKind(OpKind.DISK_FORMAT, "disk format", DiskStage, describe_error)
DISK_ATTACH: Final = OperationKind(OpKind.DISK_ATTACH, "disk attach", DiskStage, describe_error)
PRUNE: Final = OperationKind(OpKind.PRUNE, "prune", PruneStage, describe_error)
POINT_DELETE: Final = OperationKind(
    OpKind.POINT_DELETE, "restore point deletion", PruneStage, describe_error
)
POINTS_DELETE: Final = OperationKind(
    OpKind.POINTS_DELETE, "deletion of a VM's restore points", PruneStage, describe_error
)
HEALTH_CHECK: Final = OperationKind(
    OpKind.HEALTH_CHECK, "health check", HealthStage, describe_error
)
