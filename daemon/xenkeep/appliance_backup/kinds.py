"""The operation kind of the appliance's own backup, its stages and claims.

A copy reads the database and writes into the backup storage: it uses the
storage as backups and verifies do (shared; nothing formats or detaches it
meanwhile), and one copy runs at a time. A restore of the configuration is
short and not an operation, but it holds the storage exclusively (see
:data:`REPLACES_CONFIGURATION`): the jobs and pools of a running backup are
not replaced under it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from xenkeep.backup.kinds import STORAGE, USES_STORAGE
from xenkeep.ops import Claim, OperationKind, OpKind

ONE_COPY: Final = Claim.sole("appliance-backup", "one copy of the appliance at a time")
REPLACES_CONFIGURATION: Final = Claim.sole(
    STORAGE,
    "the configuration is not replaced while anything reads or writes the backup storage",
)
CLAIMS: Final = (USES_STORAGE, ONE_COPY)


class CopyStage(StrEnum):
    """Stages of a copy of the appliance."""

    CONFIG = "configuration"
    POOLS = "pool databases"
    PRUNE = "retention"


APPLIANCE_BACKUP: Final = OperationKind(OpKind.APPLIANCE_BACKUP, "appliance backup", CopyStage)
