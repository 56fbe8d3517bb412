"""Full or delta, and exactly why. Pure.

A delta is the default; a full happens only when the chain cannot continue,
and the reason is always returned so the run log says it. The inputs are
facts the runner gathered: the newest restore point's disks (with the
snapshot VDI each was exported from), which of those snapshot VDIs still
exist in the pool, the disks the VM has now, and whether the chain is damaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PreviousDisk:
    """One disk of the newest restore point, as the runner read it."""

    key: str
    virtual_size: int
    #: uuid of the snapshot VDI this point was exported from (the next base).
    snapshot_vdi: str | None
    #: Restore points of this disk since (and including) its last full.
    points_since_full: int


@dataclass(frozen=True)
class CurrentDisk:
    """One disk of the VM now."""

    key: str
    virtual_size: int


@dataclass(frozen=True)
class Decision:
    """The transfer chosen for one disk."""

    key: str
    full: bool
    reason: str
    #: The snapshot VDI uuid to pass as ``base=`` (deltas only).
    base_vdi: str | None = None

    @property
    def kind(self) -> str:
        """``full`` or ``delta``."""
        return "full" if self.full else "delta"


def decide(
    current: Sequence[CurrentDisk],
    previous: Mapping[str, PreviousDisk] | None,
    *,
    existing_snapshots: frozenset[str],
    damaged: str | None = None,
    full_every: int | None = None,
) -> list[Decision]:
    """One decision per current disk, in the order given.

    ``previous`` is None when there is no restore point yet; ``damaged`` is
    the reason the newest point's chain cannot be extended (verify found
    damage, a file is missing), or None.
    """
    out = []
    for disk in current:
        out.append(_one(disk, previous, existing_snapshots, damaged, full_every))
    return out


def _one(
    disk: CurrentDisk,
    previous: Mapping[str, PreviousDisk] | None,
    existing: frozenset[str],
    damaged: str | None,
    full_every: int | None,
) -> Decision:
    if previous is None:
        return Decision(disk.key, True, "first backup of this VM: no restore point yet")
    prev = previous.get(disk.key)
    if prev is None:
        return Decision(disk.key, True, f"new disk {disk.key}: not in the previous restore point")
    if damaged is not None:
        return Decision(disk.key, True, f"chain damaged: {damaged}")
    if prev.snapshot_vdi is None:
        return Decision(disk.key, True, "the previous restore point names no reference snapshot")
    if prev.snapshot_vdi not in existing:
        return Decision(
            disk.key,
            True,
            f"reference snapshot VDI {prev.snapshot_vdi} is missing from the pool "
            "(deleted outside XenKeep?)",
        )
    if prev.virtual_size != disk.virtual_size:
        return Decision(
            disk.key,
            True,
            f"disk {disk.key} was resized from {prev.virtual_size} to {disk.virtual_size} bytes",
        )
    if full_every is not None and prev.points_since_full >= full_every:
        return Decision(
            disk.key,
            True,
            f"full every {full_every} restore points reached "
            f"({prev.points_since_full} since the last full)",
        )
    return Decision(
        disk.key,
        False,
        f"delta against snapshot VDI {prev.snapshot_vdi}",
        base_vdi=prev.snapshot_vdi,
    )
