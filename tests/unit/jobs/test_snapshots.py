"""Which snapshots are orphans of a dead run (pure)."""

from __future__ import annotations

from functools import partial
from typing import Any

from xenkeep.backup.const import SNAPSHOT_KEY, SNAPSHOT_MARKER
from xenkeep.jobs.snapshots import orphans, run_of, snapshot_name

name_of = partial(snapshot_name, marker=SNAPSHOT_MARKER)
backup_run_of = partial(run_of, marker=SNAPSHOT_MARKER)


def snap(name: str, *, tagged: bool = False, uuid: str = "u", is_snap: bool = True) -> Any:
    return {
        "is_a_snapshot": is_snap,
        "name_label": name,
        "uuid": uuid,
        "other_config": {SNAPSHOT_KEY: "3"} if tagged else {},
    }


def test_the_name_carries_the_run() -> None:
    name = name_of("nightly xk-run-9", "2026-12-01 10:00:00", 42)
    assert backup_run_of(name) == 42
    assert backup_run_of("[XenKeep nightly] 2026-12-01 10:00:00") is None
    assert backup_run_of("my own xk-run-7 snapshot") is None


def test_each_kind_reads_only_its_own_marker() -> None:
    """A replication's snapshot is never judged by the backup's sweep, nor the reverse."""
    name = snapshot_name("j", "t", 5, marker="xk-rep")
    assert run_of(name, marker="xk-rep") == 5
    assert backup_run_of(name) is None
    assert run_of(name_of("j", "t", 5), marker="xk-rep") is None


def test_orphans() -> None:
    records = {
        "dead": snap(name_of("j", "t", 1)),
        "reference": snap(name_of("j", "t", 2), tagged=True),
        "running": snap(name_of("j", "t", 3)),
        "user": snap("[XenKeep j] my own copy"),
        "untagged-reference": snap(name_of("j", "t", 4), uuid="ref-uuid"),
        "a-vm": snap(name_of("j", "t", 5), is_snap=False),
        "other-kind": snap(snapshot_name("j", "t", 6, marker="xk-rep")),
    }
    got = orphans(
        records,
        running=frozenset({3}),
        references=frozenset({"ref-uuid"}),
        marker=SNAPSHOT_MARKER,
        kept_key=SNAPSHOT_KEY,
    )
    assert got == ["dead"]
