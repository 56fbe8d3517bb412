"""The daemon's SQLite database.

WAL mode so readers never block the writer and a killed process leaves a
consistent file. Schema changes are numbered SQL files in ``migrations/``;
``PRAGMA user_version`` records the last one applied. Before any migration
the database is copied aside, each migration runs in one transaction, and a
database newer than this code is refused without being touched.

All statements go through one lock: aiosqlite runs one connection on one
thread, and a transaction must not interleave with other coroutines'
statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from xenkeep.errors import DatabaseTooNewError, StoreError

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
Row = sqlite3.Row


def _migrations() -> list[tuple[int, str, str]]:
    """Every migration as (number, file name, SQL), in order."""
    found = []
    for entry in resources.files("xenkeep.store").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (number, name, _) in enumerate(found, start=1):
        if number != expected:
            raise StoreError(f"migration {name} is out of sequence (expected {expected:04d})")
    return found


def latest_schema_version() -> int:
    """The schema version this code writes."""
    return len(_migrations())


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL, not NORMAL: a power cut must not lose a committed restore point.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")


def migrate_sync(conn: sqlite3.Connection, db_path: Path | None, *, upto: int | None = None) -> int:
    """Bring ``conn`` to the latest schema (or to schema ``upto``); return the
    version before.

    Runs on the connection's own thread (aiosqlite) or from the CLI. ``upto``
    builds a database as an older XenKeep had it (a restored copy of the
    configuration is loaded at its own schema, then migrated).
    """
    migrations = _migrations()
    if upto is not None:
        if not 0 <= upto <= len(migrations):
            raise StoreError(f"there is no schema version {upto}")
        migrations = migrations[:upto]
    latest = len(migrations)
    try:
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"the database {db_path} is damaged: {exc}",
            hint="restore it from the copies next to it (*.pre-migration-*) or move it aside",
        ) from None
    if current > latest:
        raise DatabaseTooNewError(
            f"the database {db_path} has schema version {current}, "
            f"but this XenKeep only knows up to {latest}",
            hint="run the XenKeep version that last used this database; nothing was changed",
        )
    # Only now switch to WAL: even that rewrites the header of a database
    # we were about to refuse.
    _configure(conn)
    if current == latest:
        return current
    if db_path is not None and current > 0:
        backup = db_path.with_name(f"{db_path.name}.pre-migration-{current:04d}")
        dest = sqlite3.connect(backup)
        try:
            conn.backup(dest)
        finally:
            dest.close()
        log.info("copied the database to %s before migrating", backup)
    for number, name, sql in migrations[current:]:
        log.info("applying migration %s", name)
        try:
            # Foreign keys are off while a migration runs, as SQLite's
            # procedure for rebuilding a table asks (a DROP TABLE would
            # otherwise cascade into every table that references it); the
            # check before the commit proves the rebuilt tables still agree.
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n")
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise sqlite3.IntegrityError(
                    f"{len(broken)} rows break a foreign key (first: {tuple(broken[0])})"
                )
            # Not executescript: it would commit first.
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise StoreError(
                f"migration {name} failed: {exc}; the database was left as it was"
            ) from None
        finally:
            conn.execute("PRAGMA foreign_keys = ON")
    return current


#: Names of tables and columns that may appear in generated SQL.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
#: The SQL function the write watchers' triggers call.
_CHANGED_FUNCTION = "xenkeep_changed"

#: What committed: (table, key) pairs; the key is the row's key column, or "".
Changes = frozenset[tuple[str, str]]
ChangeListener = Callable[[Changes], None]


def _identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a table or column name: {name!r}")
    return f'"{name}"'


@dataclass(frozen=True)
class WatchedTable:
    """Writes to watch: any insert or delete of ``name``, updates that change ``columns``."""

    name: str
    columns: tuple[str, ...]
    #: Reported with each change (the settings table's key), or "" for none.
    key_column: str = ""


def _watch_triggers(table: WatchedTable) -> list[str]:
    t = _identifier(table.name)
    key_new = f"NEW.{_identifier(table.key_column)}" if table.key_column else "''"
    key_old = f"OLD.{_identifier(table.key_column)}" if table.key_column else "''"
    literal = f"'{table.name}'"
    prefix = f"xenkeep_watch_{table.name}"
    statements = [
        f"CREATE TEMP TRIGGER IF NOT EXISTS {prefix}_insert AFTER INSERT ON main.{t} "
        f"BEGIN SELECT {_CHANGED_FUNCTION}({literal}, {key_new}); END",
        f"CREATE TEMP TRIGGER IF NOT EXISTS {prefix}_delete AFTER DELETE ON main.{t} "
        f"BEGIN SELECT {_CHANGED_FUNCTION}({literal}, {key_old}); END",
    ]
    if table.columns:
        quoted = [_identifier(c) for c in table.columns]
        # Only a value that differs: a write of the same value changes nothing.
        differs = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in quoted)
        statements.append(
            f"CREATE TEMP TRIGGER IF NOT EXISTS {prefix}_update AFTER UPDATE OF "
            f"{', '.join(quoted)} ON main.{t} WHEN {differs} "
            f"BEGIN SELECT {_CHANGED_FUNCTION}({literal}, {key_new}); END"
        )
    return statements


class Database:
    """Serialized async access to the daemon's SQLite database."""

    def __init__(self, conn: aiosqlite.Connection, path: Path | None) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()
        # Filled by the watch triggers, on the connection's thread, while a
        # statement runs (under the lock); reported once it committed.
        self._changes: set[tuple[str, str]] = set()
        self._listeners: list[ChangeListener] = []

    # ------------------------------------------------------------- watching

    async def watch_writes(self, tables: Iterable[WatchedTable], listener: ChangeListener) -> None:
        """Call ``listener`` after every commit that wrote one of ``tables``.

        Seen by SQLite itself (temporary triggers on this connection), so every
        write is seen whichever service makes it, cascades included; a
        rolled-back transaction reports nothing. The listener runs on the
        event loop, right after the commit: it must be quick (set a flag).
        """
        statements = [sql for t in tables for sql in _watch_triggers(t)]
        async with self._lock:
            await self._conn.create_function(_CHANGED_FUNCTION, 2, self._record_change)
            for sql in statements:
                await self._conn.execute(sql)
            self._listeners.append(listener)
            self._changes.clear()

    def _record_change(self, table: str, key: object) -> None:
        self._changes.add((str(table), "" if key is None else str(key)))

    def _report_changes(self) -> None:
        if not self._changes:
            return
        changes = frozenset(self._changes)
        self._changes.clear()
        for listener in self._listeners:
            try:
                listener(changes)
            except Exception:
                log.exception("a database write listener failed")

    @contextlib.asynccontextmanager
    async def _statement(self) -> AsyncIterator[None]:
        """One statement in its own transaction: its writes are reported once done."""
        async with self._lock:
            try:
                yield
            except BaseException:
                # A failed statement is rolled back: its writes never happened.
                self._changes.clear()
                raise
            self._report_changes()

    # ----------------------------------------------------------- statements

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; return rows changed."""
        async with self._statement():
            cursor = await self._conn.execute(sql, params)
            count = cursor.rowcount
            await cursor.close()
            return int(count)

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT and return the new row id."""
        async with self._statement():
            cursor = await self._conn.execute(sql, params)
            rowid = cursor.lastrowid
            await cursor.close()
            return int(rowid or 0)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or None."""
        async with self._statement():
            cursor = await self._conn.execute(sql, params)
            row = await cursor.fetchone()
            await cursor.close()
            return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query."""
        async with self._statement():
            cursor = await self._conn.execute(sql, params)
            rows = await cursor.fetchall()
            await cursor.close()
            return list(rows)

    @contextlib.asynccontextmanager
    async def transaction(
        self, *, attach: Mapping[str, Path] | None = None
    ) -> AsyncIterator[Transaction]:
        """Several statements that commit together or not at all.

        ``attach`` names other database files (alias → path) the statements
        may read as ``alias.table`` for the length of the transaction.
        """
        async with self._lock:
            attached: list[str] = []
            try:
                for alias, path in (attach or {}).items():
                    _identifier(alias)
                    await self._conn.execute(f"ATTACH DATABASE ? AS {alias}", (str(path),))
                    attached.append(alias)
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield Transaction(self._conn)
                except BaseException:
                    await self._conn.rollback()
                    self._changes.clear()
                    raise
                await self._conn.commit()
                self._report_changes()
            finally:
                for alias in attached:
                    await self._conn.execute(f"DETACH DATABASE {alias}")

    async def schema_version(self) -> int:
        """The schema version the open database has (``PRAGMA user_version``)."""
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row is not None else 0

    async def get_setting(self, key: str, default: str | None = None) -> str | None:
        """A value from the key/value settings table."""
        row = await self.fetchone("SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else str(row["value"])

    async def set_setting(self, key: str, value: str) -> None:
        """Store a key/value setting."""
        await self.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (key, value, time.time()),
        )

    async def close(self) -> None:
        """Close the connection (a WAL checkpoint happens on close)."""
        async with self._lock:
            await self._conn.close()


