"""Names shared by the backup package: statuses, stages, transfer kinds."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from xenkeep.jobs.vmselect import Selector
from xenkeep.ops.const import DONE, FINISHED, OpStatus

#: A run is an operation: its statuses are those of every operation.
RunStatus = OpStatus

__all__ = [
    "DONE",
    "FINISHED",
    "RESTORING_KEY",
    "SNAPSHOT_KEY",
    "SNAPSHOT_MARKER",
    "RunStatus",
    "Selector",
    "Stage",
]


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


#: other_config key marking the snapshots XenKeep keeps as delta references.
SNAPSHOT_KEY: Final = "xenkeep-backup-job"
#: What ends the name of a backup run's snapshot: ``xk-run-<run id>``
#: (see :mod:`xenkeep.jobs.snapshots`).
SNAPSHOT_MARKER: Final = "xk-run"
#: other_config key on the VM and VDIs a restore creates, removed once it
#: succeeds: what still carries it after its restore died is a leftover.
RESTORING_KEY: Final = "xenkeep-restore-run"
