"""A copy written from one database and restored into another, through the
real migrations: rows come back, secrets come back sealed under the new
appliance's key, and a wrong passphrase, a flipped byte, a cut file or a
copy of a newer schema change nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from xenkeep.appliance_backup.copies import CONFIG_SUFFIX, CopyWriter, list_copies
from xenkeep.appliance_backup.errors import (
    CopyDamagedError,
    CopyTooNewError,
    WrongBackupKeyError,
)
from xenkeep.appliance_backup.keys import KdfParams, derive
from xenkeep.appliance_backup.payload import write_config
from xenkeep.appliance_backup.restore import apply_copy, load_copy
from xenkeep.formats.sealed import SealWriter
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database, latest_schema_version, migrate_sync, open_database
from xenkeep.store.db import read_snapshot

PASSPHRASE = "quiet orange tractor meadow"
FAST = KdfParams(b"0123456789abcdef", time_cost=1, memory_cost=64, parallelism=1)
KEY = derive(PASSPHRASE, FAST)
KEY_SPEC = {"mode": "passphrase", "kdf": FAST.to_json()}


def populate(path: Path, box: SecretBox, upto: int | None = None) -> None:
    """A configured appliance's database (at schema ``upto``)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate_sync(conn, None, upto=upto)
        x = conn.execute
        x("INSERT INTO settings VALUES ('appliance.name', 'old-keep', 1)")
        x("INSERT INTO settings VALUES ('appliance.timezone', 'Europe/Paris', 1)")
        x("INSERT INTO settings VALUES ('backup.datastore', '/old/place', 1)")
        x("INSERT INTO settings VALUES ('setup.token_hash', 'abc', 1)")
        smtp = {"host": "mail", "port": 25, "password_enc": box.encrypt("smtp-pw")}
        x("INSERT INTO settings VALUES ('backup.smtp', ?, 1)", (json.dumps(smtp),))
        x(
            "INSERT INTO users (id, username, password_hash, role, totp_secret, created_at) "
            "VALUES (1, 'alice', 'argon-hash', 'admin', 'TOTPSECRET', 1)"
        )
        x("INSERT INTO sessions VALUES ('sess', 1, 'csrf', 1, 1, '', '')")
        x(
            "INSERT INTO pools (id, name, url, username, password_enc, fingerprint, "
            "created_at, updated_at, last_error) VALUES (4, 'prod', 'https://p', 'root', ?, "
            "'AB:CD', 1, 1, 'was down')",
            (box.encrypt("pool-pw"),),
        )
        x(
            "INSERT INTO backup_jobs (id, name, spec, created_at, updated_at, last_slot, next_run) "
            "VALUES (7, 'nightly', '{}', 1, 1, 100, 200)"
        )
        x("INSERT INTO audit_log (ts, event) VALUES (1, 'sign_in')")
    finally:
        conn.close()


def write_copy(db_path: Path, directory: Path, box: SecretBox, **header: Any) -> Path:
    with read_snapshot(db_path) as conn:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        fields = {
            "created": 1000.0,
            "appliance": "old-keep",
            "key": KEY_SPEC,
            "schema_version": version,
            **header,
        }
        w = CopyWriter(directory, "20260101T000000Z-0000000a", CONFIG_SUFFIX, KEY, fields)
        write_config(conn, w.write, box)
        w.commit()
    return w.path


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


@pytest.fixture
def old(tmp_path: Path) -> tuple[Path, SecretBox]:
    box = SecretBox(tmp_path / "old.key")
    path = tmp_path / "old.db"
    populate(path, box)
    return path, box


async def restore_into(
    tmp_path: Path, copy: Path, secret: str = PASSPHRASE
) -> tuple[Database, SecretBox]:
    box = SecretBox(tmp_path / "new.key")
    await asyncio.to_thread(box.load)
    db = await open_database(tmp_path / "new.db")
    await db.set_setting("backup.datastore", "/new/place")
    await db.set_setting("wizard.completed", "1")
    await asyncio.to_thread(load_copy, copy, secret, box, tmp_path / "scratch.db")
    await apply_copy(db, tmp_path / "scratch.db")
    return db, box


