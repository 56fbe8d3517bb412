"""The audit log does not grow with an attacker's effort: fields are cut,
repeated refusals counted, old entries pruned (refusals first)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xenkeep.auth import audit as audit_module
from xenkeep.auth.audit import (
    KEEP_REFUSALS_SECONDS,
    KEEP_SECONDS,
    MAX_DETAIL_VALUE,
    MAX_USERNAME,
    REPEAT_WINDOW,
    AuditLog,
)
from xenkeep.auth.const import AuditEvent
from xenkeep.store import Database, open_database

START = 1_000_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path / "audit.db")
    yield database
    await database.close()


async def rows(db: Database) -> int:
    row = await db.fetchone("SELECT COUNT(*) AS n FROM audit_log")
    assert row is not None
    return int(row["n"])


async def test_huge_fields_are_cut_before_they_are_stored_or_logged(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    audit = AuditLog(db, Clock())
    huge = "u" * 900_000
    with caplog.at_level(logging.INFO, logger="xenkeep.audit"):
        await audit.record(
            AuditEvent.SIGN_IN, username=huge, ip="i" * 5000, path="/" + "p" * 9000, n=3
        )
    [entry] = await audit.entries()
    assert len(entry["username"]) == MAX_USERNAME and entry["username"].endswith("…")
    assert len(entry["ip"]) <= 64
    assert len(entry["detail"]["path"]) == MAX_DETAIL_VALUE and entry["detail"]["n"] == 3
    assert max(len(r.getMessage()) for r in caplog.records) < 1000


async def test_many_detail_keys_are_cut_as_a_whole(db: Database) -> None:
    audit = AuditLog(db, Clock())
    await audit.record(AuditEvent.SIGN_IN, **{f"k{i}": "v" * 150 for i in range(100)})
    [entry] = await audit.entries()
    assert entry["detail"]["truncated"] is True


async def test_a_flood_of_refusals_from_one_address_is_one_row(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    audit = AuditLog(db, clock)
    with caplog.at_level(logging.INFO, logger="xenkeep.audit"):
        for i in range(3000):
            clock.now = START + i * 0.001
            await audit.record(AuditEvent.CSRF_REJECTED, ip="198.51.100.7", path=f"/p{i}")
    assert await rows(db) == 1
    [entry] = await audit.entries()
    assert entry["count"] == 3000 and entry["last_ts"] == pytest.approx(START + 2.999)
    assert entry["detail"] == {"path": "/p0"}
    # The system log got the first one only; the count is in the table.
    assert len([r for r in caplog.records if "csrf_rejected" in r.getMessage()]) == 1


async def test_repeats_are_counted_per_address_and_per_window(db: Database) -> None:
    clock = Clock()
    audit = AuditLog(db, clock)
    await audit.record(AuditEvent.SIGN_IN_FAILED, username="a", ip="198.51.100.7")
    await audit.record(AuditEvent.SIGN_IN_FAILED, username="b", ip="198.51.100.8")
    await audit.record(AuditEvent.CSRF_REJECTED, ip="198.51.100.7")
    clock.now += REPEAT_WINDOW + 1
    await audit.record(AuditEvent.SIGN_IN_FAILED, username="a", ip="198.51.100.7")
    assert await rows(db) == 4
    # Events an administrator needs one by one are never folded.
    for _ in range(3):
        await audit.record(AuditEvent.SIGN_IN, username="a", ip="198.51.100.7")
    assert await rows(db) == 7


async def test_prune_by_age_keeps_what_matters_longer(db: Database) -> None:
    clock = Clock()
    audit = AuditLog(db, clock)
    await audit.record(AuditEvent.SIGN_IN_FAILED, ip="198.51.100.7")
    await audit.record(AuditEvent.API_TOKEN_CREATED, username="alice")
    clock.now += KEEP_REFUSALS_SECONDS + 1
    assert await audit.prune() == 1
    assert [e["event"] for e in await audit.entries()] == ["api_token_created"]
    clock.now = START + KEEP_SECONDS + 1
    assert await audit.prune() == 1 and await rows(db) == 0


async def test_prune_by_size_drops_the_oldest_refusals_first(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "MAX_ROWS", 10)
    clock = Clock()
    audit = AuditLog(db, clock)
    await audit.record(AuditEvent.ADMIN_CREATED, username="alice")
    for i in range(20):
        await audit.record(AuditEvent.CSRF_REJECTED, ip=f"198.51.100.{i}")
    await audit.prune()
    kept = await audit.entries(50)
    assert len(kept) == 10
    assert kept[-1]["event"] == "admin_created"
    assert {e["ip"] for e in kept[:-1]} == {f"198.51.100.{i}" for i in range(11, 20)}


async def test_recording_prunes_by_itself(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "MAX_ROWS", 50)
    audit = AuditLog(db, Clock())
    for i in range(500):
        await audit.record(AuditEvent.SIGN_IN, username=f"u{i}")
    assert await rows(db) <= 50 + audit_module.PRUNE_EVERY


async def test_expired_failure_counters_are_pruned_fresh_ones_kept(db: Database) -> None:
    clock = Clock()
    audit = AuditLog(db, clock)
    await db.execute(
        "INSERT INTO auth_failures (scope, key, failures, last_failure) VALUES "
        "('account', 'old', 5, ?), ('account', 'alice', 5, ?)",
        (START - 3700, START - 10),
    )
    await audit.prune()
    left = await db.fetchall("SELECT key FROM auth_failures")
    assert [r["key"] for r in left] == ["alice"]


async def test_entries_page_by_id(db: Database) -> None:
    audit = AuditLog(db, Clock())
    for i in range(25):
        await audit.record(AuditEvent.SIGN_IN, username=f"u{i}")
    first = await audit.entries(10)
    second = await audit.entries(10, before=first[-1]["id"])
    third = await audit.entries(10, before=second[-1]["id"])
    names = [e["username"] for e in first + second + third]
    assert names == [f"u{i}" for i in range(24, -1, -1)]
