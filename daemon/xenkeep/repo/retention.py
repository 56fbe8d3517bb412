"""Retention: which restore points to keep and which merges to run. Pure.

Forever-forward incremental chains drop their oldest point by merging the
next point's delta into the oldest full; the plan is that list of merges,
oldest first. Applying it is :func:`xenkeep.repo.merge.merge_oldest`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PointSummary:
    """What retention needs to know about a restore point."""

    id: str
    seq: int
    damaged: bool = False


@dataclass(frozen=True)
class MergeStep:
    """Retire point ``retire`` by merging its successor ``into``'s delta into its full."""

    retire: str
    into: str


@dataclass(frozen=True)
class RetentionPlan:
    """The outcome: points kept, merges to run in order, and why fewer merges
    than needed are planned (if so)."""

    keep: tuple[str, ...]
    merges: tuple[MergeStep, ...]
    blocked: str | None = None


def plan_retention(points: Sequence[PointSummary], keep_last: int) -> RetentionPlan:
    """Keep the newest ``keep_last`` points; merge away the older ones, oldest first.

    A damaged point is never merged (that would spread the damage into the
    full other points rely on): planning stops before it and says why.
    """
    if keep_last < 1:
        raise ValueError("retention must keep at least one restore point")
    ordered = sorted(points, key=lambda p: p.seq)
    excess = max(0, len(ordered) - keep_last)
    merges: list[MergeStep] = []
    blocked = None
    for i in range(excess):
        old, new = ordered[i], ordered[i + 1]
        bad = old if old.damaged else new if new.damaged else None
        if bad is not None:
            blocked = (
                f"restore point {bad.id} is damaged: merging it would spread the damage; "
                "run verify and a new full first"
            )
            break
        merges.append(MergeStep(retire=old.id, into=new.id))
    kept = tuple(p.id for p in ordered[len(merges) :])
    return RetentionPlan(keep=kept, merges=tuple(merges), blocked=blocked)
