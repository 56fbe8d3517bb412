"""The database: migrations, refusal of newer or damaged files, crash safety.

The tests' own look at the file (plain sqlite3, hashing) runs off the event
loop, as the daemon's would.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from xenkeep.errors import DatabaseTooNewError, StoreError
from xenkeep.store import db as dbmod
from xenkeep.store import latest_schema_version, open_database


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def digest(path: Path) -> str:
    return await asyncio.to_thread(_digest, path)


def _query(path: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def query(path: Path, sql: str) -> list[Any]:
    """``sql`` on a plain sqlite3 connection of its own."""
    return await asyncio.to_thread(_query, path, sql)


async def test_fresh_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = await open_database(path)
    row = await db.fetchone("PRAGMA journal_mode")
    assert row is not None and row[0] == "wal"
    row = await db.fetchone("PRAGMA user_version")
    assert row is not None and row[0] == await asyncio.to_thread(latest_schema_version)
    await db.set_setting("k", "v")
    assert await db.get_setting("k") == "v"
    await db.close()


async def test_newer_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    await (await open_database(path)).close()
    newer = await asyncio.to_thread(latest_schema_version) + 5
    await query(path, f"PRAGMA user_version = {newer}")
    before = await digest(path)
    with pytest.raises(DatabaseTooNewError, match="only knows up to"):
        await open_database(path)
    assert await digest(path) == before


async def test_garbage_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    await asyncio.to_thread(path.write_bytes, b"this is not sqlite" * 500)
    before = await digest(path)
    with pytest.raises(StoreError, match="damaged"):
        await open_database(path)
    assert await digest(path) == before


async def test_copy_taken_before_migrating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.db"
    db = await open_database(path)
    await db.set_setting("kept", "yes")
    await db.close()
    real = await asyncio.to_thread(dbmod._migrations)
    extra = (len(real) + 1, f"{len(real) + 1:04d}_extra.sql", "CREATE TABLE extra (x);")
    monkeypatch.setattr(dbmod, "_migrations", lambda: [*real, extra])
    db = await open_database(path)
    await db.close()
    backup = path.with_name(f"x.db.pre-migration-{len(real):04d}")
    assert await asyncio.to_thread(backup.exists)
    assert await query(backup, "SELECT value FROM settings WHERE key='kept'") == [("yes",)]
    assert await query(backup, "PRAGMA user_version") == [(len(real),)]


async def test_failed_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.db"
    await (await open_database(path)).close()
    real = await asyncio.to_thread(dbmod._migrations)
    bad = (len(real) + 1, f"{len(real) + 1:04d}_bad.sql", "CREATE TABLE ok (x);\nNOT SQL;")
    monkeypatch.setattr(dbmod, "_migrations", lambda: [*real, bad])
    with pytest.raises(StoreError, match="left as it was"):
        await open_database(path)
    assert await query(path, "PRAGMA user_version") == [(len(real),)]
    assert await query(path, "SELECT name FROM sqlite_master WHERE name='ok'") == []


async def test_migration_rebuilds_a_referenced_table_and_keys_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table rebuild (new CHECK) keeps the rows that reference it; a
    migration that leaves a dangling reference is refused and changes nothing."""
    path = tmp_path / "x.db"
    db = await open_database(path)
    await db.insert("INSERT INTO users (username, role, created_at) VALUES ('alice', 'admin', 0)")
    await db.insert(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen) "
        "VALUES ('s', 1, 'c', 0, 0)"
    )
    await db.close()
    real = await asyncio.to_thread(dbmod._migrations)
    n = len(real) + 1
    rebuild = (
        n,
        f"{n:04d}_rebuild.sql",
        "CREATE TABLE users_new (id INTEGER PRIMARY KEY, username TEXT NOT NULL);\n"
        "INSERT INTO users_new SELECT id, username FROM users;\n"
        "DROP TABLE users;\nALTER TABLE users_new RENAME TO users;",
    )
    monkeypatch.setattr(dbmod, "_migrations", lambda: [*real, rebuild])
    db = await open_database(path)
    await db.close()
    # DROP TABLE with keys on would have cascaded into sessions.
    assert await query(path, "SELECT user_id FROM sessions") == [(1,)]

    dangling = (n + 1, f"{n + 1:04d}_dangling.sql", "DELETE FROM users;")
    monkeypatch.setattr(dbmod, "_migrations", lambda: [*real, rebuild, dangling])
    with pytest.raises(StoreError, match="break a foreign key"):
        await open_database(path)
    assert await query(path, "PRAGMA user_version") == [(n,)]
    assert await query(path, "SELECT count(*) FROM users") == [(1,)]


async def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "x.db")
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO settings VALUES ('a', '1', 0)")
            raise RuntimeError("boom")
    assert await db.get_setting("a") is None
    await db.close()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from xenkeep.store import open_database

    async def main():
        db = await open_database(Path(sys.argv[1]))
        print("ready", flush=True)
        i = 0
        while True:
            i += 1
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO audit_log (ts, event) VALUES (?, 'pair-a')", (i,))
                await tx.execute("INSERT INTO audit_log (ts, event) VALUES (?, 'pair-b')", (i,))

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
async def test_sigkill_during_writes_leaves_a_consistent_database(
    tmp_path: Path, delay: float
) -> None:
    path = tmp_path / "x.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"ready"
    await asyncio.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    db = await open_database(path)
    row = await db.fetchone("PRAGMA integrity_check")
    assert row is not None and row[0] == "ok"
    rows = await db.fetchall("SELECT event, count(*) AS n FROM audit_log GROUP BY event")
    counts = {r["event"]: r["n"] for r in rows}
    # Both rows of each transaction or neither: never half a transaction.
    assert counts.get("pair-a", 0) == counts.get("pair-b", 0)
    assert counts.get("pair-a", 0) > 0
    await db.close()
