"""The systemd journal from the daemon's side: filtered reads, follow, error counts.

Reads go through ``systemd-python`` (``systemd.journal.Reader``; Debian's
``python3-systemd``), which is blocking: every call here runs in a thread.
The appliance reads the system journal (the daemon's user is in
``systemd-journal``); ``directory`` reads journal files from a directory
instead (tests, or a journal copied from another machine). Without
``systemd-python`` or without any journal the reads are empty and
:meth:`Journal.unavailable` says why.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from xenkeep.errors import ValidationError

log = logging.getLogger(__name__)

#: syslog priorities, as journalctl names them.
PRIORITIES: Final = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
#: At most this many entries per read.
MAX_ENTRIES: Final = 5000
#: A follower wakes this often to notice a closed stream.
FOLLOW_WAIT: Final = 1.0
#: The fields a unit filter matches (as ``journalctl -u``: the unit's own
#: processes, and what systemd says about the unit).
_UNIT_FIELDS: Final = ("_SYSTEMD_UNIT", "UNIT")
#: Where journald keeps the system journal (volatile, persistent).
SYSTEM_JOURNALS: Final = (Path("/run/log/journal"), Path("/var/log/journal"))


def parse_priority(text: str | int | None, default: int = 7) -> int:
    """A priority by number (0-7) or name (``err``, ``warning``...)."""
    if text is None or text == "":
        return default
    raw = str(text).strip().lower()
    if raw.isdigit() and 0 <= int(raw) <= 7:
        return int(raw)
    if raw in PRIORITIES:
        return PRIORITIES.index(raw)
    raise ValidationError(
        f"unknown priority {raw[:20]!r}; one of 0-7 or {', '.join(PRIORITIES)}", field="priority"
    )


@dataclass(frozen=True, slots=True)
class JournalQuery:
    """Which entries: units (any of them), the least urgent priority, a time span."""

    units: tuple[str, ...] = ()
    #: 0 emerg ... 7 debug: entries at this priority or more urgent.
    priority: int = 7
    since: float | None = None
    until: float | None = None
    limit: int = 500


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journal entry as the log view shows it."""

    ts: float
    priority: int
    unit: str
    identifier: str
    message: str
    cursor: str = field(repr=False, default="")

    def as_dict(self) -> dict[str, Any]:
        """JSON form (API, event stream)."""
        return {
            "ts": self.ts,
            "priority": self.priority,
            "priority_name": PRIORITIES[self.priority] if 0 <= self.priority <= 7 else "",
            "unit": self.unit,
            "identifier": self.identifier,
            "message": self.message,
            "cursor": self.cursor,
        }

    def line(self) -> str:
        """A ``journalctl -o short-iso``-like line (UTC) for files."""
        stamp = dt.datetime.fromtimestamp(self.ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        who = self.identifier or self.unit or "?"
        level = PRIORITIES[self.priority] if 0 <= self.priority <= 7 else str(self.priority)
        return f"{stamp} {who} [{level}] {self.message}"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):  # a field given twice
        return " ".join(_text(v) for v in value)
    return "" if value is None else str(value)


def _entry(raw: dict[str, Any]) -> JournalEntry:
    stamp = raw.get("__REALTIME_TIMESTAMP")
    ts = stamp.timestamp() if isinstance(stamp, dt.datetime) else 0.0
    try:
        priority = int(raw.get("PRIORITY", 6))
    except (TypeError, ValueError):
        priority = 6
    return JournalEntry(
        ts=ts,
        priority=priority,
        unit=_text(raw.get("_SYSTEMD_UNIT") or raw.get("UNIT")),
        identifier=_text(raw.get("SYSLOG_IDENTIFIER") or raw.get("_COMM")),
        message=_text(raw.get("MESSAGE")),
        cursor=_text(raw.get("__CURSOR")),
    )


