"""The audit log: security events, kept in the database and logged."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from xenkeep.auth.const import AuditEvent
from xenkeep.store import Database

log = logging.getLogger("xenkeep.audit")


class AuditLog:
    """Appends security events; lists them for administrators."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def record(
        self, event: AuditEvent, *, username: str = "", ip: str = "", **detail: Any
    ) -> None:
        """Record an event. ``detail`` must never hold a secret."""
        await self._db.insert(
            "INSERT INTO audit_log (ts, event, username, ip, detail) VALUES (?, ?, ?, ?, ?)",
            (self._clock(), str(event), username, ip, json.dumps(detail, sort_keys=True)),
        )
        log.info(
            "%s user=%r ip=%s %s",
            event,
            username,
            ip,
            json.dumps(detail, sort_keys=True) if detail else "",
            extra={"XENKEEP_EVENT": str(event)},
        )

    async def entries(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest entries first."""
        rows = await self._db.fetchall(
            "SELECT ts, event, username, ip, detail FROM audit_log ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            {
                "ts": row["ts"],
                "event": row["event"],
                "username": row["username"],
                "ip": row["ip"],
                "detail": json.loads(row["detail"]),
            }
            for row in rows
        ]
