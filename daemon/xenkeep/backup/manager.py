"""The backup service: jobs, the scheduler, runs, restores, reports, storage.

Created once by the composition root (``BackupManager(db, pools, ...)``) and
started/stopped in its cleanup context. Runs are asyncio tasks tracked by id;
their state lives in the database (:mod:`.history`), so the UI and the API
read the same rows the runner writes, and a restart finds what was running
marked as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

from xenkeep.errors import ConflictError, NotFoundError, ValidationError, XenKeepError
from xenkeep.repo.datastore import Datastore
from xenkeep.repo.errors import NoDatastoreError, RepoError
from xenkeep.store import Database
from xenkeep.xapi.vault import SecretBox

from .const import FINISHED, RunKind, RunStatus
from .disks import DiskService
from .history import BackupHistory, JobRow
from .job import JobSpec, validate_job
from .pools import PoolAccess
from .report import (
    SmtpSettings,
    build_report,
    overall_status,
    restore_log_line,
    send_mail,
    send_report,
    verify_body,
    verify_subject,
)
from .restore import RestoreRequest, RestoreRun
from .runner import BackupRun, describe_error
from .schedule import due, parse_schedule

log = logging.getLogger(__name__)

DATASTORE_KEY: Final = "backup.datastore"
#: The last verify report (JSON), or the one running.
VERIFY_KEY: Final = "backup.verify.last"
SMTP_KEY: Final = "backup.smtp"
#: The verify schedule and its state (JSON: schedule, created, last_slot).
VERIFY_SCHEDULE_KEY: Final = "backup.verify.schedule"
#: Sundays at 04:00 in the appliance's time zone: every stored block is
#: re-read weekly unless the administrator chooses otherwise, so silent
#: damage is found before the restore that needs it.
DEFAULT_VERIFY_SCHEDULE: Final = "0 4 * * 0"
#: The scheduler never sleeps longer than this, so a clock change is noticed.
MAX_TICK: Final = 30.0
#: Below this share of free space the storage pages warn: a full datastore
#: fails the next runs, and merges need room for the delta they move.
LOW_SPACE_RATIO: Final = 0.10
#: Live progress streams send at most one update per this many seconds.
WATCH_COALESCE: Final = 0.5


class BackupManager:
    """Jobs, scheduled and manual runs, restores and the datastore."""

    def __init__(
        self,
        db: Database,
        pools: PoolAccess,
        *,
        appliance_name: Callable[[], Awaitable[str]] | str = "xenkeep",
        appliance_timezone: Callable[[], Awaitable[str]] | str = "UTC",
        clock: Callable[[], float] = time.time,
        secrets: SecretBox | None = None,
        disks: DiskService | None = None,
    ) -> None:
        self.db = db
        self.history = BackupHistory(db)
        self.pools = pools
        self._appliance = appliance_name
        self._timezone = appliance_timezone
        self._clock = clock
        self._secrets = secrets
        self._disks = disks
        self._datastore: Datastore | None = None
        #: Why the configured datastore could not be opened (disk missing...).
        self._datastore_problem: str | None = None
        self._runs: dict[int, asyncio.Task[None]] = {}
        self._job_runs: dict[int, int] = {}
        self._scheduler: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._watchers_closed = False
        self._verify_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- lifecycle

    async def start(self, *, scheduler: bool = True) -> None:
        """Mark runs a killed daemon left as interrupted, open the datastore,
        start the scheduler (which runs what was missed while down)."""
        interrupted = await self.history.mark_interrupted()
        if interrupted:
            log.warning("runs %s were interrupted by a stop of the daemon", interrupted)
        last = await self.last_verify()
        if last is not None and last.get("status") == "running":
            last.update(status="interrupted", error="the daemon stopped during the verify")
            await self.db.set_setting(VERIFY_KEY, json.dumps(last))
        path = await self.db.get_setting(DATASTORE_KEY)
        if path:
            try:
                self._datastore = await asyncio.to_thread(Datastore, Path(path))
            except XenKeepError as exc:
                log.error("backup storage %s unusable: %s", path, exc.message)
                self._datastore_problem = f"{path}: {exc.message}"
        if scheduler:
            self._scheduler = asyncio.create_task(self._schedule_loop(), name="backup scheduler")

    async def stop(self) -> None:
        """Stop the scheduler and every run (they end as interrupted)."""
        self._stopping = True
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        tasks = list(self._runs.values())
        if self._verify_task is not None:
            tasks.append(self._verify_task)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    async def appliance_name(self) -> str:
        """The appliance's name (for report subjects)."""
        if callable(self._appliance):
            return await self._appliance()
        return self._appliance

    async def appliance_timezone(self) -> str:
        """The appliance's time zone (the verify schedule is in it)."""
        if callable(self._timezone):
            return await self._timezone()
        return self._timezone

    # --------------------------------------------------------------- storage

    @property
    def datastore(self) -> Datastore:
        """The configured datastore, or a RepoError saying to set one up."""
        if self._datastore is None:
            raise NoDatastoreError(
                "no backup storage is configured", hint="initialise one on the storage page"
            )
        return self._datastore

    async def use_directory(self, path: str) -> dict[str, Any]:
        """Initialise an existing directory as the datastore (NFS/SMB mounts, development)."""
        # A run writes into the datastore it started with: swapping it under
        # the run would leave that run's chain half in each place.
        self._refuse_while_busy("change the backup storage")
        p = Path(path.strip())
        if not p.is_absolute():
            raise ValidationError("give an absolute directory path", field="path")
        if not await asyncio.to_thread(p.is_dir):
            raise ValidationError(f"{p} is not an existing directory", field="path")
        self._datastore = await asyncio.to_thread(Datastore.initialise, p)
        self._datastore_problem = None
        await self.db.set_setting(DATASTORE_KEY, str(p))
        return await self.storage_status()

    @property
    def _verify_running(self) -> bool:
        return self._verify_task is not None and not self._verify_task.done()

    def _refuse_while_busy(self, action: str) -> None:
        if self._runs:
            raise ConflictError(f"cannot {action} while a backup or restore runs")
        if self._verify_running:
            raise ConflictError(f"cannot {action} while a verify runs")

    async def disks(self) -> dict[str, Any]:
        """The appliance's disks as the privileged helper sees them.

        ``available`` is False where there is no helper (development).
        """
        if self._disks is None or not await self._disks.available():
            return {"available": False, "disks": [], "mounted": None, "mountpoint": None}
        return {"available": True, **await self._disks.listing()}

    def _disk_service(self) -> DiskService:
        if self._disks is None:
            raise RepoError("this daemon manages no disks", hint="use an existing directory")
        return self._disks

    async def format_disk(self, device: str, confirm: str) -> dict[str, Any]:
        """Erase ``device``, make it XFS with reflink, mount it and make it the datastore."""
        self._refuse_while_busy("change the backup storage")
        result = await self._disk_service().format(device, confirm)
        log.warning("disk %s formatted as backup storage (%s)", device, result.get("uuid"))
        return await self.use_directory(str(result["mountpoint"]))

    async def attach_disk(self, device: str) -> dict[str, Any]:
        """Mount the filesystem on ``device`` without formatting; its restore points
        (a disk from another appliance) are kept and listed."""
        self._refuse_while_busy("change the backup storage")
        result = await self._disk_service().attach(device)
        log.info("disk %s attached as backup storage (%s)", device, result.get("uuid"))
        return await self.use_directory(str(result["mountpoint"]))

    async def detach_disk(self) -> dict[str, Any]:
        """Unmount the backup disk so it can be detached from the VM; nothing is erased."""
        self._refuse_while_busy("detach the backup storage")
        listing = await self._disk_service().listing()
        mountpoint = listing.get("mountpoint")
        # Dropped before the unmount so no run can start on it meanwhile, and
        # given back if the helper refuses (a busy disk stays as it was).
        dropped = self._datastore
        if dropped is not None and str(dropped.root) == mountpoint:
            self._datastore = None
            await self.db.execute("DELETE FROM settings WHERE key = ?", (DATASTORE_KEY,))
        else:
            dropped = None
        try:
            await self._disk_service().detach()
        except BaseException:
            if dropped is not None:
                self._datastore = dropped
                await self.db.set_setting(DATASTORE_KEY, str(dropped.root))
            raise
        log.info("backup disk detached from %s", mountpoint)
        return await self.storage_status()

    async def storage_status(self) -> dict[str, Any]:
        """Capacity, used, free, reflink and per-VM usage, or ``configured: False``."""
        ds = self._datastore
        if ds is None:
            return {"configured": False, "problem": self._datastore_problem}

        def gather() -> dict[str, Any]:
            u = ds.usage()
            vms = [ds.vm_usage(v).__dict__ for v in ds.vms()]
            return {
                "configured": True,
                "path": str(ds.root),
                "capacity": u.capacity,
                "used": u.used,
                "free": u.free,
                "low_space": u.free < u.capacity * LOW_SPACE_RATIO,
                "reflink": ds.reflink,
                "reflink_note": ds.reflink_note,
                "vms": vms,
            }

        return await asyncio.to_thread(gather)

    async def points(self, vm_uuid: str) -> list[dict[str, Any]]:
        """Restore points of a VM, oldest first (only committed ones exist)."""
        pts = await asyncio.to_thread(self.datastore.points, vm_uuid)
        return [
            {
                "id": p.id,
                "seq": p.seq,
                "created": p.created,
                "vm_name": p.vm.get("name_label", ""),
                "job_id": p.job_id,
                "disks": [
                    {
                        "key": d.key,
                        "virtual_size": d.virtual_size,
                        "transfer": d.transfer,
                        "bytes": d.transferred_bytes,
                        "blocks": d.blocks,
                    }
                    for d in p.disks
                ],
            }
            for p in pts
        ]

    async def backed_up_vms(self) -> list[dict[str, Any]]:
        """VMs with restore points, with their newest name and point count."""

        def gather() -> list[dict[str, Any]]:
            out = []
            for v in self.datastore.vms():
                pts = self.datastore.points(v)
                if pts:
                    out.append(
                        {
                            "vm_uuid": v,
                            "name": pts[-1].vm.get("name_label", ""),
                            "points": len(pts),
                            "newest": pts[-1].created,
                        }
                    )
            return out

        return await asyncio.to_thread(gather)

    # ------------------------------------------------------------------ jobs

    def _next_run(self, spec: JobSpec, *, since: float) -> float | None:
        if not spec.schedule or not spec.enabled:
            return None
        return parse_schedule(spec.schedule, spec.timezone).next_timestamp(since)

    async def create_job(self, data: Mapping[str, Any]) -> JobRow:
        """Validate and store a new job."""
        spec = validate_job(data)
        await self.pools.pool_name(spec.pool_id)
        now = self._clock()
        job_id = await self.history.create_job(spec, self._next_run(spec, since=now), now=now)
        self._wake.set()
        return await self.history.job(job_id)

    async def update_job(self, job_id: int, data: Mapping[str, Any]) -> JobRow:
        """Replace a job's settings."""
        spec = validate_job(data)
        await self.pools.pool_name(spec.pool_id)
        await self.history.update_job(job_id, spec, self._next_run(spec, since=self._clock()))
        self._wake.set()
        return await self.history.job(job_id)

    async def delete_job(self, job_id: int) -> None:
        """Remove a job; its runs stay in the history, its restore points stay."""
        if job_id in self._job_runs:
            raise ConflictError("the job is running; cancel the run first")
        await self.history.delete_job(job_id)

    async def jobs(self) -> list[dict[str, Any]]:
        """Every job with its last run."""
        out = []
        for row in await self.history.jobs():
            d = row.as_dict()
            d["last_run"] = await self.history.last_run(row.id)
            d["running_run"] = self._job_runs.get(row.id)
            out.append(d)
        return out

    async def job(self, job_id: int) -> JobRow:
        """One job."""
        return await self.history.job(job_id)

    # ------------------------------------------------------------------ runs

    async def run_job(self, job_id: int, *, trigger: str = "manual") -> int:
        """Start a run of a job now; its run id. ConflictError if one is running."""
        row = await self.history.job(job_id)
        if job_id in self._job_runs:
            raise ConflictError(
                f"job {row.spec.name} is already running (run {self._job_runs[job_id]})"
            )
        _ = self.datastore
        run_id = await self.history.create_run(
            RunKind.BACKUP, job_id=job_id, job_name=row.spec.name, trigger=trigger
        )
        self._job_runs[job_id] = run_id
        task = asyncio.create_task(self._backup(run_id, row), name=f"backup run {run_id}")
        self._runs[run_id] = task
        task.add_done_callback(lambda _t: self._forget(run_id, job_id))
        return run_id

    def _forget(self, run_id: int, job_id: int | None) -> None:
        self._runs.pop(run_id, None)
        if job_id is not None and self._job_runs.get(job_id) == run_id:
            del self._job_runs[job_id]

    async def _backup(self, run_id: int, row: JobRow) -> None:
        started = time.time()
        await self.history.update_run(run_id, status=RunStatus.RUNNING.value, started_at=started)
        pool_name = row.spec.pool_id
        results: list[dict[str, Any]] = []
        cancelled = False
        error = ""
        runner: BackupRun | None = None
        try:
            pool_name = await self.pools.pool_name(row.spec.pool_id)
            client = await self.pools.client(row.spec.pool_id)
            await self.history.log(
                run_id, f"job {row.spec.name} on pool {pool_name} ({row.spec.pool_id})"
            )
            runner = BackupRun(
                run_id=run_id,
                job_id=row.id,
                spec=row.spec,
                client=client,
                datastore=self.datastore,
                history=self.history,
            )
            await runner.execute()
        except asyncio.CancelledError:
            cancelled = True
        except Exception as exc:
            error = describe_error(exc)
            log.exception("run %s failed", run_id)
            await self.history.log(run_id, f"run failed: {error}", level="error")
        if runner is not None:
            results = [r.as_dict() for r in runner.results]
        status = overall_status(results, cancelled=cancelled)
        if error:
            status = RunStatus.FAILED
        if cancelled and self._stopping:
            status, error = RunStatus.INTERRUPTED, "the daemon stopped during this run"
        finished = time.time()
        report = build_report(
            run_id=run_id,
            job_name=row.spec.name,
            pool_name=pool_name,
            appliance=await self.appliance_name(),
            started=started,
            finished=finished,
            vms=results,
            status=status,
        )
        report["error"] = error
        await asyncio.shield(
            self.history.update_run(
                run_id,
                status=status.value,
                finished_at=finished,
                report=report,
                bytes=report["bytes"],
                error=error or ("cancelled" if cancelled else ""),
            )
        )
        await asyncio.shield(self._mail(run_id, report))
        if cancelled:
            await self.history.log(run_id, "run cancelled", level="warning")

    async def _mail(self, run_id: int, report: Mapping[str, Any]) -> None:
        smtp = await self.smtp_settings()
        if smtp is None:
            return
        try:
            await send_report(smtp, report)
            await self.history.log(run_id, f"report mailed to {', '.join(smtp.recipients)}")
        except Exception as exc:  # a mail failure must not fail the backup
            await self.history.log(run_id, f"could not mail the report: {exc}", level="warning")

    async def cancel(self, run_id: int) -> None:
        """Cancel a running run (backup or restore); what it wrote is removed."""
        task = self._runs.get(run_id)
        if task is None:
            run = await self.history.run(run_id)
            if run["status"] in FINISHED:
                raise ConflictError(f"run {run_id} has already finished ({run['status']})")
            raise ConflictError(f"run {run_id} is not running in this daemon")
        await self.history.log(run_id, "cancel requested", level="warning")
        task.cancel()

    async def wait(self, run_id: int) -> dict[str, Any]:
        """Wait for a run started here to finish; its row."""
        task = self._runs.get(run_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        return await self.history.run(run_id)

    async def run_detail(self, run_id: int, *, log_after: int = 0) -> dict[str, Any]:
        """A run with its tasks (live progress) and log lines."""
        run = await self.history.run(run_id)
        run["tasks"] = await self.history.tasks(run_id)
        run["log"] = await self.history.log_lines(run_id, log_after)
        return run

    async def watch_run(
        self, run_id: int, *, log_after: int = 0, keepalive: float = 15.0
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The run's detail now, then again after each change (new log lines
        only), at most every half second; ``None`` when nothing changed for
        ``keepalive`` seconds. Ends after the detail that shows it finished."""
        while True:
            changed = self.history.changes()
            detail = await self.run_detail(run_id, log_after=log_after)
            if detail["log"]:
                log_after = detail["log"][-1]["id"]
            yield detail
            if detail["status"] in FINISHED or self._watchers_closed:
                return
            # Progress moves many times a second: one update per half second is live enough.
            await asyncio.sleep(WATCH_COALESCE)
            try:
                await asyncio.wait_for(changed.wait(), keepalive)
            except TimeoutError:
                yield None

    def end_watches(self) -> None:
        """On shutdown: end every :meth:`watch_run` stream at once."""
        self._watchers_closed = True
        self.history.changes().set()

    async def runs(self, *, job_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent runs and restores."""
        return await self.history.runs(job_id=job_id, limit=limit)

    # --------------------------------------------------------------- restore

    async def restore(self, data: Mapping[str, Any]) -> int:
        """Start a restore; its run id."""
        req = RestoreRequest.from_input(data)
        ds = self.datastore
        try:
            point = await asyncio.to_thread(lambda: ds.vmdir(req.vm_uuid).load_point(req.point_id))
        except ValueError:
            raise ValidationError("not a VM uuid", field="vm_uuid") from None
        if req.disk is not None:
            point.disk(req.disk)
        client = await self.pools.client(req.pool_id)
        run_id = await self.history.create_run(
            RunKind.RESTORE,
            job_id=None,
            job_name=f"restore {point.vm.get('name_label', req.vm_uuid)}",
            trigger="manual",
            params=req.as_dict(),
        )
        task = asyncio.create_task(self._restore(run_id, req, client), name=f"restore {run_id}")
        self._runs[run_id] = task
        task.add_done_callback(lambda _t: self._forget(run_id, None))
        return run_id

    async def _restore(self, run_id: int, req: RestoreRequest, client: Any) -> None:
        started = time.time()
        await self.history.update_run(run_id, status=RunStatus.RUNNING.value, started_at=started)
        runner = RestoreRun(
            run_id=run_id,
            request=req,
            client=client,
            datastore=self.datastore,
            history=self.history,
        )
        status = RunStatus.SUCCESS
        error = ""
        report: dict[str, Any] = {}
        try:
            report = await runner.execute()
            await self.history.log(run_id, restore_log_line(report))
        except asyncio.CancelledError:
            status, error = RunStatus.CANCELLED, "cancelled; nothing restored was kept"
            if self._stopping:
                status = RunStatus.INTERRUPTED
        except Exception as exc:
            status, error = RunStatus.FAILED, describe_error(exc)
            await self.history.log(run_id, f"restore failed: {error}", level="error")
        report.update(status=status.value, error=error, started=started, finished=time.time())
        await asyncio.shield(
            self.history.update_run(
                run_id,
                status=status.value,
                finished_at=report["finished"],
                report=report,
                error=error,
            )
        )

    # ---------------------------------------------------------------- verify

    async def start_verify(self, vm_uuid: str | None = None, *, trigger: str = "manual") -> None:
        """Re-read every stored block against its checksum, in the background.

        The outcome (damaged points with their block numbers) is kept as the
        last verify report; a second verify while one runs is refused.
        """
        ds = self.datastore
        if self._verify_running:
            raise ConflictError("a verify is already running")
        started = self._clock()
        await self.db.set_setting(
            VERIFY_KEY,
            json.dumps(
                {"status": "running", "started": started, "vm_uuid": vm_uuid, "trigger": trigger}
            ),
        )
        self._verify_task = asyncio.create_task(
            self._verify(ds, vm_uuid, started, trigger), name="backup verify"
        )

    async def _verify(
        self, ds: Datastore, vm_uuid: str | None, started: float, trigger: str
    ) -> None:
        result: dict[str, Any]
        try:
            report = await ds.verify(vm_uuid)
            result = {
                "status": "ok" if report.ok else "damaged",
                "vms": report.vms,
                "points": report.points,
                "files": report.files,
                "blocks": report.blocks,
                "bytes_read": report.bytes_read,
                "damaged": [dataclasses.asdict(d) for d in report.damaged],
                "skipped": report.skipped,
            }
            for d in report.damaged:
                log.error(
                    "verify: VM %s point %s disk %s is damaged (%s), blocks %s",
                    d.vm_uuid,
                    d.point_id,
                    d.disk,
                    d.reason,
                    list(d.blocks),
                )
        except asyncio.CancelledError:
            result = {"status": "interrupted", "error": "the daemon stopped during the verify"}
        except Exception as exc:
            result = {"status": "failed", "error": describe_error(exc)}
        result.update(started=started, finished=self._clock(), vm_uuid=vm_uuid, trigger=trigger)
        await asyncio.shield(self.db.set_setting(VERIFY_KEY, json.dumps(result)))
        if result["status"] in ("damaged", "failed"):
            await asyncio.shield(self._mail_verify(result))

    async def _mail_verify(self, result: Mapping[str, Any]) -> None:
        # Damage found by a verify nobody is watching must reach someone.
        smtp = await self.smtp_settings()
        if smtp is None:
            return
        try:
            appliance = await self.appliance_name()
            await send_mail(
                smtp,
                verify_subject(appliance, result),
                verify_body(result),
                ("xenkeep-verify.json", result),
            )
        except Exception as exc:  # a mail failure must not hide the report
            log.warning("could not mail the verify report: %s", exc)

    async def verify_schedule(self) -> dict[str, Any]:
        """The verify schedule: ``schedule`` ("" when off), ``timezone``, ``next_run``."""
        state = await self._verify_schedule_state()
        zone = await self.appliance_timezone()
        expr = str(state.get("schedule", ""))
        next_run = None
        if expr:
            with contextlib.suppress(XenKeepError):
                next_run = parse_schedule(expr, zone).next_timestamp(self._clock())
        return {"schedule": expr, "timezone": zone, "next_run": next_run}

    async def set_verify_schedule(self, expression: str) -> dict[str, Any]:
        """Set the verify schedule (cron syntax, appliance time zone); "" turns it off."""
        expr = " ".join(expression.split())
        if expr:
            parse_schedule(expr, await self.appliance_timezone())
        # A new schedule counts from now: changing it never starts a verify at once.
        await self.db.set_setting(
            VERIFY_SCHEDULE_KEY,
            json.dumps({"schedule": expr, "created": self._clock(), "last_slot": None}),
        )
        self._wake.set()
        return await self.verify_schedule()

    async def _verify_schedule_state(self) -> dict[str, Any]:
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

    async def _verify_tick(self, now: float) -> float:
        """Start the scheduled verify when due; the seconds until the next look."""
        state = await self._verify_schedule_state()
        expr = str(state.get("schedule", ""))
        if not expr or self._datastore is None:
            return MAX_TICK
        try:
            sched = parse_schedule(expr, await self.appliance_timezone())
            d = due(
                sched,
                last_slot=state.get("last_slot"),
                created=float(state.get("created") or now),
                now=now,
            )
        except XenKeepError as exc:
            log.error("verify schedule %r unusable: %s", expr, exc.message)
            return MAX_TICK
        if d.run_now:
            state["last_slot"] = d.slot
            await self.db.set_setting(VERIFY_SCHEDULE_KEY, json.dumps(state))
            if self._verify_running:
                log.info("scheduled verify skipped: one is already running")
            else:
                log.info("scheduled verify started (%s)", d.reason)
                await self.start_verify(trigger=f"schedule: {d.reason}")
        return max(0.5, d.next_run - now)

    async def wait_verify(self) -> dict[str, Any] | None:
        """Wait for a running verify to end; the last report."""
        if self._verify_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._verify_task)
        return await self.last_verify()

    async def last_verify(self) -> dict[str, Any] | None:
        """The last verify report (or the one running), or None."""
        raw = await self.db.get_setting(VERIFY_KEY)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    # ------------------------------------------------------------------ mail

    async def smtp_settings(self) -> SmtpSettings | None:
        """The mail settings, if reports are to be mailed."""
        raw = await self.db.get_setting(SMTP_KEY)
        if not raw:
            return None
        data = json.loads(raw)
        token = data.pop("password_enc", "")
        if token and self._secrets is not None:
            data["password"] = self._secrets.decrypt(token)
        return SmtpSettings.from_input(data)

    async def set_smtp(self, data: Mapping[str, Any] | None) -> None:
        """Store (or with None, clear) the mail settings."""
        if data is None:
            await self.db.execute("DELETE FROM settings WHERE key = ?", (SMTP_KEY,))
            return
        stored = json.loads(SmtpSettings.from_input(data).to_json())
        password = stored.pop("password", "")
        if password and self._secrets is not None:
            # Like pool passwords: a copy of the database alone reveals nothing.
            stored["password_enc"] = self._secrets.encrypt(password)
        elif password:
            stored["password"] = password
        await self.db.set_setting(SMTP_KEY, json.dumps(stored))

    # ------------------------------------------------------------- scheduler

    async def schedule_tick(self) -> float:
        """Start every due job; return the seconds until the next look."""
        now = self._clock()
        wait = MAX_TICK
        for row in await self.history.jobs():
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
                log.error("job %s: bad schedule: %s", row.id, exc.message)
                continue
            if d.run_now and row.id not in self._job_runs:
                await self.history.set_schedule_state(row.id, last_slot=d.slot, next_run=d.next_run)
                try:
                    run_id = await self.run_job(row.id, trigger=f"schedule: {d.reason}")
                    await self.history.log(run_id, f"started by the scheduler ({d.reason})")
                except XenKeepError as exc:
                    log.error("job %s: scheduled run not started: %s", row.id, exc.message)
            elif row.next_run != d.next_run and not d.run_now:
                await self.history.set_schedule_state(row.id, last_slot=None, next_run=d.next_run)
            wait = min(wait, max(0.5, d.next_run - now))
        try:
            wait = min(wait, await self._verify_tick(now))
        except XenKeepError as exc:
            log.error("scheduled verify not started: %s", exc.message)
        return wait

    async def _schedule_loop(self) -> None:
        while True:
            try:
                wait = await self.schedule_tick()
            except Exception:
                log.exception("backup scheduler tick failed")
                wait = MAX_TICK
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)


__all__ = ["BackupManager", "NotFoundError"]