class Journal:
    """Blocking reads of the journal, each wrapped for the event loop."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory

    def unavailable_blocking(self) -> str | None:
        """None when there is a journal to read, else why not (in words)."""
        try:
            import systemd.journal  # noqa: F401
        except ImportError:
            return "systemd-python is not installed, so the journal cannot be read"
        if self.directory is not None:
            return None if self.directory.is_dir() else f"no journal directory {self.directory}"
        # Without journald (a container, `make run`) the system journal reads
        # as empty, which must not pass for "no errors".
        for root in SYSTEM_JOURNALS:
            if root.is_dir() and any(root.rglob("*.journal")):
                return None
        return "this machine keeps no systemd journal"

    async def unavailable(self) -> str | None:
        """:meth:`unavailable_blocking` off the event loop."""
        return await asyncio.to_thread(self.unavailable_blocking)

    def _reader(self, query: JournalQuery) -> Any:
        from systemd import journal

        reader = (
            journal.Reader(path=str(self.directory))
            if self.directory is not None
            else journal.Reader(flags=journal.SYSTEM)
        )
        priorities = [str(p) for p in range(0, min(7, max(0, query.priority)) + 1)]
        # journald matches: different fields AND, one field's values OR, and a
        # disjunction ORs whole groups. "any of these units, and at most this
        # priority" is therefore one group per unit field.
        groups: list[tuple[str | None, str]] = [
            (f, u) for u in query.units for f in _UNIT_FIELDS
        ] or [(None, "")]
        for i, (name, unit) in enumerate(groups):
            if i:
                reader.add_disjunction()
            if name is not None:
                reader.add_match(f"{name}={unit}")
            if query.priority < 7:
                for p in priorities:
                    reader.add_match(f"PRIORITY={p}")
        return reader

    def read_blocking(self, query: JournalQuery) -> list[JournalEntry]:
        """The newest ``limit`` matching entries, oldest first."""
        if self.unavailable_blocking() is not None:
            return []
        limit = max(1, min(query.limit, MAX_ENTRIES))
        reader = self._reader(query)
        try:
            if query.until is not None:
                reader.seek_realtime(query.until)
            else:
                reader.seek_tail()
            out: list[JournalEntry] = []
            while len(out) < limit:
                raw = reader.get_previous()
                if not raw:
                    break
                entry = _entry(raw)
                if query.until is not None and entry.ts > query.until:
                    continue
                if query.since is not None and entry.ts < query.since:
                    break
                out.append(entry)
            out.reverse()
            return out
        finally:
            reader.close()

    async def read(self, query: JournalQuery) -> list[JournalEntry]:
        """:meth:`read_blocking` off the event loop."""
        return await asyncio.to_thread(self.read_blocking, query)

    def iter_blocking(self, query: JournalQuery) -> Iterator[JournalEntry]:
        """Every matching entry since ``query.since``, oldest first, without a
        limit (the support bundle streams them to a file)."""
        if self.unavailable_blocking() is not None:
            return
        reader = self._reader(query)
        try:
            if query.since is not None:
                reader.seek_realtime(query.since)
            else:
                reader.seek_head()
            while True:
                raw = reader.get_next()
                if not raw:
                    return
                entry = _entry(raw)
                if query.until is not None and entry.ts > query.until:
                    return
                yield entry
        finally:
            reader.close()

    def error_counts_blocking(self, since: float) -> Counter[str]:
        """Entries at priority ``err`` or more urgent since ``since``, by unit
        (or program, when the entry has no unit)."""
        counts: Counter[str] = Counter()
        for entry in self.iter_blocking(JournalQuery(priority=3, since=since)):
            counts[entry.unit or entry.identifier or "?"] += 1
        return counts

    async def error_counts(self, since: float) -> Counter[str]:
        """:meth:`error_counts_blocking` off the event loop."""
        return await asyncio.to_thread(self.error_counts_blocking, since)

    async def follow(
        self, query: JournalQuery, *, keepalive: float = 15.0
    ) -> AsyncIterator[list[JournalEntry] | None]:
        """The last ``limit`` entries, then each batch of new ones as they are
        written; ``None`` after ``keepalive`` seconds without any (for the
        stream's keep-alive). Never ends by itself."""
        first = await self.read(query)
        yield first
        if await self.unavailable() is not None:
            while True:
                await asyncio.sleep(keepalive)
                yield None
        reader = await asyncio.to_thread(self._follow_reader, query, first)
        try:
            quiet = 0.0
            while True:
                batch = await asyncio.to_thread(self._next_batch, reader)
                if batch:
                    quiet = 0.0
                    yield batch
                    continue
                quiet += FOLLOW_WAIT
                if quiet >= keepalive:
                    quiet = 0.0
                    yield None
        finally:
            await asyncio.to_thread(reader.close)

    def _follow_reader(self, query: JournalQuery, seen: Sequence[JournalEntry]) -> Any:
        reader = self._reader(query)
        if seen and seen[-1].cursor:
            reader.seek_cursor(seen[-1].cursor)
            reader.get_next()  # the entry at the cursor was sent already
        else:
            reader.seek_realtime(query.since if query.since is not None else time.time())
        return reader

    @staticmethod
    def _next_batch(reader: Any) -> list[JournalEntry]:
        batch = []
        for _ in range(MAX_ENTRIES):
            raw = reader.get_next()
            if not raw:
                break
            batch.append(_entry(raw))
        if not batch:
            reader.wait(FOLLOW_WAIT)
        return batch
