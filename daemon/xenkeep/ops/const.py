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
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Cut by a stop of the daemon; marked so at the next start.
    INTERRUPTED = "interrupted"


FINISHED: Final = frozenset(
    {OpStatus.SUCCESS, OpStatus.FAILED, OpStatus.CANCELLED, OpStatus.INTERRUPTED}
)


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
    #: A run of the appliance's health checks (:mod:`xenkeep.diagnostics`).
    DIAGNOSTICS = "diagnostics"
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
