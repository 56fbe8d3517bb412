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
from collections.abc import AsyncIterator, Iterable, Sequence
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


def migrate_sync(conn: sqlite3.Connection, db_path: Path | None) -> int:
    """Bring ``conn`` to the latest schema; return the version before.

    Runs on the connection's own thread (aiosqlite) or from the CLI.
    """
    migrations = _migrations()
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


class Database:
    """Serialized async access to the daemon's SQLite database."""

    def __init__(self, conn: aiosqlite.Connection, path: Path | None) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; return rows changed."""
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            count = cursor.rowcount
            await cursor.close()
            return int(count)

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT and return the new row id."""
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            rowid = cursor.lastrowid
            await cursor.close()
            return int(rowid or 0)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or None."""
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            row = await cursor.fetchone()
            await cursor.close()
            return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query."""
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            rows = await cursor.fetchall()
            await cursor.close()
            return list(rows)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Several statements that commit together or not at all."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._conn)
            except BaseException:
                await self._conn.rollback()
                raise
            await self._conn.commit()

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
