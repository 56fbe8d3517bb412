"""The backup service: one door to storage, jobs, runs, restores and verify.

Created once by the composition root (``BackupManager(db, pools, ...)``)
and started/stopped in its cleanup context. Each noun has its own module:
:mod:`.storage` (datastore in use, disks), :mod:`.jobs`, :mod:`.runs`
(backup runs and restores), :mod:`.verify`; mail settings live in
:mod:`xenkeep.mail`. Every long task is an operation (:mod:`xenkeep.ops`),
so the UI and the API read the same rows the work writes, and a restart
finds what was running marked as interrupted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.jobs.preview import SelectionPreview
from xenkeep.mail import MailSettings, SmtpSettings, send_test_mail
from xenkeep.ops import Operations, Scheduler, TargetFilter
from xenkeep.pools.access import PoolAccess
from xenkeep.repo.datastore import Datastore
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database

from .disks import DiskService
from .health import CheckTarget, HealthChecks
from .job import health_check_wait
from .jobs import BackupJobs
from .jobstore import JobRow, JobStore
from .overview import BackupOverview
from .prune import PruneService, vm_uuid_of
from .runs import BackupRuns, as_run
from .storage import DATASTORE_KEY, BackupStorage
from .verify import VerifyService

__all__ = ["DATASTORE_KEY", "BackupManager"]

Text = Callable[[], Awaitable[str]] | str


def _getter(value: Text) -> Callable[[], Awaitable[str]]:
    if callable(value):
        return value

    async def constant() -> str:
        return value

    return constant


class BackupManager:
    """Jobs, scheduled and manual runs, restores, verify and the datastore."""

    def __init__(
        self,
        db: Database,
        pools: PoolAccess,
        *,
        appliance_name: Text = "xenkeep",
        appliance_timezone: Text = "UTC",
        clock: Callable[[], float] = time.time,
        secrets: SecretBox | None = None,
        disks: DiskService | None = None,
        ops: Operations | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.db = db
        self.pools = pools
        # Given by the composition root, which shares them with other domains;
        # a manager built alone (tests, tools) has its own.
        self.ops = ops or Operations(db)
        self._own_ops = ops is None
        self.scheduler = scheduler or Scheduler(clock)
        self._own_scheduler = scheduler is None
        self.appliance_name = _getter(appliance_name)
        self.appliance_timezone = _getter(appliance_timezone)
        self.mail = MailSettings(db, secrets)
        self.storage = BackupStorage(db, self.ops, disks)
        self.health = HealthChecks(pools, self.storage, self.ops)
        self.backup_runs = BackupRuns(
            jobs=JobStore(db),
            pools=pools,
            storage=self.storage,
            ops=self.ops,
            mail=self.mail,
            appliance_name=self.appliance_name,
            health=self.health,
        )
        self.prune = PruneService(self.backup_runs.jobs, self.storage, self.ops)
        self.backup_jobs = BackupJobs(
            self.backup_runs.jobs,
            pools,
            self.backup_runs,
            changed=self.scheduler.wake,
            clock=clock,
            prune=self.prune,
            default_timezone=self.appliance_timezone,
        )
        self.verify = VerifyService(
            db,
            self.storage,
            self.ops,
            self.mail,
            appliance_name=self.appliance_name,
            appliance_timezone=self.appliance_timezone,
            clock=clock,
        )
        self.selections = SelectionPreview(pools)
        self.overview = BackupOverview(
            self.backup_runs.jobs, self.backup_runs, self.storage, self.verify, clock=clock
        )
        self.scheduler.register("backup jobs", self.backup_runs.schedule_tick)
        self.scheduler.register("backup verify", self.verify.schedule_tick)
        self.scheduler.register("leftover snapshots", self.backup_runs.sweep_tick)

    # ------------------------------------------------------------- lifecycle

    async def start(self, *, scheduler: bool = True) -> None:
        """Open the datastore; when the manager owns them, mark what a killed
        daemon left as interrupted and start the scheduler (which runs what
        was missed while down)."""
        if self._own_ops:
            await self.ops.start_up()
        await self.storage.open()
        if scheduler and self._own_scheduler:
            self.scheduler.start()

    async def stop(self) -> None:
        """Stop the scheduler and every operation it owns (they end as interrupted)."""
        if self._own_scheduler:
            await self.scheduler.stop()
        if self._own_ops:
            await self.ops.stop()

    async def schedule_tick(self) -> float:
        """Start everything due now; the seconds until the next look."""
        return await self.scheduler.tick()

    # --------------------------------------------------------------- storage

    @property
    def datastore(self) -> Datastore:
        """The datastore in use, or a RepoError saying to set one up."""
        return self.storage.datastore

    async def storage_status(self) -> dict[str, Any]:
        """Capacity, used, free, reflink and per-VM usage, or ``configured: False``."""
        return await self.storage.status()

    async def use_directory(self, path: str) -> dict[str, Any]:
        """Initialise an existing directory as the datastore."""
        return await self.storage.use_directory(path)

    async def disks(self) -> dict[str, Any]:
        """The appliance's disks as the privileged helper sees them."""
        return await self.storage.disks()

    async def format_disk(self, device: str, confirm: str) -> dict[str, Any]:
        """Erase ``device`` as the datastore and wait for it; the storage status."""
        return await self.finish_storage_change(await self.storage.start_format(device, confirm))

    async def attach_disk(self, device: str) -> dict[str, Any]:
        """Mount the filesystem on ``device`` as the datastore and wait; the storage status."""
        return await self.finish_storage_change(await self.storage.start_attach(device))

    async def finish_storage_change(self, op_id: int) -> dict[str, Any]:
        """Wait for a disk format or attach; the storage status, or its error."""
        op = await self.ops.wait(op_id)
        if op["status"] != "success":
            raise ValidationError(op["error"] or f"operation {op_id} {op['status']}")
        return await self.storage.status()

    async def detach_disk(self) -> dict[str, Any]:
        """Unmount the backup disk so it can be detached from the VM."""
        return await self.storage.detach_disk()

    async def points(self, vm_uuid: str) -> list[dict[str, Any]]:
        """Restore points of a VM, oldest first: what each is (full or
        delta), how it was taken, its size, job, verify and health check."""
        return await self.overview.points(vm_uuid)

    async def backed_up_vms(self) -> list[dict[str, Any]]:
        """VMs with restore points."""
        return await self.storage.backed_up_vms()

    async def vm_overview(self) -> list[dict[str, Any]]:
        """Every backed-up VM: last backup, age, result, RPO (the dashboard's)."""
        return await self.overview.vms()

    async def job_overview(self, job_id: int) -> dict[str, Any]:
        """A job's page: settings, run history, RPO, its VMs and their points."""
        return await self.overview.job(job_id)

    # ------------------------------------------------------------------ jobs

    async def create_job(self, data: Mapping[str, Any]) -> JobRow:
        """Validate and store a new job."""
        return await self.backup_jobs.create(data)

    async def update_job(self, job_id: int, data: Mapping[str, Any]) -> JobRow:
        """Replace a job's settings."""
        return await self.backup_jobs.update(job_id, data)

    async def preview_selection(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """What a job's selection fields take now (see :mod:`xenkeep.jobs.preview`)."""
        return await self.selections.preview(data)

    async def pickable_vms(self, pool_id: str) -> list[dict[str, Any]]:
        """The VMs of a pool a job may take, for the job forms' picker, each
        with its newest restore point's time (``last_backup``, None: never)."""
        rows = await self.selections.choices(pool_id)
        newest = (
            {vm["vm_uuid"]: vm["newest"] for vm in await self.storage.backed_up_vms()}
            if self.storage.configured
            else {}
        )
        return [{**r.as_dict(), "last_backup": newest.get(r.uuid)} for r in rows]

    async def selected_now(self, job_id: int) -> dict[str, Any]:
        """What a saved job's selection takes now; ``problem`` says why not
        when its pool cannot be asked (the page still shows the rest)."""
        row = await self.backup_jobs.job(job_id)
        try:
            return {**await self.selections.preview(row.spec.selection.as_dict()), "problem": ""}
        except XenKeepError as exc:
            return {"vms": [], "errors": [], "shared_names": {}, "problem": exc.message}

    async def delete_job(self, job_id: int) -> None:
        """Remove a job; its runs and restore points stay."""
        await self.backup_jobs.delete(job_id)

    async def jobs(self) -> list[dict[str, Any]]:
        """Every job with its last run."""
        return await self.backup_jobs.list()

    async def job(self, job_id: int) -> JobRow:
        """One job."""
        return await self.backup_jobs.job(job_id)

    async def job_rows(self) -> list[JobRow]:
        """Every job's stored settings (no run looked at)."""
        return await self.backup_runs.jobs.jobs()

    async def jobs_of_pool(self, pool_id: str) -> list[dict[str, Any]]:
        """The jobs that back up VMs of a pool."""
        return [j for j in await self.jobs() if str(j["pool_id"]) == pool_id]

    # ------------------------------------------------------ runs and restore

    async def run_job(self, job_id: int, *, trigger: str = "manual") -> int:
        """Start a run of a job now; its run (operation) id."""
        return await self.backup_runs.run_job(job_id, trigger=trigger)

    async def restore(self, data: Mapping[str, Any]) -> int:
        """Start a restore; its run (operation) id."""
        return await self.backup_runs.restore(data)

    async def cancel(self, run_id: int) -> None:
        """Cancel a running run or restore; what it wrote is removed."""
        await self.backup_runs.run(run_id)
        await self.ops.cancel(run_id)

    async def wait(self, run_id: int) -> dict[str, Any]:
        """Wait for a run started here to finish; its row."""
        await self.ops.wait(run_id)
        return await self.backup_runs.run(run_id)

    async def run(self, run_id: int) -> dict[str, Any]:
        """One run or restore."""
        return await self.backup_runs.run(run_id)

    async def run_detail(self, run_id: int, *, log_after: int = 0) -> dict[str, Any]:
        """A run with its tasks (live progress) and log lines."""
        return await self.backup_runs.detail(run_id, log_after=log_after)

    async def watch_run(
        self, run_id: int, *, log_after: int = 0, keepalive: float = 15.0
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The run's detail now and after each change (see Operations.watch)."""
        await self.backup_runs.run(run_id)
        async for detail in self.ops.watch(run_id, log_after=log_after, keepalive=keepalive):
            yield None if detail is None else as_run(detail)

    async def runs(
        self, *, job_id: int | None = None, only: TargetFilter | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Recent runs and restores (``only``: on the targets it allows)."""
        return await self.backup_runs.runs(job_id=job_id, only=only, limit=limit)

    async def leftover_snapshots(self, pool_id: str) -> list[str]:
        """Snapshots of runs that died, still in the pool (names)."""
        return await self.backup_runs.leftover_snapshots(pool_id)

    async def start_prune(self, job_id: int) -> int:
        """Apply a job's retention now (a prune operation); its id."""
        return await self.prune.start_prune(job_id)

    async def delete_point(self, vm_uuid: str, point_id: str, *, confirm: str | None = None) -> int:
        """Start deleting one restore point (an operation); its id. From a
        form, ``confirm`` must repeat the VM's name."""
        return await self.prune.start_delete(vm_uuid, point_id, confirm=confirm)

    async def delete_points(self, vm_uuid: str, *, confirm: str) -> int:
        """Start deleting every point of a VM whose job is gone; its id."""
        return await self.prune.start_delete_all(vm_uuid, confirm=confirm)

    async def health_check(self, vm_uuid: str, point_id: str, data: Mapping[str, Any]) -> int:
        """Start a health check of one point on ``data``'s pool and SR; its id."""
        vm = vm_uuid_of(vm_uuid)
        point = await self.storage.point(vm, point_id)
        pool_id = str(data.get("pool_id") or "").strip()
        sr_uuid = str(data.get("sr_uuid") or "").strip()
        if not pool_id or not sr_uuid:
            raise ValidationError("choose the SR to check the restore point on", field="target")
        wait = health_check_wait(data)
        name = str(point.vm.get("name_label", vm))
        return await self.health.start(
            [CheckTarget(vm, name, point.id)], pool_id=pool_id, sr_uuid=sr_uuid, guest_wait=wait
        )

    # ---------------------------------------------------------------- verify

    async def start_verify(self, vm_uuid: str | None = None, *, trigger: str = "manual") -> int:
        """Start a verify in the background; its operation id."""
        return await self.verify.start(vm_uuid, trigger=trigger)

    async def wait_verify(self) -> dict[str, Any] | None:
        """Wait for a running verify to end; the last report."""
        return await self.verify.wait()

    async def last_verify(self) -> dict[str, Any] | None:
        """The last verify report (or the one running), or None."""
        return await self.verify.last()

    async def verify_schedule(self) -> dict[str, Any]:
        """The verify schedule."""
        return await self.verify.schedule()

    async def set_verify_schedule(self, expression: str) -> dict[str, Any]:
        """Set the verify schedule; "" turns it off."""
        result = await self.verify.set_schedule(expression)
        self.scheduler.wake()
        return result

    # ------------------------------------------------------------------ mail

    async def smtp_settings(self) -> SmtpSettings | None:
        """The mail settings, if reports are to be mailed."""
        return await self.mail.get()

    async def set_smtp(self, data: Mapping[str, Any] | None) -> None:
        """Store (or with None, clear) the mail settings."""
        await self.mail.set(data)

    async def test_mail(self, data: Mapping[str, Any] | None = None) -> str:
        """Mail a test message with ``data``'s settings (an empty password:
        the stored one), or the stored settings; the server's answer."""
        stored = await self.mail.get()
        if data is None:
            if stored is None:
                raise ValidationError("no mail server is set", field="host")
            settings = stored
        else:
            form = dict(data)
            if not form.get("password") and stored is not None:
                form["password"] = stored.password
            settings = SmtpSettings.from_input(form)
        return await send_test_mail(settings, await self.appliance_name())
