"""Persistence of replication jobs and of the replicas they keep.

The only module of the package that speaks SQL; runs, failovers and
failbacks are operations (:mod:`xenkeep.ops.store`), and a replica's points
live in its pool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Final

from xenkeep.errors import NotFoundError
from xenkeep.store import Database

from .const import ReplicaState
from .job import ReplicationSpec


class ReplicationJobNotFoundError(NotFoundError):
    """No such replication job."""

    code = "replication_job_not_found"


class ReplicaNotFoundError(NotFoundError):
    """No such replica."""

    code = "replica_not_found"


@dataclass(frozen=True)
class JobRow:
    """A stored job."""

    id: int
    spec: ReplicationSpec
    created_at: float
    updated_at: float
    last_slot: float | None
    next_run: float | None
    #: Why the schedule waits ("" = it does not).
    paused: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the API."""
        d = self.spec.as_dict()
        d.update(
            id=self.id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            last_slot=self.last_slot,
            next_run=self.next_run,
            paused=self.paused,
        )
        return d


@dataclass(frozen=True)
class ReplicaRow:
    """A stored replica: whose it is, where it lives, and its last figures."""

    id: int
    job_id: int | None
    job_name: str
    source_pool_id: str
    source_vm_uuid: str
    source_vm_name: str
    target_pool_id: str
    target_sr_uuid: str
    vm_uuid: str
    vm_name: str
    state: ReplicaState
    started_vm_uuid: str
    started_point_uuid: str
    started_at: float | None
    safety_snapshot_uuid: str
    latest_point_uuid: str
    latest_point_at: float | None
    points: int
    last_success_at: float | None
    last_attempt_at: float | None
    last_run_id: int | None
    last_bytes: int
    last_seconds: float
    last_error: str
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the API (RPO is added by the service)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["state"] = self.state.value
        d["last_speed"] = (
            round(self.last_bytes / self.last_seconds, 1) if self.last_seconds > 0 else 0.0
        )
        return d


#: Columns a replica's figures may change (never its identity).
_REPLICA_FIELDS: Final = frozenset(
    {
        "job_name",
        "source_vm_name",
        "vm_uuid",
        "vm_name",
        "state",
        "started_vm_uuid",
        "started_point_uuid",
        "started_at",
        "safety_snapshot_uuid",
        "latest_point_uuid",
        "latest_point_at",
        "points",
        "last_success_at",
        "last_attempt_at",
        "last_run_id",
        "last_bytes",
        "last_seconds",
        "last_error",
    }
)