async def test_round_trip(tmp_path: Path, old: tuple[Path, SecretBox]) -> None:
    path, box = old
    copy = await asyncio.to_thread(write_copy, path, tmp_path / "copies", box)
    assert b"pool-pw" not in await asyncio.to_thread(copy.read_bytes)
    db, newbox = await restore_into(tmp_path, copy)
    try:
        pool = await db.fetchone("SELECT * FROM pools")
        assert pool is not None
        assert (pool["id"], pool["name"], pool["fingerprint"]) == (4, "prod", "AB:CD")
        # Sealed again under the new key; the state column back to its default.
        assert newbox.decrypt(pool["password_enc"]) == "pool-pw"
        assert pool["last_error"] == ""
        smtp = json.loads(await db.get_setting("backup.smtp") or "{}")
        assert newbox.decrypt(smtp["password_enc"]) == "smtp-pw"
        user = await db.fetchone("SELECT * FROM users")
        assert user is not None
        assert (user["username"], user["password_hash"], user["totp_secret"]) == (
            "alice",
            "argon-hash",
            "TOTPSECRET",
        )
        job = await db.fetchone("SELECT * FROM backup_jobs")
        assert job is not None and (job["id"], job["last_slot"], job["next_run"]) == (7, 100, None)
        assert await db.get_setting("appliance.name") == "old-keep"
        # This appliance's own settings stay; the copy's state never came.
        assert await db.get_setting("backup.datastore") == "/new/place"
        assert await db.get_setting("wizard.completed") == "1"
        assert await db.get_setting("setup.token_hash") is None
        assert await db.fetchall("SELECT * FROM audit_log") == []
        assert await db.fetchall("SELECT * FROM sessions") == []
    finally:
        await db.close()


async def test_a_copy_of_an_older_schema_is_migrated(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "old.key")
    older = await asyncio.to_thread(latest_schema_version) - 1
    path = tmp_path / "old.db"
    await asyncio.to_thread(populate, path, box, older)
    copy = await asyncio.to_thread(write_copy, path, tmp_path / "copies", box)
    db, newbox = await restore_into(tmp_path, copy)
    try:
        pool = await db.fetchone("SELECT * FROM pools")
        assert pool is not None and newbox.decrypt(pool["password_enc"]) == "pool-pw"
        assert await db.schema_version() == older + 1
    finally:
        await db.close()


def flip(path: Path, at: Callable[[int], int]) -> None:
    data = bytearray(path.read_bytes())
    data[at(len(data))] ^= 0x40
    path.write_bytes(bytes(data))


def cut(path: Path, keep: Callable[[int], int]) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: keep(len(data))])


@pytest.mark.parametrize(
    ("spoil", "error", "words"),
    [
        (None, WrongBackupKeyError, "does not open this copy"),
        (lambda p: flip(p, lambda n: n - 40), CopyDamagedError, "changed after it was written"),
        (lambda p: flip(p, lambda n: 30), CopyDamagedError, "cannot be read|changed"),
        (lambda p: cut(p, lambda n: n - 10), CopyDamagedError, "incomplete"),
        (lambda p: cut(p, lambda n: 20), CopyDamagedError, "cannot be read"),
    ],
    ids=["wrong-passphrase", "flipped-byte", "flipped-header", "truncated", "cut-in-header"],
)
async def test_a_bad_copy_changes_nothing(
    tmp_path: Path,
    old: tuple[Path, SecretBox],
    spoil: Callable[[Path], None] | None,
    error: type[Exception],
    words: str,
) -> None:
    path, box = old
    copy = await asyncio.to_thread(write_copy, path, tmp_path / "copies", box)
    if spoil is not None:
        await asyncio.to_thread(spoil, copy)
    newbox = SecretBox(tmp_path / "new.key")
    scratch = tmp_path / "scratch.db"
    secret = "not the passphrase at all" if spoil is None else PASSPHRASE
    with pytest.raises(error, match=words):
        await asyncio.to_thread(load_copy, copy, secret, newbox, scratch)
    assert not await asyncio.to_thread(scratch.exists)


