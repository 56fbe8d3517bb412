"""The appliance's own backup through the daemon's API, with the simulator's
pool and a directory as the backup storage: nothing is written without a
key; the first copy holds the configuration and the pool's database; a
change of the configuration (and only of it) writes a new copy; retention;
a restore replaces the configuration in one step and ends every session;
wrong passphrases and damaged copies change nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, BinaryIO, cast

from tests.integration.appliance_backup.conftest import (
    PASSPHRASE,
    Configured,
    copies,
    copies_done,
    first_copy,
    set_passphrase,
)
from tests.support.web import ADMIN_PASSWORD, Browser
from xenkeep.app import database
from xenkeep.appliance_backup.keys import KdfParams, derive
from xenkeep.formats.sealed import SealReader, SealWriter, read_header
from xenkeep.web import keys


async def audit_events(browser: Browser) -> list[dict[str, Any]]:
    status, body = await browser.api("GET", "/api/v1/audit?limit=200")
    assert status == 200, body
    return list(body["entries"])


async def test_nothing_is_copied_without_a_key(configured: Configured) -> None:
    b = configured.browser
    status, body = await b.api("GET", "/api/v1/appliance-backup")
    assert status == 200 and body["key"] is None and body["copies"] == [], body
    status, body = await b.api("POST", "/api/v1/appliance-backup/run")
    assert status == 409 and body["error"]["code"] == "backup_key_missing", body
    status, html, _ = await b.get("/backup/storage")
    assert "No passphrase is set" in html


async def test_passphrase_rules_and_the_first_copy(configured: Configured) -> None:
    b = configured.browser
    for passphrase, confirm, words in [
        ("short", "short", "at least 12"),
        ("password1234", "password1234", "too easy to guess"),
        (PASSPHRASE, PASSPHRASE + "x", "differ"),
    ]:
        status, body = await b.api(
            "PUT",
            "/api/v1/appliance-backup/passphrase",
            {"passphrase": passphrase, "confirm": confirm},
        )
        assert status == 400 and words in body["error"]["message"], body
    await set_passphrase(b)
    status, body = await b.api("GET", "/api/v1/appliance-backup")
    assert body["key"]["mode"] == "passphrase", body
    assert PASSPHRASE not in json.dumps(body)
    [event] = [e for e in await audit_events(b) if e["event"] == "backup_key_set"]
    assert event["username"] == "alice" and PASSPHRASE not in json.dumps(event)

    # The first copy comes by itself, with the pool's database: the daily one.
    [op] = await copies_done(b)
    assert op["status"] == "success" and op["trigger"] == "daily", op
    [copy] = await copies(b)
    assert copy["appliance"] and copy["key_mode"] == "passphrase" and not copy["problem"]
    assert op["report"]["config"]["copy_id"] == copy["id"]
    [dump] = op["report"]["pools"]
    status, body = await b.api("GET", "/api/v1/appliance-backup")
    [pool] = body["pools"]
    assert pool["pool_uuid"] == dump["pool_uuid"] and len(pool["copies"]) == 1

    # Nothing readable in the datastore: not the pool's password, not the VM's name.
    raw = b""
    for path in configured.store.rglob("appliance/**/*.xk*"):
        raw += await asyncio.to_thread(path.read_bytes)
    assert raw and b"demo" not in raw.replace(b"xenkeep", b"") and b"cfg-vm-01" not in raw

    # The pool's database, decrypted for download: XAPI's XML with the VM in it.
    async with b.session.get(
        b.url(f"/api/v1/appliance-backup/pools/{dump['pool_uuid']}/{dump['copy_id']}")
    ) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/xml"
        xml = await resp.read()
    assert xml.startswith(b'<?xml version="1.0"') and b"<database><manifest>" in xml
    assert b'name_label="cfg-vm-01"' in xml and len(xml) == dump["bytes"]


async def test_a_change_of_configuration_and_only_that_writes_a_copy(
    configured: Configured,
) -> None:
    b = configured.browser
    first, _ = await first_copy(b)
    service = keys.appliance_backup(b.server.app)
    assert not service.change_pending

    # Signing in, sessions, audit, the pools' connection state: not configuration.
    other = Browser(b.server)
    try:
        status, body = await other.api(
            "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
        )
        assert status in (200, 201), body
    finally:
        await other.close()
    await asyncio.sleep(0.5)
    assert not service.change_pending
    status, body = await b.api("GET", "/api/v1/operations?kind=appliance-backup")
    assert [o["id"] for o in body["operations"]] == [first["id"]]

    # A job's retention is configuration.
    job = configured.job
    status, body = await b.api(
        "PUT",
        f"/api/v1/backup/jobs/{job['id']}",
        {**{k: job[k] for k in ("name", "selector", "targets", "pool_id")}, "retention": 3},
    )
    assert status == 200, body
    [changed] = await copies_done(b, after=first["id"])
    assert changed["trigger"] == "configuration changed" and changed["status"] == "success"
    assert not changed["report"]["pools"]
    assert len(await copies(b)) == 2

    # The same values again change nothing: no copy starts.
    status, body = await b.api(
        "PUT",
        f"/api/v1/backup/jobs/{job['id']}",
        {**{k: job[k] for k in ("name", "selector", "targets", "pool_id")}, "retention": 3},
    )
    assert status == 200, body
    assert not service.change_pending

    # Rows written again as they were (what a sign-in through a provider does
    # to its group memberships): the copy would be the same, none is written.
    db = database(b.server.app)
    await db.execute("INSERT INTO groups (name, created_at) VALUES ('ops', 1)")
    await db.execute(
        "INSERT INTO group_members (group_id, user_id, source, added_at) "
        "SELECT id, 1, 'provider', 1 FROM groups"
    )
    [grouped] = await copies_done(b, after=changed["id"])
    assert len(await copies(b)) == 3
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM group_members WHERE source = 'provider'")
        await tx.execute(
            "INSERT INTO group_members (group_id, user_id, source, added_at) "
            "SELECT id, 1, 'provider', 2 FROM groups"
        )
    assert service.change_pending
    for _ in range(100):
        if not service.change_pending:
            break
        await asyncio.sleep(0.1)
    assert not service.change_pending
    status, body = await b.api("GET", "/api/v1/operations?kind=appliance-backup")
    assert body["operations"][0]["id"] == grouped["id"]
    assert len(await copies(b)) == 3


async def test_retention_keeps_the_newest(configured: Configured) -> None:
    b = configured.browser
    await set_passphrase(b)
    [op] = await copies_done(b)
    for bad in [0, 1001, "3", True]:
        status, body = await b.api("PUT", "/api/v1/appliance-backup/retention", {"retention": bad})
        assert status == 400, (bad, body)
    status, body = await b.api("PUT", "/api/v1/appliance-backup/retention", {"retention": 2})
    assert status == 200 and body == {"retention": 2}
    last = (await copies_done(b, after=op["id"]))[0]["id"]
    for _ in range(2):
        status, body = await b.api("POST", "/api/v1/appliance-backup/run")
        assert status == 202, body
        last = (await copies_done(b, after=last))[0]["id"]
    found = await copies(b)
    assert len(found) == 2
    status, body = await b.api("GET", "/api/v1/appliance-backup")
    assert all(len(p["copies"]) == 2 for p in body["pools"]), body["pools"]


async def test_restore_replaces_the_configuration_and_ends_sessions(
    configured: Configured,
) -> None:
    b = configured.browser
    _, copy = await first_copy(b)

    # What happens after the copy, undone by the restore.
    status, extra = await b.api(
        "POST",
        "/api/v1/backup/jobs",
        {"name": "later", "selector": "tag", "targets": ["x"], "pool_id": str(configured.pool_id)},
    )
    assert status == 201, extra
    await b.api("PUT", "/api/v1/appliance", {"name": "renamed later", "timezone": "UTC"})

    # A wrong passphrase, then a restore without its confirmation: nothing changes.
    path = f"/api/v1/appliance-backup/copies/{copy['id']}/open"
    status, body = await b.api("POST", path, {"secret": "not the right passphrase"})
    assert status == 400 and body["error"]["code"] == "backup_key_wrong", body
    status, body = await b.api("POST", "/api/v1/appliance-backup/restore", {"confirm": "RESTORE"})
    assert status == 404, body
    status, summary = await b.api("POST", path, {"secret": PASSPHRASE})
    assert status == 200, summary
    assert summary["counts"]["jobs"] == 1 and summary["jobs"] == ["nightly"]
    assert summary["counts"]["pools"] == 1 and summary["counts"]["users"] == 1
    status, body = await b.api("POST", "/api/v1/appliance-backup/restore", {"confirm": "yes"})
    assert status == 400 and body["error"]["code"] == "restore_not_confirmed", body
    status, jobs = await b.api("GET", "/api/v1/backup/jobs")
    assert sorted(j["name"] for j in jobs["jobs"]) == ["later", "nightly"]

    status, body = await b.api("POST", "/api/v1/appliance-backup/restore", {"confirm": "RESTORE"})
    assert status == 200 and body["appliance"] == copy["appliance"], body
    # Every session ended with the accounts they belonged to.
    status, body = await b.api("GET", "/api/v1/session")
    assert status == 401, body
    b.csrf = ""
    status, body = await b.api(
        "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
    )
    assert status in (200, 201), body
    status, jobs = await b.api("GET", "/api/v1/backup/jobs")
    assert [j["name"] for j in jobs["jobs"]] == ["nightly"]
    assert jobs["jobs"][0]["id"] == configured.job["id"]
    status, appliance = await b.api("GET", "/api/v1/appliance")
    assert appliance["name"] == copy["appliance"]
    [event] = [e for e in await audit_events(b) if e["event"] == "config_restored"]
    assert event["username"] == "alice" and event["detail"]["where"] == "api"
    # The pool is connected again, with its password sealed under this key.
    for _ in range(100):
        status, pools = await b.api("GET", "/api/v1/pools")
        if pools["pools"] and pools["pools"][0]["status"]["state"] == "connected":
            break
        await asyncio.sleep(0.1)
    assert pools["pools"][0]["status"]["state"] == "connected", pools


async def spoiled(store: Path, copy_id: str, how: str) -> None:
    [path] = list(store.glob(f"appliance/config/{copy_id}.xkconfig"))

    def spoil() -> None:
        data = bytearray(path.read_bytes())
        if how == "flip":
            data[-100] ^= 0x01
        elif how == "truncate":
            del data[-30:]
        elif how == "newer":
            # Sealed again, right key and all, but from a newer schema.
            with path.open("rb") as f:
                header = read_header(cast(BinaryIO, f))
                kdf = KdfParams.from_json(header.fields["key"]["kdf"])
                key = derive(PASSPHRASE, kdf)
                plain = b"".join(SealReader(cast(BinaryIO, f), key, header))
            fields = dict(header.fields)
            fields["schema_version"] += 1
            fields.pop("salt"), fields.pop("key_id")
            with path.open("wb") as f:
                w = SealWriter(cast(BinaryIO, f), key, fields)
                w.write(plain)
                w.close()
            return
        path.write_bytes(bytes(data))

    await asyncio.to_thread(spoil)


async def test_damaged_and_newer_copies_are_refused_and_change_nothing(
    configured: Configured,
) -> None:
    b = configured.browser
    _, copy = await first_copy(b)
    path = f"/api/v1/appliance-backup/copies/{copy['id']}/open"
    [file] = list(configured.store.glob(f"appliance/config/{copy['id']}.xkconfig"))
    original = await asyncio.to_thread(file.read_bytes)
    for how, code, words in [
        ("newer", "copy_too_new", "newer XenKeep"),
        ("flip", "copy_damaged", "changed after it was written"),
        ("truncate", "copy_damaged", "incomplete"),
    ]:
        await asyncio.to_thread(file.write_bytes, original)
        await spoiled(configured.store, copy["id"], how)
        status, body = await b.api("POST", path, {"secret": PASSPHRASE})
        assert status == 400 and body["error"]["code"] == code, (how, body)
        assert words in body["error"]["message"], (how, body)
        status, body = await b.api(
            "POST", "/api/v1/appliance-backup/restore", {"confirm": "RESTORE"}
        )
        assert status == 404, body
    # Still signed in, configuration untouched.
    status, jobs = await b.api("GET", "/api/v1/backup/jobs")
    assert status == 200 and [j["name"] for j in jobs["jobs"]] == ["nightly"]


async def test_hostile_input_is_refused(configured: Configured) -> None:
    b = configured.browser
    for copy_id in ["..", "../../etc", "20260101T000000Z-0000000g", "x" * 300]:
        status, body = await b.api(
            "POST", f"/api/v1/appliance-backup/copies/{copy_id}/open", {"secret": PASSPHRASE}
        )
        assert status in (404, 409), (copy_id, body)
    status, body = await b.api(
        "POST",
        "/api/v1/appliance-backup/copies/20260101T000000Z-00000000/open",
        {"secret": "x" * 5000},
    )
    assert status == 400, body
    for pool, copy_id in [
        ("not-a-uuid", "20260101T000000Z-00000000"),
        ("3c1b8f7e-1d2a-4e5f-8a9b-0c1d2e3f4a5b", "..%2f..%2fsecret.key"),
    ]:
        status, body = await b.api("GET", f"/api/v1/appliance-backup/pools/{pool}/{copy_id}")
        assert status in (404, 409), (pool, body)
