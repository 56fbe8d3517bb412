"""Watching writes: a committed write of a watched table (or column) is
reported once, after its commit; a rolled-back one, a failed statement and
writes of other columns are not."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xenkeep.store import Database, open_database
from xenkeep.store.db import Changes, WatchedTable


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path / "x.db")
    yield database
    await database.close()


async def watch(db: Database) -> list[Changes]:
    seen: list[Changes] = []
    await db.watch_writes(
        [
            WatchedTable("settings", ("value",), "key"),
            WatchedTable("pools", ("name", "url", "password_enc")),
        ],
        seen.append,
    )
    return seen


async def add_pool(db: Database, url: str = "https://a") -> int:
    return await db.insert(
        "INSERT INTO pools (name, url, username, password_enc, created_at, updated_at) "
        "VALUES ('p', ?, 'root', 'x', 0, 0)",
        (url,),
    )


async def test_writes_are_reported_after_commit_with_their_keys(db: Database) -> None:
    seen = await watch(db)
    await db.set_setting("appliance.name", "one")
    assert seen == [frozenset({("settings", "appliance.name")})]
    pool = await add_pool(db)
    await db.execute("UPDATE pools SET name = 'q' WHERE id = ?", (pool,))
    await db.execute("DELETE FROM settings WHERE key = 'appliance.name'")
    assert seen[1:] == [
        frozenset({("pools", "")}),
        frozenset({("pools", "")}),
        frozenset({("settings", "appliance.name")}),
    ]


async def test_a_write_of_the_same_value_is_not_reported(db: Database) -> None:
    seen = await watch(db)
    await db.execute("INSERT INTO settings (key, value, updated_at) VALUES ('k', 'v', 1)")
    pool = await add_pool(db)
    seen.clear()
    await db.execute("UPDATE settings SET value = 'v', updated_at = 2 WHERE key = 'k'")
    await db.execute("UPDATE pools SET name = 'p', url = 'https://a' WHERE id = ?", (pool,))
    assert seen == []
    await db.execute("UPDATE settings SET value = 'w' WHERE key = 'k'")
    assert seen == [frozenset({("settings", "k")})]


async def test_state_columns_are_not_reported(db: Database) -> None:
    seen = await watch(db)
    pool = await add_pool(db)
    seen.clear()
    await db.execute(
        "UPDATE pools SET last_error = 'down', last_error_at = 1 WHERE id = ?", (pool,)
    )
    await db.execute("INSERT INTO audit_log (ts, event) VALUES (1, 'x')")
    assert seen == []


async def test_a_transaction_is_reported_once_and_a_rollback_not_at_all(db: Database) -> None:
    seen = await watch(db)
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES ('a', '1', 0), ('b', '2', 0)"
        )
        assert seen == []  # not before the commit
    assert seen == [frozenset({("settings", "a"), ("settings", "b")})]
    seen.clear()
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO settings (key, value, updated_at) VALUES ('c', '3', 0)")
            raise RuntimeError("changed my mind")
    assert seen == []
    assert await db.get_setting("c") is None


async def test_a_failed_statement_is_not_reported(db: Database) -> None:
    seen = await watch(db)
    await add_pool(db, "https://same")
    seen.clear()
    with pytest.raises(sqlite3.IntegrityError):
        await add_pool(db, "https://same")
    assert seen == []
    # The next write is reported alone.
    await db.set_setting("k", "v")
    assert seen == [frozenset({("settings", "k")})]


async def test_a_failing_listener_does_not_break_the_write(db: Database) -> None:
    def broken(_changes: Changes) -> None:
        raise ValueError("listener bug")

    await db.watch_writes([WatchedTable("settings", ("value",), "key")], broken)
    await db.set_setting("k", "v")
    assert await db.get_setting("k") == "v"


async def test_attached_transaction_reads_another_file(db: Database, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES ('from the other file')")
    conn.commit()
    conn.close()
    async with db.transaction(attach={"other": other}) as tx:
        await tx.execute(
            "INSERT INTO settings (key, value, updated_at) SELECT 'copied', v, 0 FROM other.t"
        )
    assert await db.get_setting("copied") == "from the other file"
    # Detached afterwards.
    with pytest.raises(sqlite3.OperationalError):
        await db.fetchone("SELECT * FROM other.t")