async def test_a_copy_of_a_newer_schema_is_refused_clearly(
    tmp_path: Path, old: tuple[Path, SecretBox]
) -> None:
    path, box = old
    newer = await asyncio.to_thread(latest_schema_version) + 1
    copy = await asyncio.to_thread(write_copy, path, tmp_path / "copies", box, schema_version=newer)
    with pytest.raises(CopyTooNewError, match=f"newer XenKeep \\(schema {newer}\\)"):
        await asyncio.to_thread(load_copy, copy, PASSPHRASE, box, tmp_path / "s.db")


async def test_a_sealed_copy_with_a_forged_row_is_refused(tmp_path: Path) -> None:
    # Right key, authentic container, but rows a writer of ours never makes.
    copy = tmp_path / "copies" / "20260101T000000Z-0000000b.xkconfig"
    await asyncio.to_thread(copy.parent.mkdir)

    def forge() -> None:
        version = latest_schema_version()
        header = {"created": 1.0, "key": KEY_SPEC, "schema_version": version}
        with copy.open("wb") as f:
            w = SealWriter(cast(BinaryIO, f), KEY, header)
            w.write(
                json.dumps(
                    {"kind": "begin", "schema_version": version, "tables": ["users"]}
                ).encode()
                + b"\n"
            )
            w.write(
                json.dumps(
                    {"kind": "row", "table": "users", "row": {"id": 1, "no_such_column": 1}}
                ).encode()
                + b"\n"
            )
            w.close()

    await asyncio.to_thread(forge)
    with pytest.raises(CopyDamagedError, match="no_such_column"):
        await asyncio.to_thread(
            load_copy, copy, PASSPHRASE, SecretBox(tmp_path / "k"), tmp_path / "s.db"
        )


async def test_a_restore_that_breaks_references_changes_nothing(
    tmp_path: Path, old: tuple[Path, SecretBox]
) -> None:
    path, box = old
    copy = await asyncio.to_thread(write_copy, path, tmp_path / "copies", box)
    newbox = SecretBox(tmp_path / "new.key")
    db = await open_database(tmp_path / "new.db")
    try:
        await db.set_setting("appliance.name", "kept")
        # A row outside the configuration that points at a user the copy lacks.
        await db.execute(
            "INSERT INTO users (id, username, role, created_at) VALUES (9, 'zed', 'admin', 1)"
        )
        await db.execute("CREATE TABLE extra (user_id INTEGER REFERENCES users(id))")
        await db.execute("INSERT INTO extra VALUES (9)")
        scratch = tmp_path / "scratch.db"
        await asyncio.to_thread(load_copy, copy, PASSPHRASE, newbox, scratch)
        with pytest.raises(CopyDamagedError, match="broken references"):
            await apply_copy(db, scratch)
        assert await db.get_setting("appliance.name") == "kept"
        names = [r["username"] for r in await db.fetchall("SELECT username FROM users")]
        assert names == ["zed"]
    finally:
        await db.close()


async def test_a_writer_stopped_midway_leaves_the_earlier_copies(tmp_path: Path) -> None:
    directory = tmp_path / "copies"

    def scenario() -> tuple[list[str], list[str]]:
        good = CopyWriter(directory, "20260101T000000Z-00000001", CONFIG_SUFFIX, KEY, {})
        good.write(b"x" * 10)
        good.commit()
        # A writer that never commits (its process was killed): only a temp file.
        killed = CopyWriter(directory, "20260101T000001Z-00000002", CONFIG_SUFFIX, KEY, {})
        killed.write(b"y")
        killed._file.close()  # what the kernel does for a killed process
        listed = [c.id for c in list_copies(directory, CONFIG_SUFFIX)]
        nxt = CopyWriter(directory, "20260101T000002Z-00000003", CONFIG_SUFFIX, KEY, {})
        nxt.abort()
        return listed, nxt.leftovers

    listed, removed = await asyncio.to_thread(scenario)
    assert listed == ["20260101T000000Z-00000001"]
    assert removed == [".20260101T000001Z-00000002.xkconfig.tmp-" + removed[0].rsplit("-", 1)[1]]
