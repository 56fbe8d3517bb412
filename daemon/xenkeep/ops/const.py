"""Names shared by every kind of operation: statuses and kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class OpStatus(StrEnum):
    """Where an operation, or one of its sub-tasks, stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    #: Done, but something needs a look: a leftover the work could not remove,
    #: a VM the selection no longer finds... The work's outcome names each.
    WARNING = "warning"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Cut by a stop of the daemon; marked so at the next start.
    INTERRUPTED = "interrupted"


FINISHED: Final = frozenset(
    {
        OpStatus.SUCCESS,
        OpStatus.WARNING,
        OpStatus.FAILED,
        OpStatus.CANCELLED,
        OpStatus.INTERRUPTED,
    }
)
#: Finished with its work done (a warning says something needs a look, not
#: that the work is missing): what a caller waiting for the result accepts.
DONE: Final = frozenset({OpStatus.SUCCESS, OpStatus.WARNING})


class OpKind(StrEnum):
    """Every kind of long task. A new kind is added here and defined where its
    work lives (see :class:`~xenkeep.ops.manager.OperationKind`)."""

    BACKUP = "backup"
    RESTORE = "restore"
    VERIFY = "verify"
    DISK_FORMAT = "disk-format"
    DISK_ATTACH = "disk-attach"
    PRUNE = "prune"
    POINT_DELETE = "point-delete"
    #: Every restore point of one VM deleted (a VM whose job is gone).
    POINTS_DELETE = "points-delete"
    #: A restore point restored, started and checked for a live guest.
    HEALTH_CHECK = "health-check"
    #: A run of the appliance's health checks (:mod:`xenkeep.diagnostics`).
    DIAGNOSTICS = "diagnostics"
    #: A copy of the appliance's configuration and pool databases (:mod:`xenkeep.appliance_backup`).
    APPLIANCE_BACKUP = "appliance-backup"
    REPLICATION = "replication"
    REPLICA_START = "replica-start"
    FAILBACK = "failback"
    #: Self-service VMs made from a template with CloudInit (:mod:`xenkeep.selfservice`).
    VM_CREATE = "vm-create"


#: The message an operation cut by a daemon stop carries.
INTERRUPTED_MESSAGE: Final = "the daemon stopped during this operation"


@dataclass(frozen=True)
class TargetFilter:
    """Only the operations on some targets (what a person may see): those
    whose target is one of ``targets``, or names an object of one of
    ``kinds`` (``"vm"`` for every ``vm:<uuid>``)."""

    kinds: frozenset[str] = field(default_factory=frozenset)
    targets: frozenset[str] = field(default_factory=frozenset)
