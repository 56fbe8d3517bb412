"""Schema 7 on a database of schema 6 holding administrators, operators,
viewers and users: everybody keeps what they could do (the old global
roles become grants on everything), sessions and tokens survive the
rebuild of ``users``, pools and jobs keep their ids and stop reusing them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import Role
from xenkeep.auth.grants import Grants
from xenkeep.auth.manager import User
from xenkeep.auth.permissions import EVERYTHING, Action, ObjectKind, ObjectRef
from xenkeep.auth.permissions import Path as TreePath
from xenkeep.auth.places import JobFacts, Places
from xenkeep.store import db as dbmod
from xenkeep.store import open_database

SCHEMA_6 = 6
VM_PATH = (EVERYTHING, ObjectRef(ObjectKind.POOL, "p"), ObjectRef(ObjectKind.VM, "v"))


def _schema_6(path: Path) -> None:
    """A database as XenKeep with schema 6 left it, with people and things in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for _number, _name, sql in dbmod._migrations()[:SCHEMA_6]:
            conn.executescript(f"BEGIN;\n{sql}\nCOMMIT;")
        conn.execute(f"PRAGMA user_version = {SCHEMA_6}")
        conn.executemany(
            "INSERT INTO users (id, username, role, created_at, email, last_sign_in) "
            "VALUES (?, ?, ?, 0, ?, ?)",
            [
                (1, "ada", "admin", "ada@example.org", 5.0),
                (2, "oli", "operator", "", None),
                (3, "vic", "viewer", "", None),
                (5, "uma", "user", "", None),
            ],
        )
        conn.execute(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen) "
            "VALUES ('s', 2, 'c', 0, 0)"
        )
        conn.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (3, 't', 'h', 0)"
        )
        conn.execute("INSERT INTO groups (id, name, created_at) VALUES (1, 'ops', 0)")
        conn.execute("INSERT INTO group_members (group_id, user_id, added_at) VALUES (1, 5, 0)")
        conn.execute(
            "INSERT INTO pools (id, name, url, username, password_enc, created_at, updated_at) "
            "VALUES (4, 'prod', 'https://m', 'root', 'x', 0, 0)"
        )
        conn.execute(
            "INSERT INTO backup_jobs (id, name, spec, created_at, updated_at) "
            "VALUES (9, 'nightly', '{}', 0, 0)"
        )
    finally:
        conn.close()


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


class NoPools:
    def path_of(self, obj: ObjectRef) -> TreePath | None:
        return None

    async def pool_path(self, pool_id: int) -> TreePath | None:
        return None

    def name_of(self, obj: ObjectRef) -> str | None:
        return None

    def refs(self) -> list[ObjectRef]:
        return []


async def _no_jobs() -> dict[ObjectRef, JobFacts]:
    return {}


async def _no_target(op_id: int) -> str | None:
    return None


async def test_old_roles_become_grants_and_nobody_loses_access(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    await asyncio.to_thread(_schema_6, path)
    db = await open_database(path)
    try:
        rows = await db.fetchall(
            "SELECT id, username, role, email, last_sign_in FROM users ORDER BY id"
        )
        assert [tuple(r) for r in rows] == [
            (1, "ada", "admin", "ada@example.org", 5.0),
            (2, "oli", "user", "", None),
            (3, "vic", "user", "", None),
            (5, "uma", "user", "", None),
        ]
        grants = Grants(db, AuditLog(db), Places(NoPools(), _no_jobs, _no_target))
        users = {int(r["id"]): User.from_row(r) for r in await db.fetchall("SELECT * FROM users")}
        ada, oli, vic, uma = [await grants.principal(users[i]) for i in (1, 2, 3, 5)]
        assert ada.role is Role.ADMIN and ada.is_super_admin
        assert oli.may(Action.RUN, VM_PATH) and oli.may(Action.POWER, VM_PATH)
        assert not oli.may(Action.MANAGE, VM_PATH)
        assert vic.may(Action.VIEW, VM_PATH) and not vic.may(Action.RUN, VM_PATH)
        assert not uma.holds_any()
        # Sessions, tokens and memberships still point at their users.
        assert await db.fetchone("SELECT user_id FROM sessions WHERE id_hash = 's'") is not None
        assert (await db.fetchone("SELECT user_id FROM api_tokens"))["user_id"] == 3  # type: ignore[index]
        assert (await db.fetchone("SELECT user_id FROM group_members"))["user_id"] == 5  # type: ignore[index]
        # A deleted user's grants go with them (the trigger was rebuilt with the table).
        await db.execute("DELETE FROM users WHERE id = 2")
        left = await db.fetchall("SELECT subject_id FROM grants")
        assert [r["subject_id"] for r in left] == [3]
        # The old CHECK is gone, the new one holds.
        for role, ok in (("support", True), ("operator", False), ("viewer", False)):
            try:
                await db.execute(
                    "INSERT INTO users (username, role, created_at) VALUES (?, ?, 0)", (role, role)
                )
                assert ok, role
            except sqlite3.IntegrityError:
                assert not ok, role
    finally:
        await db.close()


async def test_ids_are_kept_and_never_given_out_again(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    await asyncio.to_thread(_schema_6, path)
    db = await open_database(path)
    try:
        assert [tuple(r) for r in await db.fetchall("SELECT id, uuid FROM pools")] == [(4, "")]
        for table, insert in (
            ("users", "INSERT INTO users (username, role, created_at) VALUES ('n', 'user', 0)"),
            (
                "pools",
                "INSERT INTO pools (name, url, username, password_enc, created_at, updated_at) "
                "VALUES ('n', 'https://n', 'root', 'x', 0, 0)",
            ),
            (
                "backup_jobs",
                "INSERT INTO backup_jobs (name, spec, created_at, updated_at) "
                "VALUES ('n', '{}', 0, 0)",
            ),
        ):
            newest = await db.insert(insert)
            await db.execute(f"DELETE FROM {table} WHERE id = ?", (newest,))  # noqa: S608
            assert await db.insert(insert) == newest + 1, table
        # Two registrations of one pool (two URLs to its master) are refused.
        await db.execute("UPDATE pools SET uuid = 'pool-uuid' WHERE id = 4")
        try:
            await db.execute("UPDATE pools SET uuid = 'pool-uuid' WHERE id != 4")
            raise AssertionError("a second registration of one pool was accepted")
        except sqlite3.IntegrityError:
            pass
        # A job's grants go with it.
        await db.execute(
            "INSERT INTO grants (subject_kind, subject_id, object_kind, object_ref, role, "
            "created_at) VALUES ('user', 5, 'backup-job', '9', 'viewer', 0)"
        )
        await db.execute("DELETE FROM backup_jobs WHERE id = 9")
        assert await db.fetchall("SELECT * FROM grants WHERE object_kind = 'backup-job'") == []
    finally:
        await db.close()
    assert await asyncio.to_thread(_query, path, "PRAGMA foreign_key_check") == []
