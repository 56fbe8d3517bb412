"""Full or delta, per disk of a replica, and exactly why. Pure.

A delta is the default; a full happens only when the chain cannot continue
(the reference snapshot is gone from the source, a disk is new, resized, or
was removed or resized on the target), and the reason is always returned so
the run log says it. The inputs are facts the runner gathered from both
pools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceDisk:
    """One disk of the source snapshot just taken."""

    key: str
    virtual_size: int


@dataclass(frozen=True)
class ChainDisk:
    """One disk as the replica's latest point and the pools have it now."""

    key: str
    #: uuid of the source snapshot VDI the latest point equals (the delta's base).
    reference_vdi: str | None
    #: Whether that VDI still exists in the source pool.
    reference_exists: bool
    #: Size of the point's copy of the disk; None if the point has none.
    point_size: int | None
    #: Size of the replica VM's live disk; None if it has none.
    live_size: int | None


@dataclass(frozen=True)
class Decision:
    """The transfer chosen for one disk."""

    key: str
    full: bool
    reason: str
    #: The source snapshot VDI uuid to pass as ``base=`` (deltas only).
    base_vdi: str | None = None

    @property
    def kind(self) -> str:
        """``full`` or ``delta``."""
        return "full" if self.full else "delta"


def decide(
    source: Sequence[SourceDisk],
    chain: Mapping[str, ChainDisk] | None,
    *,
    no_chain: str = "first replication of this VM: no replica yet",
) -> list[Decision]:
    """One decision per source disk, in the order given. ``chain`` is None
    when there is no replica with a complete point (``no_chain`` says why)."""
    return [_one(disk, chain, no_chain) for disk in source]


def _one(disk: SourceDisk, chain: Mapping[str, ChainDisk] | None, no_chain: str) -> Decision:
    key = disk.key
    if chain is None:
        return Decision(key, True, no_chain)
    c = chain.get(key)
    if c is None:
        return Decision(key, True, f"new disk {key}: not in the replica's latest point")
    if c.reference_vdi is None:
        return Decision(key, True, "the replica's latest point names no source snapshot")
    if not c.reference_exists:
        return Decision(
            key,
            True,
            f"reference snapshot VDI {c.reference_vdi} is missing from the source pool "
            "(deleted outside XenKeep?)",
        )
    if c.point_size is None:
        return Decision(key, True, f"the replica's latest point has no disk {key}")
    if c.live_size is None:
        return Decision(key, True, f"the replica's disk {key} was removed on the target")
    if c.live_size != c.point_size:
        return Decision(
            key,
            True,
            f"the replica's disk {key} was resized on the target from {c.point_size} "
            f"to {c.live_size} bytes",
        )
    if c.point_size != disk.virtual_size:
        return Decision(
            key,
            True,
            f"disk {key} was resized from {c.point_size} to {disk.virtual_size} bytes",
        )
    return Decision(
        key, False, f"delta against source snapshot VDI {c.reference_vdi}", c.reference_vdi
    )
