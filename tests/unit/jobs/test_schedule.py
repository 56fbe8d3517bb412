"""Cron parsing and next-run computation, including DST and missed runs."""

from __future__ import annotations

import datetime as dt

import pytest

from xenkeep.errors import ValidationError
from xenkeep.jobs.schedule import due, parse_schedule

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc,arg-type]


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("30 2 * * *", at(2026, 1, 1, 0, 0), at(2026, 1, 1, 2, 30)),
        ("30 2 * * *", at(2026, 1, 1, 2, 30), at(2026, 1, 2, 2, 30)),
        ("*/15 * * * *", at(2026, 1, 1, 0, 7), at(2026, 1, 1, 0, 15)),
        ("0 9-17/4 * * *", at(2026, 1, 1, 10, 0), at(2026, 1, 1, 13, 0)),
        ("0 0 * * mon", at(2026, 1, 1, 0, 0), at(2026, 1, 5, 0, 0)),  # 2026-01-01 is a Thursday
        ("0 0 * * 7", at(2026, 1, 1, 0, 0), at(2026, 1, 4, 0, 0)),
        ("0 0 1 feb,MAR *", at(2026, 1, 1, 0, 0), at(2026, 2, 1, 0, 0)),
        ("0 0 29 2 *", at(2026, 1, 1, 0, 0), at(2028, 2, 29, 0, 0)),
        # Both day fields restricted: either matches (the 13th or a Friday).
        ("0 0 13 * fri", at(2026, 2, 1, 0, 0), at(2026, 2, 6, 0, 0)),
        ("5,10 0 * * *", at(2026, 1, 1, 0, 6), at(2026, 1, 1, 0, 10)),
    ],
)
def test_next_after(expr: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert parse_schedule(expr).next_after(after) == expected


def test_time_zone_and_dst() -> None:
    s = parse_schedule("30 2 * * *", "Europe/Paris")
    # Winter: 02:30 CET is 01:30 UTC.
    assert s.next_after(at(2026, 1, 10, 0, 0)) == at(2026, 1, 10, 1, 30)
    # 2026-03-29: 02:30 does not exist in Paris; the next run is the day after.
    assert s.next_after(at(2026, 3, 28, 12, 0)) == at(2026, 3, 30, 0, 30)
    # 2026-10-25: 02:30 happens twice; it runs once, at the first one (00:30 UTC).
    first = s.next_after(at(2026, 10, 24, 12, 0))
    assert first == at(2026, 10, 25, 0, 30)
    assert s.next_after(first) == at(2026, 10, 26, 1, 30)


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "a * * * *",
        "*/0 * * * *",
        "5-1 * * * *",
        "0 0 31 2 *",
        "1,,2 * * * *",
        "* * * 13 *",
        "* * * * 8",
    ],
)
def test_rejects_bad_expressions(expr: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_schedule(expr)
    assert info.value.field == "schedule"


def test_rejects_unknown_zone() -> None:
    with pytest.raises(ValidationError) as info:
        parse_schedule("* * * * *", "Mars/Olympus")
    assert info.value.field == "timezone"


def test_due_not_yet() -> None:
    s = parse_schedule("0 3 * * *")
    created = at(2026, 1, 1, 12, 0).timestamp()
    d = due(s, last_slot=None, created=created, now=at(2026, 1, 1, 13, 0).timestamp())
    assert not d.run_now
    assert d.next_run == at(2026, 1, 2, 3, 0).timestamp()


def test_due_on_time() -> None:
    s = parse_schedule("0 3 * * *")
    last = at(2026, 1, 1, 3, 0).timestamp()
    d = due(s, last_slot=last, created=0, now=at(2026, 1, 2, 3, 0, 5).timestamp())
    assert d.run_now
    assert d.slot == at(2026, 1, 2, 3, 0).timestamp()
    assert d.next_run == at(2026, 1, 3, 3, 0).timestamp()
    assert "missed" not in d.reason


def test_missed_while_down_runs_once_at_start() -> None:
    s = parse_schedule("0 3 * * *")
    last = at(2026, 1, 1, 3, 0).timestamp()
    # Down from Jan 1 to Jan 5 noon: four slots missed, one run now.
    now = at(2026, 1, 5, 12, 0).timestamp()
    d = due(s, last_slot=last, created=0, now=now)
    assert d.run_now
    assert d.slot == at(2026, 1, 5, 3, 0).timestamp()
    assert "missed" in d.reason
    # Once that slot is recorded, nothing more is due until the next one.
    again = due(s, last_slot=d.slot, created=0, now=now)
    assert not again.run_now
    assert again.next_run == at(2026, 1, 6, 3, 0).timestamp()
