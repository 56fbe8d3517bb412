"""The database: migrations, refusal of newer or damaged files, crash safety."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from xenkeep.errors import DatabaseTooNewError, StoreError
from xenkeep.store import db as dbmod
from xenkeep.store import latest_schema_version, open_database


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_fresh_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = await open_database(path)
    row = await db.fetchone("PRAGMA journal_mode")
    assert row is not None and row[0] == "wal"
    row = await db.fetchone("PRAGMA user_version")
    assert row is not None and row[0] == latest_schema_version()
    await db.set_setting("k", "v")
    assert await db.get_setting("k") == "v"
    await db.close()


async def test_newer_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    await (await open_database(path)).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {latest_schema_version() + 5}")
    conn.close()
    before = digest(path)
    with pytest.raises(DatabaseTooNewError, match="only knows up to"):
        await open_database(path)
    assert digest(path) == before


async def test_garbage_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not sqlite" * 500)
    before = digest(path)
    with pytest.raises(StoreError, match="damaged"):
        await open_database(path)
    assert digest(path) == before


async def test_copy_taken_before_migrating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.db"
    db = await open_database(path)
    await db.set_setting("kept", "yes")
    await db.close()
    real = dbmod._migrations()
    extra = (len(real) + 1, f"{len(real) + 1:04d}_extra.sql", "CREATE TABLE extra (x);")
    monkeypatch.setattr(dbmod, "_migrations", lambda: [*real, extra])
    db = await open_database(path)
    await db.close()
    backup = path.with_name(f"x.db.pre-migration-{len(real):04d}")
    assert backup.exists()
    conn = sqlite3.connect(backup)
    assert conn.execute("SELECT value FROM settings WHERE key='kept'").fetchone() == ("yes",)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(real),)
    conn.close()


async def test_failed_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.db"
    await (await open_database(path)).close()
    real = dbmod._migrations()
    bad = (len(real) + 1, f"{len(real) + 1:04d}_bad.sql", "CREATE TABLE ok (x);\nNOT SQL;")
    monkeypatch.setattr(dbmod, "_migrations", lambda: [*real, bad])
    with pytest.raises(StoreError, match="left as it was"):
        await open_database(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(real),)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='ok'").fetchone() is None
    conn.close()


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
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    db = await open_database(path)
    row = await db.fetchone("PRAGMA integrity_check")
    assert row is not None and row[0] == "ok"
    rows = await db.fetchall("SELECT event, count(*) AS n FROM audit_log GROUP BY event")
    counts = {r["event"]: r["n"] for r in rows}
    # Both rows of each transaction or neither: never half a transaction.
    assert counts.get("pair-a", 0) == counts.get("pair-b", 0)
    assert counts.get("pair-a", 0) > 0
    await db.close()