class Transaction:
    """Statements inside :meth:`Database.transaction`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return rows changed."""
        cursor = await self._conn.execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return int(count)

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT; return the new row id."""
        cursor = await self._conn.execute(sql, params)
        rowid = cursor.lastrowid
        await cursor.close()
        return int(rowid or 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each row."""
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or None."""
        cursor = await self._conn.execute(sql, params)
        row = await cursor.fetchone()
        await cursor.close()
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query (a small one: the rows are held)."""
        cursor = await self._conn.execute(sql, params)
        rows = await cursor.fetchall()
        await cursor.close()
        return list(rows)


def _prepare(path: Path) -> None:
    """Configure and migrate with a plain connection before going async."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from None
    try:
        migrate_sync(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"the database {path} is damaged or not a database: {exc}",
            hint="move it aside to start afresh, or restore a copy",
        ) from None
    finally:
        conn.close()


async def open_database(path: Path) -> Database:
    """Open (creating if needed) and migrate the database at ``path``."""
    await asyncio.to_thread(_prepare, path)
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in (
        "PRAGMA synchronous = FULL",
        "PRAGMA foreign_keys = ON",
        "PRAGMA busy_timeout = 5000",
    ):
        await conn.execute(pragma)
    return Database(conn, path)


@contextlib.contextmanager
def read_snapshot(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection of its own, inside one read transaction.

    For blocking readers in a thread (a copy of the configuration): every
    query sees the database as it was at the first one, whatever the daemon
    writes meanwhile, and the daemon's connection is never held up (WAL).
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("BEGIN")
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class ColumnInfo:
    """A column as ``PRAGMA table_info`` describes it."""

    name: str
    not_null: bool
    has_default: bool
    primary_key: bool


def describe_schema(conn: sqlite3.Connection, schema: str = "main") -> dict[str, list[ColumnInfo]]:
    """Every table of ``schema`` (SQLite's own excepted) and its columns."""
    _identifier(schema)
    rows = conn.execute(
        f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' "  # noqa: S608 - checked
        "AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    out: dict[str, list[ColumnInfo]] = {}
    for (name,) in rows:
        info = conn.execute(f"PRAGMA {schema}.table_info({_identifier(name)})").fetchall()
        out[str(name)] = [
            ColumnInfo(str(c[1]), bool(c[3]), c[4] is not None, bool(c[5])) for c in info
        ]
    return out
