"""The diagnostics service: run every check as an operation, keep the latest
result of each, and run them on a schedule.

A run is an operation of kind :data:`~.kinds.DIAGNOSTICS`: one sub-task per
check (its status, and its results in the task's facts), a log line per
check, cancel between checks, and a report with every result. The latest
result of each check is read back from the sub-tasks of the newest runs, so
it survives a restart, and a check cut short by a cancel keeps its previous
result. Runs older than the newest :data:`~.const.KEEP_RUNS` are forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from xenkeep.ops import OperationContext, Operations, OpKind, OpStatus, Scheduler
from xenkeep.ops.manager import Outcome, describe_error

from .check import Check, CheckRegistry, Result, failure, worst
from .checks import default_checks
from .const import (
    CHECK_TIMEOUT,
    FIRST_RUN_AFTER,
    KEEP_RUNS,
    SCHEDULE_EVERY,
    SEVERITY,
    CheckStatus,
    DiagnosticsStage,
)
from .kinds import DIAGNOSTICS, ONE_RUN, TARGET
from .sources import Sources

log = logging.getLogger(__name__)

#: The scheduler looks again at least this often while a run is going.
BUSY_TICK: Final = 60.0


def summarize(results: Sequence[Result]) -> dict[str, Any]:
    """Counts per status, the worst status, and the results that are not ok
    (failures first), for the dashboard badge and the console."""
    counts = {s.value: 0 for s in CheckStatus}
    for r in results:
        counts[r.status.value] += 1
    problems = sorted(
        (r for r in results if r.status is not CheckStatus.OK),
        key=lambda r: -SEVERITY[r.status],
    )
    return {
        "counts": counts,
        "status": worst(r.status for r in results).value if results else "unknown",
        "checked_at": max((r.checked_at for r in results), default=None),
        "problems": [r.as_dict() for r in problems],
    }


class DiagnosticsService:
    """Runs the checks, keeps their latest results, schedules them."""

    def __init__(
        self,
        sources: Sources,
        ops: Operations,
        *,
        scheduler: Scheduler | None = None,
        checks: Sequence[Check] | None = None,
        check_timeout: float = CHECK_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sources = sources
        self.ops = ops
        self.registry = CheckRegistry(default_checks() if checks is None else checks)
        self._timeout = check_timeout
        self._clock = clock
        self._started = clock()
        if scheduler is not None:
            scheduler.register("diagnostics", self.schedule_tick)

    # ------------------------------------------------------------------ runs

    @property
    def running(self) -> int | None:
        """The id of the run in progress, if any."""
        ids = self.ops.running(kind=OpKind.DIAGNOSTICS)
        return ids[0] if ids else None

    async def run_check(self, check: Check) -> list[Result]:
        """One check's results; a check that raises or hangs is a failure of
        that check, never of the run."""
        now = self._clock()
        try:
            findings = await asyncio.wait_for(check.run(self.sources), self._timeout)
        except TimeoutError:
            findings = [
                failure(
                    f"no answer within {self._timeout:g} s",
                    "What this check looks at hangs; run it again, then see the journal.",
                )
            ]
        except Exception as exc:
            log.exception("check %s failed to run", check.id)
            findings = [
                failure(f"the check could not run: {describe_error(exc)}", "See the journal.")
            ]
        return [Result.of(check, f, now) for f in findings]

    async def start(self, *, trigger: str = "manual") -> int:
        """Start a run of every check; its operation id (ConflictError while one runs)."""
        checks = list(self.registry)

        async def work(ctx: OperationContext) -> Outcome:
            await ctx.stage(DiagnosticsStage.CHECK)
            everything: list[Result] = []
            for i, check in enumerate(checks):
                task = await ctx.task(subject=check.id, name=check.title, stage="check")
                results = await self.run_check(check)
                everything += results
                status = worst(r.status for r in results)
                problems = "; ".join(r.value for r in results if r.status is not CheckStatus.OK)
                await ctx.update_task(
                    task,
                    {"results": [r.as_dict() for r in results], "check_status": status.value},
                    status=OpStatus.FAILED.value
                    if status is CheckStatus.FAILURE
                    else OpStatus.SUCCESS.value,
                    stage="done",
                    finished_at=self._clock(),
                    error=problems[:1000],
                )
                for r in results:
                    await ctx.log(
                        f"{r.id}: {r.status.value}: {r.value}",
                        level={"ok": "info", "warning": "warning"}.get(r.status.value, "error"),
                        task_id=task,
                    )
                await ctx.progress(i + 1, len(checks), force=True)
            summary = summarize(everything)
            await ctx.log(
                "{ok} ok, {warning} warning(s), {failure} failure(s)".format(**summary["counts"])
            )
            return Outcome(report={"results": [r.as_dict() for r in everything], **summary})

        op_id = await self.ops.start(
            DIAGNOSTICS,
            work,
            target=TARGET,
            title=f"diagnostics ({len(checks)} checks)",
            action="run the diagnostics",
            trigger=trigger,
            claims=[ONE_RUN],
        )
        # A run an hour adds up: keep a day of them.
        await self.ops.store.forget_old(OpKind.DIAGNOSTICS.value, keep=KEEP_RUNS)
        return op_id

    async def wait(self, op_id: int) -> dict[str, Any]:
        """Wait for a run to finish; its row."""
        return await self.ops.wait(op_id)

    # ---------------------------------------------------------------- results

    async def latest(self) -> list[Result]:
        """The latest result of every check, in the registry's order (a check
        never run has none)."""
        by_check: dict[str, list[Result]] = {}
        for op in await self.ops.find(kinds=[OpKind.DIAGNOSTICS.value], limit=KEEP_RUNS):
            for task in await self.ops.store.tasks(int(op["id"])):
                check_id = str(task.get("subject", ""))
                stored = task.get("results")
                if check_id in self.registry and check_id not in by_check and stored:
                    by_check[check_id] = [Result.from_dict(r) for r in stored]
            if len(by_check) == len(self.registry):
                break
        return [r for c in self.registry for r in by_check.get(c.id, [])]

    async def view(self) -> dict[str, Any]:
        """The latest results with their summary, and the run in progress."""
        results = await self.latest()
        return {
            "results": [r.as_dict() for r in results],
            "summary": summarize(results),
            "running": self.running,
            "checks": [{"id": c.id, "title": c.title} for c in self.registry],
        }

    async def summary(self) -> dict[str, Any]:
        """The summary of the latest results (the dashboard badge)."""
        return summarize(await self.latest())

    # --------------------------------------------------------------- schedule

    async def schedule_tick(self, now: float) -> float:
        """Start a run when the last one is SCHEDULE_EVERY old (the first one
        FIRST_RUN_AFTER after the start); the seconds until the next look."""
        if self.running is not None:
            return BUSY_TICK
        last = await self.ops.find(kinds=[OpKind.DIAGNOSTICS.value], limit=1)
        due = (
            float(last[0]["created_at"]) + SCHEDULE_EVERY
            if last
            else self._started + FIRST_RUN_AFTER
        )
        if now < due:
            return due - now
        try:
            await self.start(trigger="schedule")
        except Exception as exc:  # the next look tries again
            log.error("scheduled diagnostics not started: %s", describe_error(exc))
        return SCHEDULE_EVERY
