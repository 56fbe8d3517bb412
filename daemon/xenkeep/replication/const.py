"""Names the replication domain writes into pools, and its states.

A replica is a halted VM on the target SR whose ``start`` is blocked; each
complete run leaves a snapshot of it, a **point**. What a point was copied
from travels with it: the keys below are set on the replica VM just before
the point is taken, and ``VM.snapshot`` copies them into the point, so a
point always says which source snapshot it equals, whatever killed what
when. The target pool holds the truth about the chain; the database holds
which replica is whose, and its state for the pages.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from xenkeep.jobs.vmselect import REPLICA_OF_KEY

__all__ = [
    "BASE_KEY",
    "CREATING_KEY",
    "MARKER",
    "REFERENCE_KEY",
    "REPLICA_JOB_KEY",
    "REPLICA_OF_KEY",
    "REPLICA_TAG",
    "SEQ_KEY",
    "SOURCE_SNAPSHOT_KEY",
    "TAKEN_KEY",
    "ReplicaState",
    "VmStage",
]

#: On the replica (and its points): the id of the job that keeps it.
REPLICA_JOB_KEY: Final = "xenkeep-replica-job"
#: On a replica VM and VDIs a first run is building: that run's id. What
#: still carries it once its run is gone is a leftover (swept).
CREATING_KEY: Final = "xenkeep-replica-creating"
#: On the replica VM: the uuid of the point its live disks equal, "" while a
#: run writes them. A replica whose base is not its newest point is reverted
#: to that point before anything else uses it.
BASE_KEY: Final = "xenkeep-replica-base"
#: Copied into each point: the uuid of the source snapshot it equals.
SOURCE_SNAPSHOT_KEY: Final = "xenkeep-replica-source-snapshot"
#: Copied into each point: its number in the replica's chain (1, 2, ...).
SEQ_KEY: Final = "xenkeep-replica-seq"
#: Copied into each point: when its source snapshot was taken (epoch seconds).
TAKEN_KEY: Final = "xenkeep-replica-taken"
#: On a source snapshot kept as the base of the next delta: the job's id.
REFERENCE_KEY: Final = "xenkeep-replication-job"
#: What ends the name of a replication run's source snapshot: ``xk-rep-<op id>``.
MARKER: Final = "xk-rep"
#: The tag every replica VM carries.
REPLICA_TAG: Final = "xenkeep-replica"


class ReplicaState(StrEnum):
    """Where a replica stands."""

    #: The job keeps it current; it cannot be started by accident.
    REPLICATING = "replicating"
    #: Failed over: started on the target; the job's schedule waits.
    STARTED = "started"
    #: A failback is copying it back to the source.
    FAILING_BACK = "failing-back"


class VmStage(StrEnum):
    """The step a VM's sub-task of a replication run is at."""

    QUEUED = "queued"
    SNAPSHOT = "snapshot"
    CREATE = "create"
    TRANSFER = "transfer"
    POINT = "point"
    CLEANUP = "cleanup"
    DONE = "done"
