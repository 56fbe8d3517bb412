"""Persistence of backup jobs: their settings and their schedule state.

The only module of the package that speaks SQL; runs are operations
(:mod:`xenkeep.ops.store`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from xenkeep.errors import NotFoundError
from xenkeep.store import Database

from .job import JobSpec


@dataclass(frozen=True)
class JobRow:
    """A stored job."""

    id: int
    spec: JobSpec
    created_at: float
    updated_at: float
    last_slot: float | None
    next_run: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the API."""
        d: dict[str, Any] = json.loads(self.spec.to_json())
        d.update(
            id=self.id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            last_slot=self.last_slot,
            next_run=self.next_run,
        )
        return d


def _job(row: Any) -> JobRow:
    return JobRow(
        id=int(row["id"]),
        spec=JobSpec.from_json(row["spec"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        last_slot=row["last_slot"],
        next_run=row["next_run"],
    )


class JobStore:
    """Backup jobs in the daemon's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ jobs

    async def create_job(
        self, spec: JobSpec, next_run: float | None, *, now: float | None = None
    ) -> int:
        """Store a new job; its id. ``now`` is its creation time (the scheduler's clock)."""
        now = time.time() if now is None else now
        return await self.db.insert(
            "INSERT INTO backup_jobs (name, spec, created_at, updated_at, next_run) "
            "VALUES (?, ?, ?, ?, ?)",
            (spec.name, spec.to_json(), now, now, next_run),
        )

    async def update_job(self, job_id: int, spec: JobSpec, next_run: float | None) -> None:
        """Replace a job's settings."""
        n = await self.db.execute(
            "UPDATE backup_jobs SET name = ?, spec = ?, updated_at = ?, next_run = ? WHERE id = ?",
            (spec.name, spec.to_json(), time.time(), next_run, job_id),
        )
        if not n:
            raise NotFoundError(f"no backup job {job_id}")

    async def delete_job(self, job_id: int) -> None:
        """Remove a job (its runs stay in the history)."""
        if not await self.db.execute("DELETE FROM backup_jobs WHERE id = ?", (job_id,)):
            raise NotFoundError(f"no backup job {job_id}")

    async def job(self, job_id: int) -> JobRow:
        """One job, or NotFoundError."""
        row = await self.db.fetchone("SELECT * FROM backup_jobs WHERE id = ?", (job_id,))
        if row is None:
            raise NotFoundError(f"no backup job {job_id}")
        return _job(row)

    async def jobs(self) -> list[JobRow]:
        """Every job, by name."""
        rows = await self.db.fetchall("SELECT * FROM backup_jobs ORDER BY name, id")
        return [_job(r) for r in rows]

    async def set_schedule_state(
        self, job_id: int, *, last_slot: float | None, next_run: float | None
    ) -> None:
        """Record the slot just started and when to look again."""
        await self.db.execute(
            "UPDATE backup_jobs SET last_slot = coalesce(?, last_slot), next_run = ? WHERE id = ?",
            (last_slot, next_run, job_id),
        )
