"""The full-or-delta decision: every full has a reason, deltas are the default."""

from __future__ import annotations

from xenkeep.backup.decide import CurrentDisk, PreviousDisk, decide

GiB = 1 << 30
DISKS = [CurrentDisk("0", 10 * GiB), CurrentDisk("1", 20 * GiB)]
PREV = {
    "0": PreviousDisk("0", 10 * GiB, "snap-vdi-0", 3),
    "1": PreviousDisk("1", 20 * GiB, "snap-vdi-1", 3),
}
EXISTING = frozenset({"snap-vdi-0", "snap-vdi-1"})


def test_first_run_is_full() -> None:
    out = decide(DISKS, None, existing_snapshots=frozenset())
    assert [d.kind for d in out] == ["full", "full"]
    assert all("first backup" in d.reason for d in out)


def test_normal_run_is_delta_against_the_reference() -> None:
    out = decide(DISKS, PREV, existing_snapshots=EXISTING)
    assert [(d.kind, d.base_vdi) for d in out] == [("delta", "snap-vdi-0"), ("delta", "snap-vdi-1")]


def test_new_disk_only_that_disk_is_full() -> None:
    disks = [*DISKS, CurrentDisk("2", GiB)]
    out = decide(disks, PREV, existing_snapshots=EXISTING)
    assert [d.kind for d in out] == ["delta", "delta", "full"]
    assert "new disk 2" in out[2].reason


def test_missing_reference_snapshot() -> None:
    out = decide(DISKS, PREV, existing_snapshots=frozenset({"snap-vdi-1"}))
    assert out[0].full and "snap-vdi-0 is missing" in out[0].reason
    assert not out[1].full


def test_damaged_chain() -> None:
    out = decide(DISKS, PREV, existing_snapshots=EXISTING, damaged="block 4 checksum mismatch")
    assert all(d.full and "chain damaged: block 4" in d.reason for d in out)


def test_resized_disk() -> None:
    out = decide([CurrentDisk("0", 11 * GiB)], PREV, existing_snapshots=EXISTING)
    assert out[0].full and "resized" in out[0].reason


def test_full_every_n() -> None:
    assert not decide(DISKS, PREV, existing_snapshots=EXISTING, full_every=4)[0].full
    out = decide(DISKS, PREV, existing_snapshots=EXISTING, full_every=3)
    assert out[0].full and "full every 3" in out[0].reason


def test_reason_never_empty() -> None:
    cases = [
        decide(DISKS, None, existing_snapshots=frozenset()),
        decide(DISKS, PREV, existing_snapshots=EXISTING),
        decide(DISKS, {"0": PreviousDisk("0", 10 * GiB, None, 1)}, existing_snapshots=EXISTING),
    ]
    assert all(d.reason for out in cases for d in out)
