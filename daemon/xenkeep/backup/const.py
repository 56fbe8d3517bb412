"""Names shared by the backup package: statuses, stages, transfer kinds."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class RunStatus(StrEnum):
    """Where a run, a VM of a run or a restore stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Killed with the daemon; found at the next start.
    INTERRUPTED = "interrupted"


FINISHED: Final = frozenset(
    {RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED}
)


class Stage(StrEnum):
    """The step a VM task is at."""

    QUEUED = "queued"
    SNAPSHOT = "snapshot"
    EXPORT = "export"
    COMMIT = "commit"
    CLEANUP = "cleanup"
    MERGE = "merge"
    CREATE = "create"
    IMPORT = "import"
    DONE = "done"


class Selector(StrEnum):
    """How a job chooses its VMs."""

    NAME = "name"
    TAG = "tag"
    POOL = "pool"


class RunKind(StrEnum):
    """What a tracked run does."""

    BACKUP = "backup"
    RESTORE = "restore"


#: other_config key marking the snapshots XenKeep keeps as delta references.
SNAPSHOT_KEY: Final = "xenkeep-backup-job"
