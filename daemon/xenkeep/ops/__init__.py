"""Operations: one persisted model for every long task of the appliance.

A backup run, a restore, a verify, a disk format (and the kinds that come
next: replication, VM creation, diagnostics) is an *operation*: a row with a
kind, a target, a status, a stage, progress, sub-tasks and log lines, started,
cancelled, waited for and watched through the same calls of
:class:`~xenkeep.ops.manager.Operations`. See docs/architecture.md for how to
add a kind.
"""

from .claims import Claim
from .const import DONE, FINISHED, OpKind, OpStatus, TargetFilter
from .context import OperationContext, ThreadWork
from .manager import OperationKind, Operations
from .scheduler import Scheduler

__all__ = [
    "DONE",
    "FINISHED",
    "Claim",
    "OpKind",
    "OpStatus",
    "OperationContext",
    "OperationKind",
    "Operations",
    "Scheduler",
    "TargetFilter",
    "ThreadWork",
]
