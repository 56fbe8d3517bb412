"""Replication jobs: create, change, delete and list them.

What input alone cannot say is checked when a job is saved, against the
pools as they are now: both pools exist, the target SR is one of the target
pool's and can hold VM disks, every VM name the job lists (to take or to
exclude) is a VM of the source pool, and every network it maps exists on
its side (names become uuids, so a renamed network keeps its mapping).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from xenkeep.errors import ConflictError, NotFoundError, ValidationError
from xenkeep.jobs.schedule import parse_schedule
from xenkeep.jobs.snapshots import destroy_snapshot
from xenkeep.jobs.vmselect import Selector, check_names
from xenkeep.pools.access import PoolAccess
from xenkeep.xapi.errors import XapiError, XapiFailure

from .const import REFERENCE_KEY
from .job import ReplicationSpec, validate_job
from .networks import resolve_pairs
from .runs import ReplicationRuns
from .store import JobRow, ReplicationStore

log = logging.getLogger(__name__)

#: SR types that hold no VM disks: ISO libraries and removable devices.
NOT_FOR_DISKS: Final = frozenset({"iso", "udev"})


class ReplicationJobs:
    """Which VMs go to which SR, when, and how many points to keep."""

    def __init__(
        self,
        store: ReplicationStore,
        pools: PoolAccess,
        runs: ReplicationRuns,
        *,
        changed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.pools = pools
        self.runs = runs
        self._changed = changed
        self._clock = clock

    def _next_run(self, spec: ReplicationSpec, *, since: float) -> float | None:
        if not spec.schedule or not spec.enabled:
            return None
        return parse_schedule(spec.schedule, spec.timezone).next_timestamp(since)

    async def _check(self, spec: ReplicationSpec) -> ReplicationSpec:
        source_name = await self.pools.pool_name(spec.pool_id)
        try:
            target_name = await self.pools.pool_name(spec.target_pool_id)
        except NotFoundError:
            raise ValidationError(
                f"there is no pool {spec.target_pool_id} to replicate to",
                field="target_pool_id",
            ) from None
        source = await self.pools.client(spec.pool_id)
        target = await self.pools.client(spec.target_pool_id)
        if spec.selector is Selector.NAME or spec.exclude:
            check_names(spec.selection, await source.call("VM.get_all_records"), source_name)
        try:
            sr = await target.call("SR.get_by_uuid", spec.target_sr_uuid)
            sr_rec = await target.call("SR.get_record", sr)
        except XapiFailure:
            raise ValidationError(
                f"pool {target_name} has no SR {spec.target_sr_uuid}", field="target_sr_uuid"
            ) from None
        if sr_rec.get("type") in NOT_FOR_DISKS or sr_rec.get("content_type") == "iso":
            raise ValidationError(
                f"SR {sr_rec.get('name_label')!r} of pool {target_name} holds no VM disks",
                field="target_sr_uuid",
            )
        if not spec.networks:
            return spec

        async def networks(client: Any) -> dict[str, str]:
            return {
                str(r["uuid"]): str(r.get("name_label", ""))
                for r in (await client.call("network.get_all_records")).values()
            }

        pairs = resolve_pairs(
            spec.networks,
            await networks(source),
            await networks(target),
            source_pool=source_name,
            target_pool=target_name,
        )
        return spec.with_networks(pairs)

    async def create(self, data: Mapping[str, Any]) -> JobRow:
        """Validate and store a new job."""
        spec = await self._check(validate_job(data))
        now = self._clock()
        job_id = await self.store.create_job(spec, self._next_run(spec, since=now), now=now)
        self._changed()
        return await self.store.job(job_id)

    async def update(self, job_id: int, data: Mapping[str, Any]) -> JobRow:
        """Replace a job's settings."""
        await self.store.job(job_id)
        spec = await self._check(validate_job(data))
        await self.store.update_job(job_id, spec, self._next_run(spec, since=self._clock()))
        self._changed()
        return await self.store.job(job_id)

    async def delete(self, job_id: int) -> None:
        """Remove a job. Its replicas stay (they are the copies on site B) and
        can still be started; its reference snapshots on the source go."""
        row = await self.store.job(job_id)
        if self.runs.running_run(job_id) is not None:
            raise ConflictError("the job is running; cancel the run first")
        replicas = await self.store.replicas(job_id=job_id)
        await self.store.delete_job(job_id)
        self._changed()
        with contextlib.suppress(XapiError):
            source = await self.pools.client(row.spec.pool_id)
            for replica in replicas:
                await self._drop_references(source, job_id, replica.source_vm_uuid)

    @staticmethod
    async def _drop_references(source: Any, job_id: int, vm_uuid: str) -> None:
        try:
            vm = await source.call("VM.get_by_uuid", vm_uuid)
        except XapiFailure:
            return
        for snap in await source.call("VM.get_snapshots", vm):
            with contextlib.suppress(XapiFailure):
                other = await source.call("VM.get_other_config", snap)
                if other.get(REFERENCE_KEY) == str(job_id):
                    await destroy_snapshot(source, snap)
                    log.info("job %s deleted: removed its reference snapshot %s", job_id, snap)

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
