"""Recovery point objective: how old a replica's data is, and when that is
too old. Pure.

The RPO of a replica is the age of its latest point: how much a disaster on
the source would lose now. Right after a run it is the run's duration (the
point equals the snapshot taken at its start); just before the next run
ends it is the interval plus that duration. So the warning comes when the
age passes the job's interval plus the last run's duration plus a minute of
slack: one missed or failed run is enough to raise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from xenkeep.jobs.schedule import Schedule

#: Slots looked at to find a schedule's interval (two days of a 10-minute job... or a week's).
SAMPLES: Final = 64
#: Slack added to the interval before an RPO is called exceeded.
SLACK_SECONDS: Final = 60.0


def interval(schedule: Schedule, now: float, samples: int = SAMPLES) -> float:
    """The longest gap between consecutive slots of ``schedule`` after ``now``."""
    gaps = []
    slot = schedule.next_timestamp(now)
    for _ in range(samples):
        after = schedule.next_timestamp(slot)
        gaps.append(after - slot)
        slot = after
    return max(gaps)


@dataclass(frozen=True)
class Rpo:
    """A replica's RPO now."""

    #: Seconds since the latest point's source snapshot; None without a point.
    age: float | None
    #: The age past which it is exceeded; None when the job runs by hand only.
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
    job_interval: float | None,
    last_duration: float = 0.0,
) -> Rpo:
    """The RPO of a replica whose latest point's source was taken at ``latest_point_at``.

    A scheduled job's replica with no point yet is exceeded once the job has
    existed longer than its limit; that is for the caller (no point, no age).
    """
    limit = None if job_interval is None else job_interval + max(0.0, last_duration) + SLACK_SECONDS
    if latest_point_at is None:
        return Rpo(None, limit, False)
    age = max(0.0, now - latest_point_at)
    return Rpo(age, limit, limit is not None and age > limit)
