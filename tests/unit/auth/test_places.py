"""Replication jobs and replicas in the permission tree: a job sits in its
source pool as a backup job does, a grant on it reaches it alone, a replica
stands for its job (its source pool once the job is deleted), and the
operations on both are seen by whoever may see the job."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from xenkeep.auth.const import Role
from xenkeep.auth.errors import GrantInputError
from xenkeep.auth.grants import parse_object
from xenkeep.auth.permissions import (
    EVERYTHING,
    Action,
    ObjectKind,
    ObjectRef,
    ObjectRole,
    Path,
    Principal,
)
from xenkeep.auth.places import JobFacts, Places, ReplicaFacts, Via
from xenkeep.replication.kinds import job_target, replica_target

POOL_1 = ObjectRef(ObjectKind.POOL, "pool-1")
POOL_2 = ObjectRef(ObjectKind.POOL, "pool-2")
TOP = {1: (EVERYTHING, POOL_1), 2: (EVERYTHING, POOL_2)}
NOWHERE = (EVERYTHING, ObjectRef(ObjectKind.POOL, ""))
REP_4 = ObjectRef(ObjectKind.REPLICATION_JOB, "4")
REP_5 = ObjectRef(ObjectKind.REPLICATION_JOB, "5")
BACKUP_4 = ObjectRef(ObjectKind.BACKUP_JOB, "4")


class TwoPools:
    """The PoolPlaces contract: registrations 1 and 2, with no objects in them."""

    def path_of(self, obj: ObjectRef) -> Path | None:
        return (EVERYTHING,) if obj.kind is ObjectKind.ALL else None

    async def pool_path(self, pool_id: int) -> Path | None:
        return TOP.get(pool_id)

    def name_of(self, obj: ObjectRef) -> str | None:
        return None

    def refs(self) -> list[ObjectRef]:
        return []


def places() -> Places:
    # Replication job 4 reads pool 1 (its SR may be in pool 2: the tree does
    # not care), job 5 reads pool 2; backup job 4 shares job 4's number.
    async def jobs() -> Mapping[ObjectRef, JobFacts]:
        return {
            REP_4: JobFacts("dr web", "1"),
            REP_5: JobFacts("dr db", "2"),
            BACKUP_4: JobFacts("nightly", "2"),
        }

    async def replicas() -> Mapping[int, ReplicaFacts]:
        # 10 is job 4's, 11 job 5's, 12 outlived its job (source pool 1).
        return {
            10: ReplicaFacts(4, "1"),
            11: ReplicaFacts(5, "2"),
            12: ReplicaFacts(None, "1"),
            13: ReplicaFacts(99, "2"),
        }

    targets = {1: job_target(4), 2: replica_target(10), 3: replica_target(11)}

    async def target(op_id: int) -> str | None:
        return targets.get(op_id)

    return Places(TwoPools(), jobs, target, replicas)


def user(*grants: tuple[ObjectRef, ObjectRole]) -> Principal:
    return Principal(1, "u", Role.USER, dict(grants))


async def test_a_replication_job_sits_in_its_source_pool() -> None:
    p = places()
    assert await p.path(ObjectKind.REPLICATION_JOB, "4") == (*TOP[1], REP_4)
    assert await p.path(ObjectKind.REPLICATION_JOB, "5") == (*TOP[2], REP_5)
    # The same number of a backup job is another object, in its own pool.
    assert await p.path(ObjectKind.BACKUP_JOB, "4") == (*TOP[2], BACKUP_4)
    # An unknown or malformed id: reached only from the top.
    assert await p.path(ObjectKind.REPLICATION_JOB, "9") == (EVERYTHING, ref_of("9"))
    assert await p.path(ObjectKind.REPLICATION_JOB, "x") == (EVERYTHING, ref_of("x"))


def ref_of(text: str) -> ObjectRef:
    return ObjectRef(ObjectKind.REPLICATION_JOB, text)


async def test_grants_reach_a_replication_job_from_its_pool_or_on_itself() -> None:
    p = places()
    job_4 = await p.path(ObjectKind.REPLICATION_JOB, "4")
    job_5 = await p.path(ObjectKind.REPLICATION_JOB, "5")
    pool_viewer = user((POOL_1, ObjectRole.VIEWER))
    assert pool_viewer.may(Action.VIEW, job_4) and not pool_viewer.may(Action.RUN, job_4)
    assert not pool_viewer.may(Action.VIEW, job_5)
    operator = user((REP_5, ObjectRole.OPERATOR))
    assert operator.may(Action.RUN, job_5) and not operator.may(Action.MANAGE, job_5)
    assert not operator.may(Action.VIEW, job_4)
    # A grant on backup job 4 is not one on replication job 4.
    backup_admin = user((BACKUP_4, ObjectRole.ADMIN))
    assert not backup_admin.may(Action.VIEW, job_4)
    assert backup_admin.may(Action.MANAGE, await p.path(ObjectKind.BACKUP_JOB, "4"))


async def test_a_replica_stands_for_its_job_then_its_source_pool() -> None:
    p = places()
    assert await p.path(Via.REPLICA, "10") == (*TOP[1], REP_4)
    assert await p.path(Via.REPLICA, "11") == (*TOP[2], REP_5)
    # Its job deleted (or never known): the replica stays in its source pool.
    assert await p.path(Via.REPLICA, "12") == TOP[1]
    assert await p.path(Via.REPLICA, "13") == TOP[2]
    for unknown in ("99", "x", str(2**80)):
        assert await p.path(Via.REPLICA, unknown) == NOWHERE
    job_admin = user((REP_4, ObjectRole.ADMIN))
    assert job_admin.may(Action.MANAGE, await p.path(Via.REPLICA, "10"))
    assert not job_admin.may(Action.VIEW, await p.path(Via.REPLICA, "11"))
    # An orphan is its source pool's only: the job's grant went with the job.
    assert not job_admin.may(Action.VIEW, await p.path(Via.REPLICA, "12"))


async def test_operations_on_jobs_and_replicas_stand_for_the_job() -> None:
    p = places()
    assert await p.path(Via.OPERATION, "1") == (*TOP[1], REP_4)
    assert await p.path(Via.OPERATION, "2") == (*TOP[1], REP_4)
    assert await p.path(Via.OPERATION, "3") == (*TOP[2], REP_5)
    # The targets the replication domain writes are the tree's names.
    assert job_target(4) == str(REP_4)
    assert replica_target(10) == f"{Via.REPLICA}:10"


async def test_the_replication_operations_a_principal_may_see() -> None:
    view = await places().view()
    pool_viewer = user((POOL_1, ObjectRole.VIEWER))
    only = view.operation_filter(pool_viewer, Action.VIEW)
    assert only is not None and not only.kinds
    assert only.targets == {"pool:pool-1", "replication-job:4", "replica:10", "replica:12"}
    job_operator = user((REP_5, ObjectRole.OPERATOR))
    only = view.operation_filter(job_operator, Action.RUN)
    assert only is not None and only.targets == {"replication-job:5", "replica:11"}
    everything = user((EVERYTHING, ObjectRole.VIEWER))
    only = view.operation_filter(everything, Action.VIEW)
    assert only is not None and {"replication-job", "replica"} <= only.kinds


async def test_a_replication_job_has_a_name_and_is_named_by_its_id() -> None:
    view = await places().view()
    assert view.name_of(REP_4) == "dr web" and view.name_of(ref_of("9")) is None
    assert parse_object("replication-job:4") == REP_4
    with pytest.raises(GrantInputError, match="replication jobs are named by their id"):
        parse_object("replication-job:four")
    with pytest.raises(GrantInputError, match="backup jobs are named by their id"):
        parse_object("backup-job:x")
