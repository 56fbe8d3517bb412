"""RPO: the age of the latest point, and when it is too old (pure)."""

from __future__ import annotations

import datetime as dt

from xenkeep.jobs.schedule import parse_schedule
from xenkeep.replication.rpo import SLACK_SECONDS, interval, previous_slot, rpo

# 2027-01-15 12:05:00 UTC, a Friday.
NOW = dt.datetime(2027, 1, 15, 12, 5, tzinfo=dt.UTC).timestamp()
EVERY_10 = parse_schedule("*/10 * * * *")
DAYTIME = parse_schedule("*/10 8-18 * * *")


def test_previous_slot() -> None:
    assert previous_slot(EVERY_10, NOW) == NOW - 300
    morning = dt.datetime(2027, 1, 15, 7, 0, tzinfo=dt.UTC).timestamp()
    assert previous_slot(DAYTIME, morning) == morning - 12 * 3600 - 10 * 60
    assert interval(EVERY_10, NOW) == 600


def test_exceeded_once_a_slot_that_had_time_to_finish_left_no_point() -> None:
    # The 12:00 slot's run had time (30 s + slack) to make a point.
    fresh = rpo(NOW - 290, NOW, schedule=EVERY_10, since=0, last_duration=30)
    stale = rpo(NOW - 310, NOW, schedule=EVERY_10, since=0, last_duration=30)
    assert not fresh.exceeded and stale.exceeded
    assert stale.as_dict()["limit"] == 300
    # A long run: the 12:00 slot may still be running, so 11:50's point is enough.
    assert not rpo(NOW - 900, NOW, schedule=EVERY_10, since=0, last_duration=400).exceeded


def test_a_quiet_night_does_not_warn_in_the_morning() -> None:
    morning = dt.datetime(2027, 1, 15, 7, 0, tzinfo=dt.UTC).timestamp()
    last_evening = morning - 12 * 3600 - 10 * 60  # the 18:50 run
    assert not rpo(last_evening + 5, morning, schedule=DAYTIME, since=0).exceeded


def test_no_schedule_never_warns_and_no_point_warns_once_due() -> None:
    assert not rpo(NOW - 10**6, NOW, schedule=None, since=0).exceeded
    assert rpo(None, NOW, schedule=EVERY_10, since=0).exceeded
    # A replica newer than the slot due: not yet.
    assert not rpo(None, NOW, schedule=EVERY_10, since=NOW - 100).exceeded
    assert SLACK_SECONDS == 60
