"""The audit log: security events, kept in the database and logged.

Anyone can cause security events (a sign-in with a wrong password, a form
without its CSRF token), so the log is built not to grow with an attacker's
effort:

- every field is cut to a fixed length before it is stored or logged;
- a repeated refusal (:data:`REPEATABLE`) from the same address within
  :data:`REPEAT_WINDOW` seconds adds to the count of the first row instead
  of adding a row, and only that first one reaches the system log;
- old rows are pruned by age and the table by size, refusals before the
  events an administrator needs (sign-ins, changes, tokens), and with them
  the sign-in failure counters whose throttling has expired.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.throttle import RESET_AFTER_SECONDS
from xenkeep.store import Database
from xenkeep.store.db import Transaction

log = logging.getLogger("xenkeep.audit")

#: Longest user name, address and detail value kept (characters); longer
#: ones are cut and marked with an ellipsis.
MAX_USERNAME: Final = 128
MAX_IP: Final = 64
MAX_DETAIL_VALUE: Final = 200
#: Longest detail object kept, as JSON; beyond it only its keys are kept.
MAX_DETAIL: Final = 2000

#: Refusals anyone can cause as often as they like: counted, not repeated.
REPEATABLE: Final = frozenset(
    {
        AuditEvent.CSRF_REJECTED,
        AuditEvent.SIGN_IN_FAILED,
        AuditEvent.SIGN_IN_THROTTLED,
        AuditEvent.SETUP_TOKEN_REJECTED,
        AuditEvent.PERMISSION_DENIED,
        AuditEvent.PROVIDER_SIGN_IN_FAILED,
    }
)
REPEAT_WINDOW: Final = 300.0

#: Refusals are kept 90 days, everything else 400 (a year and its audit).
KEEP_REFUSALS_SECONDS: Final = 90 * 86400.0
KEEP_SECONDS: Final = 400 * 86400.0
#: Past this many rows the oldest go, refusals first.
MAX_ROWS: Final = 20_000
#: Pruning runs at start and then once per this many recorded events.
PRUNE_EVERY: Final = 200

# Kept in the detail JSON of an aggregated row (no schema change needed);
# :meth:`AuditLog.entries` lifts them out as ``count`` and ``last_ts``.
_COUNT = "_count"
_LAST = "_last"


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _bounded_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` with every value (and the whole) cut to size."""
    kept: dict[str, Any] = {}
    for key, value in detail.items():
        name = _cut(str(key), 64)
        if isinstance(value, bool | int | float) or value is None:
            kept[name] = value
        elif isinstance(value, list | tuple) and all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value
        ):
            # A short list of names stays a list (the whole is still bounded below).
            kept[name] = [
                _cut(v, MAX_DETAIL_VALUE) if isinstance(v, str) else v for v in value[:50]
            ]
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            kept[name] = _cut(text, MAX_DETAIL_VALUE)
    if len(json.dumps(kept)) > MAX_DETAIL:
        return {"truncated": True, "keys": _cut(", ".join(kept), MAX_DETAIL_VALUE)}
    return kept


