"""Where the object a request names sits in the permission tree.

A request names an object the way its URL or body does: a VM by uuid, a
backup or replication job by id, a pool by its registration id, an
operation by id (which stands for the object it works on), a replica by id
(which stands for its replication job). :class:`Places` turns that into a
path (see :mod:`.permissions`) from the pools' live caches, the jobs, the
replicas and the operations, which it reaches through the narrow contracts
below (the composition root gives it the real services).

A job of either kind sits in the pool of its ``pool_id``: a replication job
in its *source* pool, the one it reads, as a backup job does (its
destination SR may be in another pool; creating or changing a job checks
that SR at the route, never here). A replica sits where its job does, and
once its job is deleted (the replica stays, to be started), in its source
pool directly.

An object that cannot be found gets a path only grants on everything (or on
the object itself) reach, never an error: whether something exists is not
told to someone who may not see it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from xenkeep.auth.permissions import (
    APPLIANCE,
    EVERYTHING,
    JOB_KINDS,
    Action,
    ObjectKind,
    ObjectRef,
    Path,
    Principal,
)
from xenkeep.ops.const import TargetFilter


class Via(StrEnum):
    """Names of objects that stand for another object."""

    #: A pool's registration id (``/pools/{pool_id}``, a job's ``pool_id``).
    POOL_ID = "pool-id"
    #: An operation id: the object the operation works on (its target), or
    #: the appliance for targets that are no pool object (the datastore, a disk).
    OPERATION = "operation"
    #: A replica id: its replication job (its source pool once the job is gone).
    #: Also the kind of a replica operation's target ("replica:4").
    REPLICA = "replica"


#: What a request can name an object by.
Named = ObjectKind | Via


class PoolPlaces(Protocol):
    """The live pools (``xenkeep.pools.tree.PoolTree``)."""

    def path_of(self, obj: ObjectRef) -> Path | None:
        """Where a pool object sits; None when no connected pool has it."""
        ...

    async def pool_path(self, pool_id: int) -> Path | None:
        """The path of a registered pool; None when there is none."""
        ...

    def name_of(self, obj: ObjectRef) -> str | None:
        """The name of a pool object; None when no connected pool has it."""
        ...

    def refs(self) -> list[ObjectRef]:
        """Every object of the connected pools a grant can name."""
        ...


@dataclass(frozen=True, slots=True)
class JobFacts:
    """What the tree needs of a job (backup or replication)."""

    name: str
    #: Its pool's registration id (the job's ``pool_id``: a replication job's source).
    pool_id: str


@dataclass(frozen=True, slots=True)
class ReplicaFacts:
    """What the tree needs of a replica."""

    #: Its replication job's id; None once the job is deleted.
    job_id: int | None
    #: Its source pool's registration id.
    pool_id: str


#: Every job of every kind of :data:`~.permissions.JOB_KINDS`, by its ref
#: (``ObjectRef(BACKUP_JOB, "3")``, the id as ``str(int)``).
Jobs = Callable[[], Awaitable[Mapping[ObjectRef, JobFacts]]]
#: Every replica by id.
Replicas = Callable[[], Awaitable[Mapping[int, ReplicaFacts]]]
#: The target of an operation ("backup-job:3", "vm:<uuid>", "datastore"), None if none.
OperationTarget = Callable[[int], Awaitable[str | None]]


#: Where an unknown registration, operation or replica sits: under a pool with
#: no uuid, which no grant names (only a grant on everything reaches it).
_NOWHERE: Path = (EVERYTHING, ObjectRef(ObjectKind.POOL, ""))


def _unknown(obj: ObjectRef) -> Path:
    """The path of an object no live pool has: the object alone under everything."""
    return (EVERYTHING, obj)


#: What SQLite stores: an id outside names nothing (and must not reach a query).
_ID_RANGE = range(-(2**63), 2**63)


def _int(text: str) -> int | None:
    """An id as a request gives it, or None when it is none."""
    try:
        number = int(text)
    except ValueError:
        return None
    return number if number in _ID_RANGE else None


@dataclass(frozen=True, slots=True)
class PlaceView:
    """The tree at one moment, for deciding on many objects (a list) at once."""

    pools: PoolPlaces
    jobs: Mapping[ObjectRef, JobFacts]
    pool_paths: Mapping[str, Path]
    replicas: Mapping[int, ReplicaFacts] = field(default_factory=dict)

    def path(self, obj: ObjectRef) -> Path:
        """Where a grantable object sits."""
        if obj.kind is ObjectKind.ALL:
            return (EVERYTHING,)
        if obj.kind in JOB_KINDS:
            job = self._job(obj)
            top = self.pool_paths.get(job.pool_id) if job is not None else None
            return (*top, obj) if top else _unknown(obj)
        return self.pools.path_of(obj) or _unknown(obj)

    def _job(self, obj: ObjectRef) -> JobFacts | None:
        number = _int(obj.ref)
        return None if number is None else self.jobs.get(ObjectRef(obj.kind, str(number)))

    def replica_path(self, ref: str) -> Path:
        """Where a replica sits: its job's path; its source pool's once the job
        is deleted; for an unknown replica, a path only a grant on everything reaches."""
        number = _int(ref)
        replica = None if number is None else self.replicas.get(number)
        if replica is None:
            return _NOWHERE
        if replica.job_id is not None:
            job = ObjectRef(ObjectKind.REPLICATION_JOB, str(replica.job_id))
            if job in self.jobs:
                return self.path(job)
        return self.pool_paths.get(replica.pool_id) or _NOWHERE

    def name_of(self, obj: ObjectRef) -> str | None:
        """The name of an object; None when it is not there (now)."""
        if obj.kind is ObjectKind.ALL:
            return "everything"
        if obj.kind in JOB_KINDS:
            job = self._job(obj)
            return None if job is None else job.name
        return self.pools.name_of(obj)

    def target_path(self, target: str) -> Path:
        """Where an operation's target sits; the appliance for what is no pool object."""
        kind, _, ref = target.partition(":")
        if kind == Via.REPLICA:
            return self.replica_path(ref)
        obj = ObjectRef.parse(target)
        return APPLIANCE if obj is None or obj.kind is ObjectKind.ALL else self.path(obj)

    def operation_filter(self, principal: Principal, action: Action) -> TargetFilter | None:
        """The operations ``principal`` may do ``action`` on, as a filter of
        their targets; None when they may on every one (a super-administrator).

        Every object of the live pools, every job and replica is looked at,
        and the objects granted by name (a VM deleted since keeps its restores).
        """
        if principal.may(action, APPLIANCE):
            return None
        if principal.may(action, (EVERYTHING,)):
            return TargetFilter(kinds=frozenset({*(str(k) for k in ObjectKind), str(Via.REPLICA)}))
        candidates = {*self.pools.refs(), *principal.held, *self.jobs}
        targets = {
            str(ref)
            for ref in candidates
            if ref.kind is not ObjectKind.ALL and principal.may(action, self.path(ref))
        }
        targets.update(
            f"{Via.REPLICA}:{number}"
            for number in self.replicas
            if principal.may(action, self.replica_path(str(number)))
        )
        return TargetFilter(targets=frozenset(targets))


