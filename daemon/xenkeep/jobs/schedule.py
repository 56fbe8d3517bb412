"""Cron-style schedules, evaluated in a time zone. Pure.

Five fields, as in crontab(5): minute (0-59), hour (0-23), day of month
(1-31), month (1-12 or jan-dec), day of week (0-7 or sun-sat, 0 and 7 are
Sunday). Each field is ``*``, a number, a name, a range ``a-b``, any of them
with a step ``/n``, or a comma-separated list of those. As in cron, when both
day of month and day of week are restricted, a day matches if either does.

Times are computed in the schedule's zone (``zoneinfo``): a wall-clock time
skipped by a DST change is not run that day; one repeated by a DST change
runs once (the first occurrence).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from xenkeep.errors import ValidationError

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: How far ahead to look for the next match: enough for "Feb 29 on a Monday".
_HORIZON_DAYS = 366 * 8


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _DAYS, 0),
)


def _value(text: str, f: _Field) -> int:
    lowered = text.lower()
    if lowered in f.names:
        return f.names.index(lowered) + f.name_base
    if not text.isdigit():
        raise ValidationError(f"{f.name}: {text!r} is not a number", field="schedule")
    n = int(text)
    if not f.low <= n <= f.high:
        raise ValidationError(f"{f.name}: {n} is outside {f.low}-{f.high}", field="schedule")
    return n


def _parse_field(text: str, f: _Field) -> tuple[frozenset[int], bool]:
    """The set of values a field allows, and whether it was ``*`` (unrestricted)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise ValidationError(f"{f.name}: empty list item in {text!r}", field="schedule")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValidationError(
                    f"{f.name}: step {step_text!r} must be a positive number", field="schedule"
                )
            step = int(step_text)
        if base == "*":
            lo, hi = f.low, f.high
            star = star or step == 1
        elif "-" in base:
            a, _, b = base.partition("-")
            lo, hi = _value(a, f), _value(b, f)
            if lo > hi:
                raise ValidationError(f"{f.name}: range {base!r} runs backwards", field="schedule")
        else:
            lo = _value(base, f)
            hi = f.high if slash else lo
        values.update(range(lo, hi + 1, step))
    return frozenset(values), star


@dataclass(frozen=True)
class Schedule:
    """A parsed cron expression in a time zone."""

    expression: str
    zone: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @property
    def tz(self) -> ZoneInfo:
        """The zone the expression is read in."""
        return ZoneInfo(self.zone)

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first run time strictly after ``after`` (aware), in UTC."""
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        tz = self.tz
        local = after.astimezone(tz)
        day = local.date()
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for h in hours:
                    for m in minutes:
                        wall = dt.datetime(day.year, day.month, day.day, h, m, tzinfo=tz)
                        # A wall time a DST gap skips does not exist: it
                        # does not round-trip through UTC.
                        back = wall.astimezone(dt.UTC).astimezone(tz)
                        if back.replace(tzinfo=None) != wall.replace(tzinfo=None):
                            continue
                        if wall.fold == 0 and wall.astimezone(dt.UTC) > after.astimezone(dt.UTC):
                            return wall.astimezone(dt.UTC)
            day += dt.timedelta(days=1)
        raise ValidationError(f"schedule {self.expression!r} never fires", field="schedule")

    def next_timestamp(self, after: float) -> float:
        """:meth:`next_after` on Unix timestamps."""
        return self.next_after(dt.datetime.fromtimestamp(after, dt.UTC)).timestamp()


def parse_schedule(expression: str, zone: str = "UTC") -> Schedule:
    """Parse a five-field cron expression; ValidationError naming the bad part."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValidationError(
            f"a schedule has 5 fields (minute hour day month weekday), got {len(parts)}",
            field="schedule",
            hint="e.g. '30 2 * * *' for every night at 02:30",
        )
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone {zone!r}", field="timezone") from None
    parsed = [_parse_field(p, f) for p, f in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in parsed[4][0])
    sched = Schedule(
        expression=" ".join(parts),
        zone=zone,
        minutes=parsed[0][0],
        hours=parsed[1][0],
        days=parsed[2][0],
        months=parsed[3][0],
        weekdays=weekdays,
        any_day=parsed[2][1],
        any_weekday=parsed[4][1],
    )
    # Fail now, not at run time, for expressions such as "0 0 31 2 *".
    sched.next_after(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    return sched


@dataclass(frozen=True)
class Due:
    """What the scheduler should do about one job now."""

    #: Run now (a time came, or one was missed while the daemon was down).
    run_now: bool
    #: The scheduled time this run stands for (None if not running).
    slot: float | None
    #: When to look again: the next scheduled time after now.
    next_run: float
    #: Why, for the log ("missed at ... while down", "scheduled").
    reason: str


def due(schedule: Schedule, *, last_slot: float | None, created: float, now: float) -> Due:
    """Decide, from the last slot run (or the job's creation), whether a run is due.

    Every slot between the last one handled and now collapses into one run:
    after a long downtime the job runs once at start, not once per missed
    slot. A job never run counts from its creation, so creating a job does not
    start a run of a slot in the past.
    """
    since = last_slot if last_slot is not None else created
    first = schedule.next_timestamp(since)
    upcoming = schedule.next_timestamp(now)
    if first > now:
        return Due(False, None, first, "scheduled")
    # The latest slot at or before now stands for all the missed ones.
    slot = first
    while True:
        after = schedule.next_timestamp(slot)
        if after > now:
            break
        slot = after
    late = now - slot
    stamp = dt.datetime.fromtimestamp(slot, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    reason = f"slot {stamp}" if late < 60 else f"slot {stamp} was missed (daemon down); running now"
    return Due(True, slot, upcoming, reason)
