"""Persistence of jobs, runs, per-VM/per-disk tasks and run logs.

The only module of the package that speaks SQL. Runs and tasks are the
persisted jobs of the style guide: the UI and the API read these rows while
the runner writes them, so a page reload or a restart shows the same state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from xenkeep.errors import NotFoundError
from xenkeep.store import Database

from .const import RunKind, RunStatus
from .job import JobSpec

_RUN_COLUMNS: Final = frozenset(
    {"status", "stage", "started_at", "finished_at", "bytes", "total_bytes", "error", "report"}
)
_TASK_COLUMNS: Final = frozenset(
    {
        "status",
        "stage",
        "transfer",
        "reason",
        "bytes",
        "total_bytes",
        "speed",
        "eta",
        "started_at",
        "finished_at",
        "merge_seconds",
        "point_id",
        "error",
        "vm_name",
    }
)


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


def _set_clause(fields: Mapping[str, Any], allowed: frozenset[str]) -> tuple[str, list[Any]]:
    bad = set(fields) - allowed
    if bad:
        raise ValueError(f"unknown columns {sorted(bad)}")
    values = [json.dumps(v) if isinstance(v, dict | list) else v for v in fields.values()]
    return ", ".join(f"{k} = ?" for k in fields), values


class BackupHistory:
    """Jobs, runs, tasks and log lines in the daemon's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._changed = asyncio.Event()

    def changes(self) -> asyncio.Event:
        """An event set at the next change of any run, task or log line.

        Take it before reading, then wait on it: a change made in between
        is not missed. Watchers (the live progress stream) re-read then.
        """
        return self._changed

    def _touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

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

    # ------------------------------------------------------------------ runs

    async def create_run(
        self,
        kind: RunKind,
        *,
        job_id: int | None,
        job_name: str,
        trigger: str,
        params: Mapping[str, Any] | None = None,
    ) -> int:
        """A new pending run; its id."""
        return await self.db.insert(
            "INSERT INTO backup_runs (kind, job_id, job_name, trigger, status, created_at, params) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                kind.value,
                job_id,
                job_name,
                trigger,
                RunStatus.PENDING.value,
                time.time(),
                json.dumps(dict(params or {})),
            ),
        )

    async def update_run(self, run_id: int, **fields: Any) -> None:
        """Change some columns of a run."""
        clause, values = _set_clause(fields, _RUN_COLUMNS)
        await self.db.execute(f"UPDATE backup_runs SET {clause} WHERE id = ?", (*values, run_id))  # noqa: S608
        self._touch()

    async def run(self, run_id: int) -> dict[str, Any]:
        """One run as a dict, or NotFoundError."""
        row = await self.db.fetchone("SELECT * FROM backup_runs WHERE id = ?", (run_id,))
        if row is None:
            raise NotFoundError(f"no run {run_id}")
        return _run_dict(row)

    async def runs(
        self, *, job_id: int | None = None, kind: RunKind | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Recent runs, newest first."""
        where: list[str] = []
        params: list[Any] = []
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind.value)
        sql = "SELECT * FROM backup_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = await self.db.fetchall(sql, (*params, limit))
        return [_run_dict(r) for r in rows]

    async def last_run(self, job_id: int) -> dict[str, Any] | None:
        """The newest run of a job, if any."""
        runs = await self.runs(job_id=job_id, limit=1)
        return runs[0] if runs else None

    async def mark_interrupted(self) -> list[int]:
        """At start: runs and tasks left running by a killed daemon are interrupted."""
        rows = await self.db.fetchall(
            "SELECT id FROM backup_runs WHERE status IN (?, ?)",
            (RunStatus.PENDING.value, RunStatus.RUNNING.value),
        )
        ids = [int(r["id"]) for r in rows]
        now = time.time()
        msg = "the daemon stopped during this run"
        for run_id in ids:
            async with self.db.transaction() as tx:
                await tx.execute(
                    "UPDATE backup_runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                    (RunStatus.INTERRUPTED.value, now, msg, run_id),
                )
                await tx.execute(
                    "UPDATE backup_tasks SET status = ?, finished_at = ?, error = ? "
                    "WHERE run_id = ? AND status IN (?, ?)",
                    (
                        RunStatus.INTERRUPTED.value,
                        now,
                        msg,
                        run_id,
                        RunStatus.PENDING.value,
                        RunStatus.RUNNING.value,
                    ),
                )
                await tx.insert(
                    "INSERT INTO backup_log (run_id, ts, level, message) VALUES (?, ?, ?, ?)",
                    (run_id, now, "error", msg + "; nothing it left incomplete is listed"),
                )
        return ids

    # ----------------------------------------------------------------- tasks

    async def create_task(
        self,
        run_id: int,
        *,
        vm_uuid: str,
        vm_name: str,
        stage: str,
        parent_id: int | None = None,
        disk_key: str | None = None,
    ) -> int:
        """A new task (a VM, or one disk of it); its id."""
        task_id = await self.db.insert(
            "INSERT INTO backup_tasks (run_id, parent_id, vm_uuid, vm_name, disk_key, status, "
            "stage, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                parent_id,
                vm_uuid,
                vm_name,
                disk_key,
                RunStatus.RUNNING.value,
                stage,
                time.time(),
            ),
        )
        self._touch()
        return task_id

    async def update_task(self, task_id: int, **fields: Any) -> None:
        """Change some columns of a task."""
        clause, values = _set_clause(fields, _TASK_COLUMNS)
        await self.db.execute(f"UPDATE backup_tasks SET {clause} WHERE id = ?", (*values, task_id))  # noqa: S608
        self._touch()

    async def tasks(self, run_id: int) -> list[dict[str, Any]]:
        """The tasks of a run, in creation order."""
        rows = await self.db.fetchall(
            "SELECT * FROM backup_tasks WHERE run_id = ? ORDER BY id", (run_id,)
        )
        tasks = [dict(r) for r in rows]
        _sum_running_vms(tasks)
        return tasks

    # ------------------------------------------------------------------- log

    async def log(
        self, run_id: int, message: str, *, level: str = "info", task_id: int | None = None
    ) -> None:
        """Append a line to a run's log."""
        await self.db.insert(
            "INSERT INTO backup_log (run_id, task_id, ts, level, message) VALUES (?, ?, ?, ?, ?)",
            (run_id, task_id, time.time(), level, message),
        )
        self._touch()

    async def log_lines(self, run_id: int, after: int = 0) -> list[dict[str, Any]]:
        """A run's log lines with id greater than ``after``."""
        rows = await self.db.fetchall(
            "SELECT id, task_id, ts, level, message FROM backup_log "
            "WHERE run_id = ? AND id > ? ORDER BY id",
            (run_id, after),
        )
        return [dict(r) for r in rows]


def _run_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["report"] = json.loads(d.get("report") or "{}")
    d["params"] = json.loads(d.get("params") or "{}")
    return d


def _sum_running_vms(tasks: list[dict[str, Any]]) -> None:
    """Give each running VM task the sum of its disks' progress.

    The runner writes a VM's own totals only when it ends; meanwhile its row
    would read zero while its disks move. Bytes and totals add up, speeds of
    the disks moving now add up, and the VM is done when its slowest disk is.
    """
    disks: dict[int, list[dict[str, Any]]] = {}
    for t in tasks:
        if t.get("parent_id") is not None:
            disks.setdefault(int(t["parent_id"]), []).append(t)
    for t in tasks:
        children = disks.get(int(t["id"]))
        if not children or t.get("status") != RunStatus.RUNNING.value:
            continue
        moving = [c for c in children if c.get("status") == RunStatus.RUNNING.value]
        totals = [int(c.get("total_bytes") or 0) for c in children]
        t["bytes"] = sum(int(c.get("bytes") or 0) for c in children)
        # Unknown while any disk's size is unknown.
        t["total_bytes"] = sum(totals) if all(totals) else None
        t["speed"] = sum(float(c.get("speed") or 0) for c in moving)
        etas = [float(c["eta"]) for c in moving if c.get("eta") is not None]
        t["eta"] = max(etas) if etas else None