async def _no_replicas() -> Mapping[int, ReplicaFacts]:
    return {}


class Places:
    """Paths of the objects requests name."""

    def __init__(
        self,
        pools: PoolPlaces,
        jobs: Jobs,
        operation_target: OperationTarget,
        replicas: Replicas = _no_replicas,
    ) -> None:
        self._pools = pools
        self._jobs = jobs
        self._operation_target = operation_target
        self._replicas = replicas

    async def view(self) -> PlaceView:
        """The tree now (the jobs, the replicas and their pools read once), for lists."""
        jobs = await self._jobs()
        replicas = await self._replicas()
        paths: dict[str, Path] = {}
        for pool in {f.pool_id for f in jobs.values()} | {r.pool_id for r in replicas.values()}:
            number = _int(pool)
            found = await self._pools.pool_path(number) if number is not None else None
            if found is not None:
                paths[pool] = found
        return PlaceView(self._pools, jobs, paths, replicas)

    async def path(self, named: Named, ref: str) -> Path:
        """Where the object named ``ref`` (a uuid, an id) sits."""
        if named is Via.POOL_ID:
            number = _int(ref)
            found = await self._pools.pool_path(number) if number is not None else None
            return found or _NOWHERE
        if named is Via.OPERATION:
            number = _int(ref)
            target = await self._operation_target(number) if number is not None else None
            if target is None:
                return _NOWHERE
            return (await self.view()).target_path(target)
        if named is Via.REPLICA:
            return (await self.view()).replica_path(ref)
        if named in JOB_KINDS:
            return (await self.view()).path(ObjectRef(named, ref))
        return self._pools.path_of(ObjectRef(named, ref)) or _unknown(ObjectRef(named, ref))
