"""Recovery point objective: how old a replica's data is, and when that is
too old. Pure.

The RPO of a replica is the age of its latest point: how much a disaster on
the source would lose now. A point equals the source snapshot its run took
at its start, so once a scheduled slot's run has had time to finish (the
last run's duration, plus a minute), the latest point should be no older
than that slot. When it is (a run failed, was missed, or is stuck), the RPO
is exceeded: one missed or failed run is enough to raise it, and a schedule
with a quiet night does not warn in the morning for the night's gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from xenkeep.jobs.schedule import Schedule

#: Slack added to the last run's duration before a slot's point is expected.
SLACK_SECONDS: Final = 60.0
#: How far back a slot is looked for: a day, a week, then the longest a
#: five-field schedule can wait between slots (Feb 29 on a given weekday).
_LOOKBACK: Final = (3600.0, 86400.0, 8 * 86400.0, 366 * 8 * 86400.0)


def previous_slot(schedule: Schedule, t: float) -> float | None:
    """The latest slot of ``schedule`` at or before ``t``, if any."""
    for back in _LOOKBACK:
        slot = schedule.next_timestamp(t - back)
        if slot > t:
            continue
        while True:
            after = schedule.next_timestamp(slot)
            if after > t:
                return slot
            slot = after
    return None


def interval(schedule: Schedule, now: float, samples: int = 8) -> float:
    """The gap between the slots around ``now`` (the next few, at most): for words."""
    slot = schedule.next_timestamp(now)
    gaps = []
    for _ in range(samples):
        after = schedule.next_timestamp(slot)
        gaps.append(after - slot)
        slot = after
    return min(gaps)


@dataclass(frozen=True)
class Rpo:
    """A replica's RPO now."""

    #: Seconds since the latest point's source snapshot; None without a point.
    age: float | None
    #: The age allowed now; None when the job runs by hand only (or not yet).
    limit: float | None
    exceeded: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "age": None if self.age is None else round(self.age, 1),
            "limit": None if self.limit is None else round(self.limit, 1),
            "exceeded": self.exceeded,
        }


def rpo(
    latest_point_at: float | None,
    now: float,
    *,
    schedule: Schedule | None,
    since: float,
    last_duration: float = 0.0,
) -> Rpo:
    """The RPO of a replica whose latest point's source was taken at
    ``latest_point_at`` (None: no point yet), kept by a job on ``schedule``
    (None: by hand); the replica exists since ``since``."""
    age = None if latest_point_at is None else max(0.0, now - latest_point_at)
    if schedule is None:
        return Rpo(age, None, False)
    due = previous_slot(schedule, now - max(0.0, last_duration) - SLACK_SECONDS)
    if due is None:
        return Rpo(age, None, False)
    limit = now - due
    if age is None:
        # No point yet: late only once a slot after the replica's start has passed.
        return Rpo(None, limit, due >= since)
    return Rpo(age, limit, age > limit)
