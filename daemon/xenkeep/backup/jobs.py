"""Backup jobs: create, change, delete and list them, with their next run."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from xenkeep.errors import ConflictError, ValidationError, XenKeepError
from xenkeep.jobs.schedule import parse_schedule
from xenkeep.jobs.vmselect import check_names
from xenkeep.pools.access import PoolAccess
from xenkeep.xapi.errors import XapiFailure

from .const import Selector
from .job import JobSpec, validate_job
from .jobstore import JobRow, JobStore
from .prune import PruneService
from .runs import BackupRuns

log = logging.getLogger(__name__)


class BackupJobs:
    """What to back up, when, and how many points to keep."""

    def __init__(
        self,
        store: JobStore,
        pools: PoolAccess,
        runs: BackupRuns,
        *,
        changed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        prune: PruneService | None = None,
        default_timezone: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.store = store
        #: The zone a job's schedule reads in when none is given: the appliance's.
        self._default_timezone = default_timezone
        #: Applies a lowered retention at once.
        self.prune = prune
        self.pools = pools
        self.runs = runs
        #: Called after a change, so the scheduler looks again at once.
        self._changed = changed
        self._clock = clock

    def _next_run(self, spec: JobSpec, *, since: float) -> float | None:
        if not spec.schedule or not spec.enabled:
            return None
        return parse_schedule(spec.schedule, spec.timezone).next_timestamp(since)

    async def _with_zone(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        if data.get("timezone") or self._default_timezone is None:
            return data
        return {**data, "timezone": await self._default_timezone()}

    async def _check(self, spec: JobSpec, before: JobSpec | None = None) -> None:
        """What input alone cannot say: the pool exists, every VM name the job
        lists (to take or to exclude) is a VM of it now, and a health check SR
        newly set is one of its SRs."""
        pool_name = await self.pools.pool_name(spec.pool_id)
        if spec.selector is Selector.NAME or spec.exclude:
            client = await self.pools.client(spec.pool_id)
            check_names(spec.selection, await client.call("VM.get_all_records"), pool_name)
        sr = spec.health_check_sr
        if not sr or (before is not None and before.health_check_sr == sr):
            return
        try:
            client = await self.pools.client(spec.pool_id)
            await client.call("SR.get_by_uuid", sr)
        except XapiFailure:
            raise ValidationError(
                f"pool {pool_name} has no SR {sr}", field="health_check_sr"
            ) from None
        except XenKeepError as exc:
            # The pool is unreachable now: its next health check says so.
            log.info("health check SR %s of pool %s not checked: %s", sr, pool_name, exc.message)

    async def create(self, data: Mapping[str, Any]) -> JobRow:
        """Validate and store a new job (its schedule in the appliance's zone
        unless it names one)."""
        spec = validate_job(await self._with_zone(data))
        await self._check(spec)
        now = self._clock()
        job_id = await self.store.create_job(spec, self._next_run(spec, since=now), now=now)
        self._changed()
        return await self.store.job(job_id)

    async def update(self, job_id: int, data: Mapping[str, Any]) -> JobRow:
        """Replace a job's settings; a lowered retention is applied at once."""
        spec = validate_job(await self._with_zone(data))
        before = await self.store.job(job_id)
        await self._check(spec, before.spec)
        await self.store.update_job(job_id, spec, self._next_run(spec, since=self._clock()))
        self._changed()
        if self.prune is not None and spec.retention < before.spec.retention:
            # Not only after the next successful run: a full datastore makes
            # that run fail, and lowering the retention is how one empties it.
            try:
                await self.prune.start_prune(job_id, trigger="retention lowered")
            except XenKeepError as exc:
                log.warning("job %s: retention lowered, prune not started: %s", job_id, exc)
        return await self.store.job(job_id)

    async def delete(self, job_id: int) -> None:
        """Remove a job; its runs stay in the history, its restore points stay."""
        if self.runs.running_run(job_id) is not None:
            raise ConflictError("the job is running; cancel the run first")
        await self.store.delete_job(job_id)

    async def list(self) -> list[dict[str, Any]]:
        """Every job with its last run and the run in progress."""
        out = []
        for row in await self.store.jobs():
            d = row.as_dict()
            last = await self.runs.runs(job_id=row.id, limit=1)
            d["last_run"] = last[0] if last else None
            d["running_run"] = self.runs.running_run(row.id)
            out.append(d)
        return out

    async def job(self, job_id: int) -> JobRow:
        """One job."""
        return await self.store.job(job_id)
