"""Persistence of operations, their sub-tasks and log lines.

The only module of the package that speaks SQL. The UI and the API read
these rows while the work writes them, so a page reload or a restart shows
the same state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from xenkeep.errors import NotFoundError
from xenkeep.store import Database

from .const import INTERRUPTED_MESSAGE, OpStatus, TargetFilter

_OP_COLUMNS: Final = frozenset(
    {
        "status",
        "stage",
        "started_at",
        "finished_at",
        "bytes",
        "total_bytes",
        "speed",
        "eta",
        "error",
        "report",
        "title",
    }
)
_TASK_COLUMNS: Final = frozenset(
    {
        "status",
        "stage",
        "name",
        "bytes",
        "total_bytes",
        "speed",
        "eta",
        "started_at",
        "finished_at",
        "error",
    }
)
#: A list never returns more rows than this.
MAX_LIST: Final = 500


def _set_clause(fields: Mapping[str, Any], allowed: frozenset[str]) -> tuple[str, list[Any]]:
    bad = set(fields) - allowed
    if bad:
        raise ValueError(f"unknown columns {sorted(bad)}")
    values = [json.dumps(v) if isinstance(v, dict | list) else v for v in fields.values()]
    return ", ".join(f"{k} = ?" for k in fields), values


class OperationStore:
    """Operations, sub-tasks and log lines in the daemon's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._changed = asyncio.Event()

    def changes(self) -> asyncio.Event:
        """An event set at the next change of any operation, task or log line.

        Take it before reading, then wait on it: a change made in between is
        not missed. Watchers (the live streams) re-read then.
        """
        return self._changed

    def touch(self) -> None:
        """Wake every watcher."""
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------ operations

    async def create(
        self,
        kind: str,
        *,
        target: str,
        title: str,
        trigger: str,
        params: Mapping[str, Any] | None = None,
    ) -> int:
        """A new pending operation; its id."""
        op_id = await self.db.insert(
            "INSERT INTO operations (kind, target, title, trigger, status, created_at, params) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                target,
                title,
                trigger,
                OpStatus.PENDING.value,
                time.time(),
                json.dumps(dict(params or {})),
            ),
        )
        self.touch()
        return op_id

    async def delete(self, op_id: int) -> None:
        """Remove an operation that never started (its claims were refused)."""
        await self.db.execute("DELETE FROM operations WHERE id = ?", (op_id,))
        self.touch()

    async def update(self, op_id: int, **fields: Any) -> None:
        """Change some columns of an operation."""
        clause, values = _set_clause(fields, _OP_COLUMNS)
        await self.db.execute(f"UPDATE operations SET {clause} WHERE id = ?", (*values, op_id))  # noqa: S608
        self.touch()

    async def retarget(self, op_id: int, target: str) -> None:
        """Point the operation at the object it has made (a created VM), which
        did not exist when it started."""
        await self.db.execute("UPDATE operations SET target = ? WHERE id = ?", (target, op_id))
        self.touch()

    async def get(self, op_id: int) -> dict[str, Any]:
        """One operation as a dict, or NotFoundError."""
        row = await self.db.fetchone("SELECT * FROM operations WHERE id = ?", (op_id,))
        if row is None:
            raise NotFoundError(f"no operation {op_id}")
        return _op_dict(row)

    async def find(
        self,
        *,
        kinds: Sequence[str] = (),
        statuses: Sequence[str] = (),
        target: str | None = None,
        only: TargetFilter | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Recent operations, newest first, filtered by kind, status and
        target, and with ``only`` to the targets it allows."""
        where: list[str] = []
        params: list[Any] = []
        for column, values in (("kind", kinds), ("status", statuses)):
            if values:
                where.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if only is not None:
            # One JSON parameter each: a person may see thousands of VMs.
            where.append(
                "(target IN (SELECT value FROM json_each(?)) OR "
                "(instr(target, ':') > 0 AND substr(target, 1, instr(target, ':') - 1) "
                "IN (SELECT value FROM json_each(?))))"
            )
            params += [json.dumps(sorted(only.targets)), json.dumps(sorted(only.kinds))]
        sql = "SELECT * FROM operations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = await self.db.fetchall(sql, (*params, max(1, min(limit, MAX_LIST))))
        return [_op_dict(r) for r in rows]

    async def forget_old(self, kind: str, *, keep: int) -> int:
        """Delete the finished operations of ``kind`` beyond the newest ``keep``
        (their sub-tasks and log go with them); how many were deleted.

        For kinds that run often and matter only recently (diagnostics every
        hour): their history must not crowd out the backups' in the lists.
        """
        finished = [s.value for s in OpStatus if s not in (OpStatus.PENDING, OpStatus.RUNNING)]
        marks = ", ".join("?" for _ in finished)
        count = await self.db.execute(
            f"DELETE FROM operations WHERE kind = ? AND status IN ({marks}) AND id NOT IN "  # noqa: S608
            "(SELECT id FROM operations WHERE kind = ? ORDER BY id DESC LIMIT ?)",
            (kind, *finished, kind, max(0, keep)),
        )
        if count:
            self.touch()
        return count

    async def mark_interrupted(self) -> list[int]:
        """At start: what a killed daemon left pending or running is interrupted.

        Its log is kept, with one line saying what happened.
        """
        rows = await self.db.fetchall(
            "SELECT id FROM operations WHERE status IN (?, ?)",
            (OpStatus.PENDING.value, OpStatus.RUNNING.value),
        )
        ids = [int(r["id"]) for r in rows]
        now = time.time()
        for op_id in ids:
            async with self.db.transaction() as tx:
                await tx.execute(
                    "UPDATE operations SET status = ?, finished_at = ?, error = ?, speed = 0, "
                    "eta = NULL WHERE id = ?",
                    (OpStatus.INTERRUPTED.value, now, INTERRUPTED_MESSAGE, op_id),
                )
                await tx.execute(
                    "UPDATE operation_tasks SET status = ?, finished_at = ?, error = ?, "
                    "speed = 0, eta = NULL WHERE op_id = ? AND status IN (?, ?)",
                    (
                        OpStatus.INTERRUPTED.value,
                        now,
                        INTERRUPTED_MESSAGE,
                        op_id,
                        OpStatus.PENDING.value,
                        OpStatus.RUNNING.value,
                    ),
                )
                await tx.insert(
                    "INSERT INTO operation_log (op_id, ts, level, message) VALUES (?, ?, ?, ?)",
                    (
                        op_id,
                        now,
                        "error",
                        INTERRUPTED_MESSAGE + "; what it left incomplete is not kept",
                    ),
                )
        return ids

    # ----------------------------------------------------------------- tasks

    async def create_task(
        self,
        op_id: int,
        *,
        subject: str,
        name: str,
        stage: str,
        parent_id: int | None = None,
        part: str | None = None,
    ) -> int:
        """A new running sub-task (a VM, or one disk of it); its id."""
        task_id = await self.db.insert(
            "INSERT INTO operation_tasks (op_id, parent_id, subject, name, part, status, "
            "stage, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (op_id, parent_id, subject, name, part, OpStatus.RUNNING.value, stage, time.time()),
        )
        self.touch()
        return task_id

    async def update_task(
        self, task_id: int, detail: Mapping[str, Any] | None = None, **fields: Any
    ) -> None:
        """Change some columns of a sub-task; ``detail`` merges into its facts."""
        clause, values = _set_clause(fields, _TASK_COLUMNS) if fields else ("", [])
        if detail:
            extra = "detail = json_patch(detail, ?)"
            clause = f"{clause}, {extra}" if clause else extra
            values.append(json.dumps(dict(detail)))
        if not clause:
            return
        await self.db.execute(
            f"UPDATE operation_tasks SET {clause} WHERE id = ?",  # noqa: S608
            (*values, task_id),
        )
        self.touch()

    async def tasks(self, op_id: int) -> list[dict[str, Any]]:
        """The sub-tasks of an operation, each followed by its own (a VM by its
        disks, however the work interleaved them), with its ``depth``."""
        rows = await self.db.fetchall(
            "SELECT * FROM operation_tasks WHERE op_id = ? ORDER BY id", (op_id,)
        )
        tasks = [_task_dict(r) for r in rows]
        _sum_running_parents(tasks)
        return _tree_order(tasks)

    async def close_open_tasks(self, op_id: int, status: OpStatus, error: str) -> int:
        """When an operation ends: its sub-tasks still pending or running end
        as it did (a failed restore's disk no longer reads "import running");
        how many were closed."""
        count = await self.db.execute(
            "UPDATE operation_tasks SET status = ?, finished_at = ?, speed = 0, eta = NULL, "
            "error = CASE WHEN error = '' THEN ? ELSE error END "
            "WHERE op_id = ? AND status IN (?, ?)",
            (
                status.value,
                time.time(),
                error or status.value,
                op_id,
                OpStatus.PENDING.value,
                OpStatus.RUNNING.value,
            ),
        )
        if count:
            self.touch()
        return count

    async def leaf_bytes(self, op_id: int) -> int:
        """Bytes the sub-tasks that have none of their own moved (the disks
        of a run): what the operation as a whole moved."""
        row = await self.db.fetchone(
            "SELECT coalesce(sum(bytes), 0) AS moved FROM operation_tasks t WHERE op_id = ? "
            "AND NOT EXISTS (SELECT 1 FROM operation_tasks c WHERE c.parent_id = t.id)",
            (op_id,),
        )
        return int(row["moved"]) if row else 0

    # ------------------------------------------------------------------- log

    async def log(
        self, op_id: int, message: str, *, level: str = "info", task_id: int | None = None
    ) -> None:
        """Append a line to an operation's log."""
        await self.db.insert(
            "INSERT INTO operation_log (op_id, task_id, ts, level, message) VALUES (?, ?, ?, ?, ?)",
            (op_id, task_id, time.time(), level, message),
        )
        self.touch()

    async def log_lines(self, op_id: int, after: int = 0) -> list[dict[str, Any]]:
        """An operation's log lines with id greater than ``after``."""
        rows = await self.db.fetchall(
            "SELECT id, task_id, ts, level, message FROM operation_log "
            "WHERE op_id = ? AND id > ? ORDER BY id",
            (op_id, after),
        )
        return [dict(r) for r in rows]


def _op_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["report"] = json.loads(d.get("report") or "{}")
    d["params"] = json.loads(d.get("params") or "{}")
    return d


def _task_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    detail = json.loads(d.pop("detail", None) or "{}")
    # The kind's facts sit beside the common columns; the common ones win.
    return {**detail, **d}


def _tree_order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``tasks`` (in creation order) with each one's children right after it."""
    children: dict[int | None, list[dict[str, Any]]] = {}
    ids = {int(t["id"]) for t in tasks}
    for t in tasks:
        parent = t.get("parent_id")
        # A child whose parent is not listed stands at the top rather than vanish.
        key = int(parent) if parent is not None and int(parent) in ids else None
        children.setdefault(key, []).append(t)
    out: list[dict[str, Any]] = []

    def walk(parent: int | None, depth: int) -> None:
        for t in children.get(parent, []):
            out.append({**t, "depth": depth})
            walk(int(t["id"]), depth + 1)

    walk(None, 0)
    return out


def _sum_running_parents(tasks: list[dict[str, Any]]) -> None:
    """Give each running parent task the sum of its children's progress.

    The work writes a parent's own totals only when it ends; meanwhile its
    row would read zero while its children move. Bytes and totals add up,
    speeds of the children moving now add up, and the parent is done when
    its slowest child is.
    """
    children: dict[int, list[dict[str, Any]]] = {}
    for t in tasks:
        if t.get("parent_id") is not None:
            children.setdefault(int(t["parent_id"]), []).append(t)
    for t in tasks:
        kids = children.get(int(t["id"]))
        if not kids or t.get("status") != OpStatus.RUNNING.value:
            continue
        moving = [c for c in kids if c.get("status") == OpStatus.RUNNING.value]
        totals = [int(c.get("total_bytes") or 0) for c in kids]
        t["bytes"] = sum(int(c.get("bytes") or 0) for c in kids)
        # Unknown while any child's size is unknown.
        t["total_bytes"] = sum(totals) if all(totals) else None
        t["speed"] = sum(float(c.get("speed") or 0) for c in moving)
        etas = [float(c["eta"]) for c in moving if c.get("eta") is not None]
        t["eta"] = max(etas) if etas else None
