"""The scheduler source every job kind registers: start each job whose slot came.

Each kind (backups, replications) keeps its jobs and starts its runs; what
is the same is deciding, per job, from its cron schedule and the last slot
it ran (:func:`~xenkeep.jobs.schedule.due`), whether to start a run now,
and recording the slot and the next look.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from xenkeep.errors import XenKeepError

from .schedule import due, parse_schedule

log = logging.getLogger(__name__)


class _Spec(Protocol):
    @property
    def schedule(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def enabled(self) -> bool: ...


class ScheduledJob(Protocol):
    """What a stored job of any kind offers the scheduler."""

    @property
    def id(self) -> int: ...
    @property
    def spec(self) -> _Spec: ...
    @property
    def created_at(self) -> float: ...
    @property
    def last_slot(self) -> float | None: ...
    @property
    def next_run(self) -> float | None: ...


@dataclass(frozen=True)
class JobKind:
    """How one job kind starts and records its scheduled runs."""

    #: For the log: "backup job", "replication job".
    noun: str
    running: Callable[[int], bool]
    #: Start a run of job ``id`` with a trigger text; its operation id.
    start: Callable[[int, str], Awaitable[int]]
    #: Record ``last_slot`` (None: unchanged) and ``next_run`` of a job.
    set_state: Callable[[int, float | None, float], Awaitable[None]]
    #: Add a line to a started run's log.
    note: Callable[[int, str], Awaitable[None]]
    #: Why a job's schedule waits ("" = it does not).
    paused: Callable[[ScheduledJob], str] = lambda _job: ""


async def tick_jobs(rows: Sequence[ScheduledJob], now: float, kind: JobKind) -> float:
    """Start every due job of one kind; the seconds until the next look.

    A paused job lets its slots pass: it does not catch up when resumed.
    """
    wait = float("inf")
    for row in rows:
        spec = row.spec
        if not spec.schedule or not spec.enabled:
            continue
        try:
            d = due(
                parse_schedule(spec.schedule, spec.timezone),
                last_slot=row.last_slot,
                created=row.created_at,
                now=now,
            )
        except XenKeepError as exc:
            log.error("%s %s: bad schedule: %s", kind.noun, row.id, exc.message)
            continue
        if d.run_now and kind.paused(row):
            await kind.set_state(row.id, d.slot, d.next_run)
        elif d.run_now and not kind.running(row.id):
            await kind.set_state(row.id, d.slot, d.next_run)
            try:
                op_id = await kind.start(row.id, f"schedule: {d.reason}")
                await kind.note(op_id, f"started by the scheduler ({d.reason})")
            except XenKeepError as exc:
                log.error("%s %s: scheduled run not started: %s", kind.noun, row.id, exc.message)
        elif row.next_run != d.next_run and not d.run_now:
            await kind.set_state(row.id, None, d.next_run)
        wait = min(wait, max(0.5, d.next_run - now))
    return wait
