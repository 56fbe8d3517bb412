"""Which snapshots are orphans of a dead run (pure)."""

from __future__ import annotations

from typing import Any

from xenkeep.backup.const import SNAPSHOT_KEY
from xenkeep.backup.snapshots import orphans, run_of, snapshot_name


def snap(name: str, *, tagged: bool = False, uuid: str = "u", is_snap: bool = True) -> Any:
    return {
        "is_a_snapshot": is_snap,
        "name_label": name,
        "uuid": uuid,
        "other_config": {SNAPSHOT_KEY: "3"} if tagged else {},
    }


def test_the_name_carries_the_run() -> None:
    name = snapshot_name("nightly xk-run-9", "2026-12-01 10:00:00", 42)
    assert run_of(name) == 42
    assert run_of("[XenKeep nightly] 2026-12-01 10:00:00") is None
    assert run_of("my own xk-run-7 snapshot") is None


def test_orphans() -> None:
    records = {
        "dead": snap(snapshot_name("j", "t", 1)),
        "reference": snap(snapshot_name("j", "t", 2), tagged=True),
        "running": snap(snapshot_name("j", "t", 3)),
        "user": snap("[XenKeep j] my own copy"),
        "untagged-reference": snap(snapshot_name("j", "t", 4), uuid="ref-uuid"),
        "a-vm": snap(snapshot_name("j", "t", 5), is_snap=False),
    }
    got = orphans(records, running=frozenset({3}), references=frozenset({"ref-uuid"}))
    assert got == ["dead"]