class AuditLog:
    """Appends security events; lists them for administrators."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._since_prune = PRUNE_EVERY  # prune on the first event

    async def record(
        self, event: AuditEvent, *, username: str = "", ip: str = "", **detail: Any
    ) -> None:
        """Record an event. ``detail`` must never hold a secret."""
        now = self._clock()
        username = _cut(username, MAX_USERNAME)
        ip = _cut(ip, MAX_IP)
        kept = _bounded_detail(detail)
        counted = False
        async with self._db.transaction() as tx:
            if event in REPEATABLE:
                counted = await self._count_repeat(tx, event, username, ip, now)
            if not counted:
                await tx.insert(
                    "INSERT INTO audit_log (ts, event, username, ip, detail) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (now, str(event), username, ip, json.dumps(kept, sort_keys=True)),
                )
        if not counted:
            log.info(
                "%s user=%r ip=%s %s",
                event,
                username,
                ip,
                json.dumps(kept, sort_keys=True) if kept else "",
                extra={"XENKEEP_EVENT": str(event)},
            )
        self._since_prune += 1
        if self._since_prune >= PRUNE_EVERY:
            await self.prune()

    @staticmethod
    async def _count_repeat(
        tx: Transaction, event: AuditEvent, username: str, ip: str, now: float
    ) -> bool:
        """Add one to the row of the same refusal for ``username`` from ``ip`` in
        the window. The name is part of "the same": an account's owner counts
        the attempts on that account (see AuthManager's failures since the last visit)."""
        row = await tx.fetchone(
            "SELECT id, detail FROM audit_log WHERE ts >= ? AND event = ? AND ip = ? "
            "AND username = ? ORDER BY id DESC LIMIT 1",
            (now - REPEAT_WINDOW, str(event), ip, username),
        )
        if row is None:
            return False
        detail = json.loads(row["detail"])
        detail[_COUNT] = int(detail.get(_COUNT, 1)) + 1
        detail[_LAST] = now
        await tx.execute(
            "UPDATE audit_log SET detail = ? WHERE id = ?",
            (json.dumps(detail, sort_keys=True), row["id"]),
        )
        return True

    async def prune(self) -> int:
        """Drop what is past keeping; the number of audit rows removed."""
        self._since_prune = 0
        now = self._clock()
        refusals = sorted(str(e) for e in REPEATABLE)
        marks = ", ".join("?" for _ in refusals)
        removed = 0
        async with self._db.transaction() as tx:
            removed += await tx.execute(
                f"DELETE FROM audit_log WHERE ts < ? AND event IN ({marks})",  # noqa: S608 - placeholders only
                (now - KEEP_REFUSALS_SECONDS, *refusals),
            )
            removed += await tx.execute("DELETE FROM audit_log WHERE ts < ?", (now - KEEP_SECONDS,))
            row = await tx.fetchone("SELECT COUNT(*) AS n FROM audit_log")
            excess = int(row["n"]) - MAX_ROWS if row else 0
            if excess > 0:
                removed += await tx.execute(
                    f"DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log "  # noqa: S608
                    f"WHERE event IN ({marks}) ORDER BY id LIMIT ?)",
                    (*refusals, excess),
                )
                row = await tx.fetchone("SELECT COUNT(*) AS n FROM audit_log")
                excess = int(row["n"]) - MAX_ROWS if row else 0
            if excess > 0:
                removed += await tx.execute(
                    "DELETE FROM audit_log WHERE id IN "
                    "(SELECT id FROM audit_log ORDER BY id LIMIT ?)",
                    (excess,),
                )
            # A failure counter older than the throttle's reset no longer
            # delays anyone (throttle.retry_after), so dropping it changes
            # no decision; newer ones are kept whatever their number, so a
            # flood of fresh names cannot push the real account's out.
            await tx.execute(
                "DELETE FROM auth_failures WHERE last_failure < ?",
                (now - RESET_AFTER_SECONDS,),
            )
        if removed:
            log.info("pruned %d old audit log entries", removed)
        return removed

    async def entries(self, limit: int = 200, *, before: int | None = None) -> list[dict[str, Any]]:
        """The newest entries first; with ``before``, those older than that id."""
        rows = await self._db.fetchall(
            "SELECT id, ts, event, username, ip, detail FROM audit_log "
            "WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before if before is not None else 1 << 62, limit),
        )
        found = []
        for row in rows:
            detail = json.loads(row["detail"])
            count = int(detail.pop(_COUNT, 1))
            last = float(detail.pop(_LAST, row["ts"]))
            found.append(
                {
                    "id": row["id"],
                    "ts": row["ts"],
                    "last_ts": last,
                    "count": count,
                    "event": row["event"],
                    "username": row["username"],
                    "ip": row["ip"],
                    "detail": detail,
                }
            )
        return found
