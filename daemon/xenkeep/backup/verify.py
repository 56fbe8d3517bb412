"""Verify: re-read every stored block against its checksum, on demand or on schedule.

A verify is an operation of kind :data:`~.kinds.VERIFY`: progress in bytes
read out of the bytes stored, a log naming each VM and each damaged point,
cancel between two blocks, and a history. Its report (damaged points with
their block numbers) is what the storage page and the console show as the
last verify. Damage found by a verify nobody watches is mailed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.jobs.schedule import due, parse_schedule
from xenkeep.mail import MailSettings, send_mail
from xenkeep.ops import OperationContext, Operations, OpKind, OpStatus, ThreadWork
from xenkeep.ops.manager import Outcome
from xenkeep.repo.layout import check_uuid
from xenkeep.repo.verify import VerifyReport
from xenkeep.store import Database

from .kinds import ONE_VERIFY, USES_STORAGE, VERIFY, VerifyStage
from .report import verify_body, verify_subject
from .storage import BackupStorage

log = logging.getLogger(__name__)

#: The verify schedule and its state (JSON: schedule, created, last_slot).
VERIFY_SCHEDULE_KEY: Final = "backup.verify.schedule"
#: Sundays at 04:00 in the appliance's time zone: every stored block is
#: re-read weekly unless the administrator chooses otherwise, so silent
#: damage is found before the restore that needs it.
DEFAULT_VERIFY_SCHEDULE: Final = "0 4 * * 0"
#: The scheduler looks again after this when there is nothing to verify.
IDLE_TICK: Final = 30.0


class VerifyService:
    """Start, follow and schedule verifies of the datastore."""

    def __init__(
        self,
        db: Database,
        storage: BackupStorage,
        ops: Operations,
        mail: MailSettings,
        *,
        appliance_name: Callable[[], Awaitable[str]],
        appliance_timezone: Callable[[], Awaitable[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.storage = storage
        self.ops = ops
        self.mail = mail
        self._appliance_name = appliance_name
        self._timezone = appliance_timezone
        self._clock = clock

    @property
    def running(self) -> int | None:
        """The id of the verify in progress, if any."""
        ids = self.ops.running(kind=OpKind.VERIFY)
        return ids[0] if ids else None

    async def start(self, vm_uuid: str | None = None, *, trigger: str = "manual") -> int:
        """Start a verify of every VM (or of one); its operation id.

        A second verify while one runs is refused, and so is a ``vm_uuid``
        that is not a uuid: it names a directory of the datastore, so it is
        checked before anything is started or stored.
        """
        if vm_uuid is not None:
            try:
                vm_uuid = check_uuid(vm_uuid)
            except ValueError:
                raise ValidationError(f"not a VM uuid: {vm_uuid[:80]!r}", field="vm_uuid") from None
        ds = self.storage.datastore
        started = self._clock()

        def read_all(work: ThreadWork) -> VerifyReport:
            return ds.verify_blocking(vm_uuid, block=work.advance)

        async def work(ctx: OperationContext) -> Outcome:
            await ctx.stage(VerifyStage.MEASURE)
            total = await ds.stored_bytes(vm_uuid)
            await ctx.log(
                f"re-reading {'VM ' + vm_uuid if vm_uuid else 'every VM'}: "
                f"{total} bytes of stored blocks"
            )
            await ctx.stage(VerifyStage.READ)
            report = await ctx.in_thread(read_all, total=total)
            await ctx.stage(VerifyStage.REPORT)
            result = _result(report) | {
                "started": started,
                "finished": self._clock(),
                "vm_uuid": vm_uuid,
                "trigger": trigger,
            }
            for d in report.damaged:
                await ctx.log(
                    f"VM {d.vm_uuid} point {d.point_id} disk {d.disk} is damaged ({d.reason}), "
                    f"blocks {list(d.blocks)}",
                    level="error",
                )
            for s in report.skipped:
                await ctx.log(f"skipped {s}", level="warning")
            await ctx.log(
                f"{report.points} point(s) of {report.vms} VM(s), {report.blocks} blocks read: "
                + ("no damage" if report.ok else f"{len(report.damaged)} damaged")
            )
            if not report.ok:
                await self._mail(result)
                return Outcome(
                    report=result, status=OpStatus.FAILED, error="damaged restore points found"
                )
            return Outcome(report=result)

        return await self.ops.start(
            VERIFY,
            work,
            target=f"vm:{vm_uuid}" if vm_uuid else "datastore",
            title=f"verify {vm_uuid}" if vm_uuid else "verify all VMs",
            action="start a verify",
            trigger=trigger,
            params={"vm_uuid": vm_uuid},
            claims=[ONE_VERIFY, USES_STORAGE],
        )

    async def _mail(self, result: Mapping[str, Any]) -> None:
        # Damage found by a verify nobody is watching must reach someone.
        smtp = await self.mail.get()
        if smtp is None:
            return
        try:
            appliance = await self._appliance_name()
            await send_mail(
                smtp,
                verify_subject(appliance, result),
                verify_body(result),
                ("xenkeep-verify.json", result),
            )
        except Exception as exc:  # a mail failure must not hide the report
            log.warning("could not mail the verify report: %s", exc)

    async def wait(self) -> dict[str, Any] | None:
        """Wait for a running verify to end; the last report."""
        op_id = self.running
        if op_id is not None:
            await self.ops.wait(op_id)
        return await self.last()

    async def last(self) -> dict[str, Any] | None:
        """The last verify's report (``status``: running, ok, damaged, failed,
        cancelled, interrupted), or None if none ever ran."""
        found = await self.ops.find(kinds=[OpKind.VERIFY.value], limit=1)
        return verify_view(found[0]) if found else None

    async def history(self, limit: int = 10) -> list[dict[str, Any]]:
        """The recent verifies, newest first, each as its report."""
        return [verify_view(op) for op in await self.ops.find(kinds=[VERIFY.kind], limit=limit)]

    # ------------------------------------------------------------- schedule

    async def schedule(self) -> dict[str, Any]:
        """The verify schedule: ``schedule`` ("" when off), ``timezone``, ``next_run``."""
        state = await self._schedule_state()
        zone = await self._timezone()
        expr = str(state.get("schedule", ""))
        next_run = None
        if expr:
            with contextlib.suppress(XenKeepError):
                next_run = parse_schedule(expr, zone).next_timestamp(self._clock())
        return {"schedule": expr, "timezone": zone, "next_run": next_run}

    async def set_schedule(self, expression: str) -> dict[str, Any]:
        """Set the verify schedule (cron syntax, appliance time zone); "" turns it off."""
        expr = " ".join(expression.split())
        if expr:
            parse_schedule(expr, await self._timezone())
        # A new schedule counts from now: changing it never starts a verify at once.
        await self.db.set_setting(
            VERIFY_SCHEDULE_KEY,
            json.dumps({"schedule": expr, "created": self._clock(), "last_slot": None}),
        )
        return await self.schedule()

    async def _schedule_state(self) -> dict[str, Any]:
        raw = await self.db.get_setting(VERIFY_SCHEDULE_KEY)
        if raw:
            with contextlib.suppress(ValueError):
                data = json.loads(raw)
                if isinstance(data, dict):
                    return data
        # First look: the default schedule, counted from now.
        data = {"schedule": DEFAULT_VERIFY_SCHEDULE, "created": self._clock(), "last_slot": None}
        await self.db.set_setting(VERIFY_SCHEDULE_KEY, json.dumps(data))
        return data

    async def schedule_tick(self, now: float) -> float:
        """Start the scheduled verify when due; the seconds until the next look."""
        state = await self._schedule_state()
        expr = str(state.get("schedule", ""))
        if not expr or not self.storage.configured:
            return IDLE_TICK
        try:
            sched = parse_schedule(expr, await self._timezone())
            d = due(
                sched,
                last_slot=state.get("last_slot"),
                created=float(state.get("created") or now),
                now=now,
            )
        except XenKeepError as exc:
            log.error("verify schedule %r unusable: %s", expr, exc.message)
            return IDLE_TICK
        if d.run_now:
            state["last_slot"] = d.slot
            await self.db.set_setting(VERIFY_SCHEDULE_KEY, json.dumps(state))
            if self.running is not None:
                log.info("scheduled verify skipped: one is already running")
            else:
                log.info("scheduled verify started (%s)", d.reason)
                try:
                    await self.start(trigger=f"schedule: {d.reason}")
                except XenKeepError as exc:
                    log.error("scheduled verify not started: %s", exc.message)
        return max(0.5, d.next_run - now)


def _result(report: VerifyReport) -> dict[str, Any]:
    return {
        "status": "ok" if report.ok else "damaged",
        "vms": report.vms,
        "points": report.points,
        "files": report.files,
        "blocks": report.blocks,
        "bytes_read": report.bytes_read,
        "damaged": [dataclasses.asdict(d) for d in report.damaged],
        "skipped": report.skipped,
    }


def verify_view(op: Mapping[str, Any]) -> dict[str, Any]:
    """A verify operation as the last-verify report the pages and the API show."""
    report = dict(op.get("report") or {})
    status = str(op.get("status"))
    if status in (OpStatus.PENDING, OpStatus.RUNNING):
        report["status"] = "running"
    elif status != OpStatus.SUCCESS and report.get("status") not in ("ok", "damaged"):
        report["status"] = status
    report.setdefault("started", op.get("started_at") or op.get("created_at"))
    report.setdefault("vm_uuid", (op.get("params") or {}).get("vm_uuid"))
    report.setdefault("trigger", op.get("trigger", ""))
    if op.get("error") and report["status"] not in ("ok", "damaged"):
        report["error"] = op["error"]
    report["operation_id"] = op.get("id")
    return report
