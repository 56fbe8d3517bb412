"""The backups' health: the last verify, failed runs of each kind of job, and
jobs whose newest good run is older than their schedule promises (RPO)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from xenkeep.backup.kinds import job_target
from xenkeep.diagnostics.check import Check, Finding, failure, ok, warning
from xenkeep.diagnostics.sources import Sources
from xenkeep.errors import XenKeepError
from xenkeep.jobs.schedule import parse_schedule
from xenkeep.ops import OpKind, OpStatus
from xenkeep.units import ago

from .disks import storage_status

#: A verify older than this is worth a reminder.
VERIFY_STALE: Final = 14 * 86400.0
#: Failed runs are looked for this far back.
RUNS_WINDOW: Final = 7 * 86400.0
RUNS_LOOKED_AT: Final = 200


async def last_verify(s: Sources) -> list[Finding]:
    status = await storage_status(s)
    if not status.get("configured"):
        return [ok("no backup storage, nothing to verify")]
    last = await s.backup.last_verify()
    remedy = "Run Verify now on Backup → Storage (or `POST /api/v1/backup/verify`)."
    if last is None:
        return [warning("the backups were never verified", remedy)]
    state = str(last.get("status"))
    when = float(last.get("finished") or last.get("started") or 0)
    age = s.clock() - when
    if state == "running":
        return [ok(f"a verify is running (operation {last.get('operation_id')})")]
    if state == "damaged":
        damaged = last.get("damaged") or []
        return [
            failure(
                f"the last verify, {ago(age)}, found {len(damaged)} damaged restore point(s)",
                "Open the verify's report (Backup → Storage) for the points and blocks: run "
                "the job again so the next point is sound, and delete the damaged points.",
            )
        ]
    if state != "ok":
        return [
            failure(
                f"the last verify, {ago(age)}, ended {state}: {last.get('error') or 'no reason'}",
                remedy,
            )
        ]
    words = f"no damage in {last.get('points', 0)} restore point(s), {ago(age)}"
    if age > VERIFY_STALE:
        return [warning(words, "The last verify is old. " + remedy)]
    return [ok(words)]


def failed_runs(kind: OpKind) -> Check:
    """The check of one kind of run: the latest run of a job failed (failure),
    or one failed in the last week and a later one succeeded (warning)."""
    noun = kind.value

    async def run(s: Sources) -> list[Finding]:
        since = s.clock() - RUNS_WINDOW
        ops = [
            op
            for op in await s.ops.find(kinds=[kind.value], limit=RUNS_LOOKED_AT)
            if float(op.get("created_at") or 0) >= since
        ]
        finished = [op for op in ops if op["status"] not in (OpStatus.PENDING, OpStatus.RUNNING)]
        failed = [op for op in finished if op["status"] == OpStatus.FAILED]
        latest: dict[str, dict[str, Any]] = {}
        for op in finished:  # newest first: the first seen per target is its latest
            latest.setdefault(str(op["target"]), op)
        broken = [op for op in latest.values() if op["status"] == OpStatus.FAILED]
        words = f"{len(finished)} {noun} run(s) in 7 days, {len(failed)} failed"
        remedy = (
            "Open the failed run (Operations) for its log and report: the error says "
            "which VM failed and why. Run the job again once the cause is fixed."
        )
        if broken:
            names = ", ".join(f"{op['title']} (run {op['id']}: {op['error']})" for op in broken)
            return [failure(f"{words}; the latest run failed for {names}", remedy)]
        if failed:
            return [warning(f"{words}; later runs succeeded", remedy)]
        return [ok(words)]

    return Check(f"runs.{noun}", f"Last {noun} runs", run)


def overdue_since(schedule: str, zone: str, since: float, now: float) -> float | None:
    """When the job became overdue, or None: it is overdue once its schedule has
    fired twice since ``since`` (its newest good run's start, or its creation),
    i.e. its restore point is older than one full interval plus a run. Pure."""
    sched = parse_schedule(schedule, zone)
    first = sched.next_timestamp(since)
    second = sched.next_timestamp(first)
    return second if second <= now else None


async def overdue_jobs(s: Sources) -> list[Finding]:
    now = s.clock()
    late = []
    jobs = await s.backup.jobs()
    for job in jobs:
        if not job.get("enabled", True) or not job.get("schedule"):
            continue
        good = await s.ops.find(
            kinds=[OpKind.BACKUP.value],
            statuses=[OpStatus.SUCCESS.value, OpStatus.WARNING.value],
            target=job_target(int(job["id"])),
            limit=1,
        )
        since = float(good[0].get("started_at") or good[0]["created_at"]) if good else None
        try:
            when = overdue_since(
                str(job["schedule"]),
                str(job.get("timezone") or "UTC"),
                since if since is not None else float(job["created_at"]),
                now,
            )
        except XenKeepError:
            continue  # an unusable schedule is the scheduler's to report
        if when is not None:
            newest = f"newest good run {ago(now - since)}" if since else "never succeeded"
            late.append(f"{job['name']} ({newest}; schedule {job['schedule']})")
    if late:
        return [
            failure(
                "overdue: " + "; ".join(late),
                "These jobs missed their schedule twice: their newest restore point is older "
                "than the schedule promises. Look at their last runs (failures, the appliance "
                "down at the scheduled time) and run them now.",
            )
        ]
    scheduled = sum(1 for j in jobs if j.get("enabled", True) and j.get("schedule"))
    return [ok(f"{scheduled} scheduled job(s), none overdue")]


def checks_for(kinds: Sequence[OpKind]) -> list[Check]:
    """The backup checks, with one failed-runs check per kind of run."""
    return [
        Check("backup.verify", "Last verify of the backups", last_verify),
        *(failed_runs(k) for k in kinds),
        Check("backup.overdue", "Jobs on schedule (RPO)", overdue_jobs),
    ]