def _job(row: Any) -> JobRow:
    return JobRow(
        id=int(row["id"]),
        spec=ReplicationSpec.from_json(row["spec"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        last_slot=row["last_slot"],
        next_run=row["next_run"],
        paused=str(row["paused"]),
    )


def _replica(row: Any) -> ReplicaRow:
    values = {k: row[k] for k in row.keys()}  # noqa: SIM118 - sqlite3.Row has no items()
    values["state"] = ReplicaState(values["state"])
    return ReplicaRow(**values)


class ReplicationStore:
    """Replication jobs and replicas in the daemon's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ jobs

    async def create_job(self, spec: ReplicationSpec, next_run: float | None, *, now: float) -> int:
        """Store a new job; its id."""
        return await self.db.insert(
            "INSERT INTO replication_jobs (name, spec, created_at, updated_at, next_run) "
            "VALUES (?, ?, ?, ?, ?)",
            (spec.name, spec.to_json(), now, now, next_run),
        )

    async def update_job(self, job_id: int, spec: ReplicationSpec, next_run: float | None) -> None:
        """Replace a job's settings."""
        n = await self.db.execute(
            "UPDATE replication_jobs SET name = ?, spec = ?, updated_at = ?, next_run = ? "
            "WHERE id = ?",
            (spec.name, spec.to_json(), time.time(), next_run, job_id),
        )
        if not n:
            raise ReplicationJobNotFoundError(f"no replication job {job_id}")

    async def delete_job(self, job_id: int) -> None:
        """Remove a job (its replicas stay, with job_id NULL)."""
        if not await self.db.execute("DELETE FROM replication_jobs WHERE id = ?", (job_id,)):
            raise ReplicationJobNotFoundError(f"no replication job {job_id}")

    async def job(self, job_id: int) -> JobRow:
        """One job, or NotFoundError."""
        row = await self.db.fetchone("SELECT * FROM replication_jobs WHERE id = ?", (job_id,))
        if row is None:
            raise ReplicationJobNotFoundError(f"no replication job {job_id}")
        return _job(row)

    async def jobs(self) -> list[JobRow]:
        """Every job, by name."""
        rows = await self.db.fetchall("SELECT * FROM replication_jobs ORDER BY name, id")
        return [_job(r) for r in rows]

    async def set_schedule_state(
        self, job_id: int, *, last_slot: float | None, next_run: float | None
    ) -> None:
        """Record the slot just started and when to look again."""
        await self.db.execute(
            "UPDATE replication_jobs SET last_slot = coalesce(?, last_slot), next_run = ? "
            "WHERE id = ?",
            (last_slot, next_run, job_id),
        )

    async def set_paused(self, job_id: int, reason: str) -> None:
        """Pause the job's schedule with a reason, or ("") resume it."""
        await self.db.execute(
            "UPDATE replication_jobs SET paused = ? WHERE id = ?", (reason, job_id)
        )

    # -------------------------------------------------------------- replicas

    async def replica(self, replica_id: int) -> ReplicaRow:
        """One replica, or NotFoundError."""
        row = await self.db.fetchone("SELECT * FROM replicas WHERE id = ?", (replica_id,))
        if row is None:
            raise ReplicaNotFoundError(f"no replica {replica_id}")
        return _replica(row)

    async def replicas(self, *, job_id: int | None = None) -> list[ReplicaRow]:
        """Every replica (of one job), by source VM name."""
        if job_id is None:
            rows = await self.db.fetchall("SELECT * FROM replicas ORDER BY source_vm_name, id")
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM replicas WHERE job_id = ? ORDER BY source_vm_name, id", (job_id,)
            )
        return [_replica(r) for r in rows]

    async def replica_of(self, job_id: int, source_vm_uuid: str) -> ReplicaRow | None:
        """The job's replica of a source VM, if it has one."""
        row = await self.db.fetchone(
            "SELECT * FROM replicas WHERE job_id = ? AND source_vm_uuid = ?",
            (job_id, source_vm_uuid),
        )
        return None if row is None else _replica(row)

    async def add_replica(
        self,
        *,
        job_id: int,
        job_name: str,
        source_pool_id: str,
        source_vm_uuid: str,
        source_vm_name: str,
        target_pool_id: str,
        target_sr_uuid: str,
    ) -> ReplicaRow:
        """The job's replica row of a source VM, created if it has none."""
        await self.db.execute(
            "INSERT INTO replicas (job_id, job_name, source_pool_id, source_vm_uuid, "
            "source_vm_name, target_pool_id, target_sr_uuid, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, source_vm_uuid) DO NOTHING",
            (
                job_id,
                job_name,
                source_pool_id,
                source_vm_uuid,
                source_vm_name,
                target_pool_id,
                target_sr_uuid,
                time.time(),
            ),
        )
        row = await self.replica_of(job_id, source_vm_uuid)
        assert row is not None
        return row

    async def update_replica(self, replica_id: int, **values: Any) -> None:
        """Change a replica's figures or state."""
        bad = set(values) - _REPLICA_FIELDS
        if bad:
            raise ValueError(f"unknown replica columns {sorted(bad)}")
        if not values:
            return
        sets = ", ".join(f"{k} = ?" for k in values)
        args = [v.value if isinstance(v, ReplicaState) else v for v in values.values()]
        await self.db.execute(f"UPDATE replicas SET {sets} WHERE id = ?", (*args, replica_id))  # noqa: S608 - column names from the allow-list

    async def delete_replica(self, replica_id: int) -> None:
        """Forget a replica (its VM and points in the pool are not touched here)."""
        if not await self.db.execute("DELETE FROM replicas WHERE id = ?", (replica_id,)):
            raise ReplicaNotFoundError(f"no replica {replica_id}")
