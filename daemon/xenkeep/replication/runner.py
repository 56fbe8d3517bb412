"""One replication run: the VMs of a job, each snapshot → copy → point.

Per VM, in order:

1. find its replica on the target SR; a replica left mid-write by a run
   that died is first reverted to its newest point (the replica's latest
   complete point is never what a run writes: its live disks are);
2. remove what dead runs left of its source snapshots, and XenKeep's older
   references of this job;
3. snapshot the source VM (named with the run's marker, tagged at once as
   this job's: see :mod:`xenkeep.jobs.snapshots`);
4. per disk decide full or delta (:mod:`.decide`, the reason goes to the
   log); the first run creates the replica from the snapshot's records
   (``VM.create``, ``VDI.create``, ``VBD.create``, ``VIF.create``) with
   ``start`` blocked; a delta is written over the replica's live disk, a full
   into a fresh VDI that then takes the disk's place;
5. snapshot the replica: the new point, carrying the source snapshot it
   equals. That is the commit. Points beyond the retention are destroyed,
   and the new source snapshot replaces the previous one as the reference.

A run cut before the commit (an error, a cancel) reverts the replica to its
previous point, destroys what it created and its own source snapshot; a run
killed before the commit leaves marks the next run (or the sweep at start)
acts on. Either way the replica's latest complete point is intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from xenkeep.errors import XenKeepError
from xenkeep.jobs import vmselect
from xenkeep.jobs.claims import reads_vm
from xenkeep.jobs.snapshots import destroy_snapshot, snapshot_name, sweep
from xenkeep.jobs.streams import Progress, RateLimiter
from xenkeep.jobs.vmselect import VmChoice
from xenkeep.ops import Claim, OperationContext, OpStatus
from xenkeep.units import human_bytes
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiError, XapiFailure
from xenkeep.xapi.records import disk_vbd, new_vdi, new_vif, vm_create_fields

from . import replica as replicas
from .const import (
    BASE_KEY,
    CREATING_KEY,
    MARKER,
    REFERENCE_KEY,
    REPLICA_JOB_KEY,
    REPLICA_OF_KEY,
    REPLICA_TAG,
    ReplicaState,
    VmStage,
)
from .copy import copy_disk
from .decide import ChainDisk, Decision, SourceDisk, decide
from .kinds import close_failed, describe_error, one_change_per_replica
from .networks import target_network
from .replica import Disk, Replica
from .store import JobRow, ReplicaRow, ReplicationStore

log = logging.getLogger(__name__)

NULL_REF: Final = "OpaqueRef:NULL"
RunStatus = OpStatus


class ReplicationFailed(XenKeepError):
    """A VM could not be replicated; the message says why."""

    code = "replication_failed"


def start_blocked_reason(vm_name: str, pool_name: str) -> str:
    """What a person who tries to start a replica in the pool reads."""
    return (
        f"This VM is a XenKeep replica of {vm_name} (pool {pool_name}), kept current by "
        "XenKeep: use Start replica in XenKeep, which stops the replication first."
    )


def point_name(vm_name: str, stamp: str) -> str:
    """The name of a replica point."""
    return f"[XenKeep replica] {vm_name} {stamp}"


def utc_stamp(ts: float) -> str:
    """``2026-12-01 10:00:00 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


@dataclass
class VmResult:
    """What happened to one VM of a run (the report's row)."""

    vm_uuid: str
    vm_name: str
    status: RunStatus = RunStatus.PENDING
    replica_id: int | None = None
    replica_uuid: str = ""
    #: The new point's uuid.
    point_id: str = ""
    transfers: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0
    #: Seconds per phase: snapshot, transfer, point (the replica snapshot), cleanup.
    phases: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def speed(self) -> float:
        """Average transfer speed in bytes per second over the transfer phase."""
        moving = self.phases.get("transfer", 0.0)
        return self.bytes / moving if moving > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the report (the backup report's rows, plus phases)."""
        return {
            "vm_uuid": self.vm_uuid,
            "vm_name": self.vm_name,
            "status": self.status.value,
            "replica_id": self.replica_id,
            "replica_uuid": self.replica_uuid,
            "point_id": self.point_id,
            "point_label": "replica point",
            "transfers": self.transfers,
            "reasons": self.reasons,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "speed": round(self.speed, 1),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "merge_seconds": None,
            "error": self.error,
        }


class _Phase:
    """Times one phase of a VM's run into its result."""

    def __init__(self, result: VmResult, name: str) -> None:
        self.result = result
        self.name = name

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.result.phases[self.name] = self.result.phases.get(self.name, 0.0) + (
            time.monotonic() - self.started
        )


@dataclass
class _Work:
    """What one VM's run has made so far (undone if it does not commit)."""

    snapshot: str | None = None
    created_vm: str | None = None
    #: New VDIs on the target not yet a disk of the replica.
    loose_vdis: list[str] = field(default_factory=list)
    #: The replica's live disks were written (it must go back to its point).
    dirty: bool = False
    committed: bool = False


class ReplicationRun:
    """Runs one job once; create it per run."""

    def __init__(
        self,
        *,
        ctx: OperationContext,
        job: JobRow,
        source: XapiClient,
        target: XapiClient,
        source_pool_name: str,
        target_pool_name: str,
        store: ReplicationStore,
        running: Callable[[], frozenset[int]],
        claimed: frozenset[int],
    ) -> None:
        self.ctx = ctx
        self.run_id = ctx.id
        self.job = job
        self.spec = job.spec
        self.source = source
        self.target = target
        self.source_pool_name = source_pool_name
        self.target_pool_name = target_pool_name
        self.store = store
        #: Ids of the operations running now (their marked snapshots are theirs).
        self._running = running
        #: Replicas whose claim the run took at its start.
        self._claimed = set(claimed)
        self.limiter = RateLimiter(self.spec.bandwidth_limit)
        self.results: list[VmResult] = []
        self._bytes_done: dict[int, int] = {}
        self._sr = ""
        self._networks: dict[str, str] = {}

    # ----------------------------------------------------------------- run

    async def execute(self) -> list[VmResult]:
        """Replicate every VM the job selects; never raises for one VM's failure."""
        spec = self.spec
        vms = vmselect.match(spec.selection, await self.source.call("VM.get_all_records"))
        for name in vmselect.missing_names(spec.selection, vms):
            error = f"no VM named {name!r} in pool {self.source_pool_name}"
            await self.ctx.log(error, level="error")
            self.results.append(VmResult("", name, RunStatus.FAILED, error=error))
        try:
            self._sr = str(await self.target.call("SR.get_by_uuid", spec.target_sr_uuid))
        except XapiFailure:
            raise ReplicationFailed(
                f"the target SR {spec.target_sr_uuid} is gone from pool {self.target_pool_name}",
                hint="choose another SR in the job",
            ) from None
        self._networks = {
            str(rec["uuid"]): str(rec.get("name_label", ""))
            for rec in (await self.target.call("network.get_all_records")).values()
        }
        if not vms:
            await self.ctx.log("the job selects no VM", level="warning")
        await self.ctx.log(
            f"{len(vms)} VM(s): {', '.join(v.name for v in vms) or '-'}; to SR "
            f"{spec.target_sr_uuid} of pool {self.target_pool_name}; concurrency "
            f"{spec.concurrency}, {spec.retention} point(s) kept"
        )
        slots = asyncio.Semaphore(spec.concurrency)

        async def one(vm: VmChoice) -> None:
            result = VmResult(vm.uuid, vm.name)
            self.results.append(result)
            async with slots:
                task_id = await self.ctx.task(
                    subject=vm.uuid, name=vm.name, stage=VmStage.QUEUED.value
                )
                await self._guarded(vm, result, task_id)

        await asyncio.gather(*(one(vm) for vm in vms))
        return self.results

    async def _guarded(self, vm: VmChoice, result: VmResult, task_id: int) -> None:
        started = time.monotonic()
        row: ReplicaRow | None = None
        claims: list[Claim] = [reads_vm(vm.uuid)]
        try:
            self.ctx.claim(claims[:1], f"replicate {vm.name}")
            row = await self._replica_row(vm)
            result.replica_id = row.id
            if row.id not in self._claimed:
                claim = one_change_per_replica(row.id)
                self.ctx.claim([claim], f"replicate {vm.name}")
                claims.append(claim)
                self._claimed.add(row.id)
            await self._replicate(vm, row, result, task_id)
        except asyncio.CancelledError:
            result.status, result.error = RunStatus.CANCELLED, "cancelled"
            await asyncio.shield(self._close(task_id, result, row, started))
            raise
        except Exception as exc:
            result.status, result.error = RunStatus.FAILED, describe_error(exc)
            log.debug("VM %s failed", vm.uuid, exc_info=True)
            await self.ctx.log(f"{vm.name}: FAILED: {result.error}", level="error", task_id=task_id)
            await self._close(task_id, result, row, started)
            return
        finally:
            self.ctx.release(claims)
        result.status = RunStatus.SUCCESS
        await self._close(task_id, result, row, started)

    async def _close(
        self, task_id: int, result: VmResult, row: ReplicaRow | None, started: float
    ) -> None:
        result.seconds = time.monotonic() - started
        ok = result.status is RunStatus.SUCCESS
        await self.ctx.update_task(
            task_id,
            {
                "transfer": ",".join(sorted(set(result.transfers.values()))),
                "point_id": result.point_id,
            },
            status=result.status.value,
            **({"stage": VmStage.DONE.value} if ok else {}),
            bytes=result.bytes,
            speed=result.speed,
            eta=0 if ok else None,
            finished_at=time.time(),
            error=result.error,
        )
        if row is not None:
            await self.store.update_replica(
                row.id,
                last_attempt_at=time.time(),
                last_run_id=self.run_id,
                last_error="" if ok else result.error,
            )

    async def _replica_row(self, vm: VmChoice) -> ReplicaRow:
        spec, job = self.spec, self.job
        row = await self.store.replica_of(job.id, vm.uuid)
        if row is not None and (
            row.target_pool_id != spec.target_pool_id or row.target_sr_uuid != spec.target_sr_uuid
        ):
            raise ReplicationFailed(
                f"the job's target changed: its replica of {vm.name} is on SR "
                f"{row.target_sr_uuid} of pool {row.target_pool_id}",
                hint="delete that replica (its points go with it) to start one on the new SR",
            )
        if row is None:
            row = await self.store.add_replica(
                job_id=job.id,
                job_name=spec.name,
                source_pool_id=spec.pool_id,
                source_vm_uuid=vm.uuid,
                source_vm_name=vm.name,
                target_pool_id=spec.target_pool_id,
                target_sr_uuid=spec.target_sr_uuid,
            )
        if row.state is not ReplicaState.REPLICATING:
            raise ReplicationFailed(
                f"the replica of {vm.name} was started on pool {self.target_pool_name} "
                f"({row.state.value}); the replication would overwrite it",
                hint="fail back, or stop the started replica, before replicating again",
            )
        return row

    # ----------------------------------------------------------------- per VM

    async def _log(self, msg: str, task_id: int, *, level: str = "info") -> None:
        await self.ctx.log(msg, level=level, task_id=task_id)

    async def _stage(self, task_id: int, stage: VmStage) -> None:
        await self.ctx.update_task(task_id, stage=stage.value)

    async def _replicate(
        self, vm: VmChoice, row: ReplicaRow, result: VmResult, task_id: int
    ) -> None:
        source, target, spec = self.source, self.target, self.spec
        await self._stage(task_id, VmStage.SNAPSHOT)
        replica = await self._prepare_replica(vm, row, task_id)
        await self._clean_source(vm, replica, task_id)
        work = _Work()
        try:
            with _Phase(result, "snapshot"):
                taken = time.time()
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(taken))
                name = snapshot_name(spec.name, stamp, self.run_id, marker=MARKER)
                await self._log(f"{vm.name}: snapshotting as {name!r}", task_id)
                work.snapshot = str(await source.call("VM.snapshot", vm.ref, name))
                # Tagged at once: from here on the sweep of marked snapshots
                # leaves it to this job, whose own clean-up keeps only the
                # reference its newest point names.
                await source.call(
                    "VM.add_to_other_config", work.snapshot, REFERENCE_KEY, str(self.job.id)
                )
                snap_rec = await source.call("VM.get_record", work.snapshot)
                snap_disks = await replicas.disks_of(source, work.snapshot)
            if not snap_disks:
                raise ReplicationFailed(f"VM {vm.name} has no disk to replicate")
            decisions = await self._decide(replica, snap_disks)
            for d in decisions:
                result.transfers[d.key] = d.kind
                result.reasons[d.key] = d.reason
                await self._log(f"{vm.name} disk {d.key}: {d.kind} — {d.reason}", task_id)
            with _Phase(result, "transfer"):
                if replica is None:
                    await self._stage(task_id, VmStage.CREATE)
                    replica = await self._create_replica(vm, snap_rec, work, task_id)
                else:
                    await replicas.mark_writing(target, replica)
                    work.dirty = True
                await self._stage(task_id, VmStage.TRANSFER)
                for d in decisions:
                    await self._copy(vm, task_id, replica, snap_disks[d.key], d, work, result)
                await self._drop_removed_disks(vm, replica, snap_disks, task_id)
            with _Phase(result, "point"):
                await self._stage(task_id, VmStage.POINT)
                replica = await replicas.load(target, replica.ref)
                # Complete: what this run made is no longer a leftover for the
                # sweep after a kill (and the point must not carry the mark).
                for disk in replica.live.values():
                    if CREATING_KEY in (disk.record.get("other_config") or {}):
                        await target.call("VDI.remove_from_other_config", disk.vdi, CREATING_KEY)
                if work.created_vm is not None:
                    await target.call("VM.remove_from_other_config", replica.ref, CREATING_KEY)
                seq = (replica.newest.seq if replica.newest else 0) + 1
                point = await replicas.take_point(
                    target,
                    replica,
                    name=point_name(vm.name, utc_stamp(taken)),
                    seq=seq,
                    source_snapshot=str(snap_rec["uuid"]),
                    taken=taken,
                )
                work.committed = True
            result.point_id = point.uuid
            result.replica_uuid = replica.uuid
            await self._log(
                f"{vm.name}: replica point {seq} ({point.uuid}) committed on "
                f"{replica.name!r}, {human_bytes(result.bytes)} sent",
                task_id,
            )
        finally:
            if not work.committed:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._undo(vm, replica, work, task_id))
        with _Phase(result, "cleanup"):
            await self._stage(task_id, VmStage.CLEANUP)
            replica = await replicas.load(target, replica.ref)
            gone = await replicas.prune(target, replica, spec.retention)
            if gone:
                await self._log(
                    f"{vm.name}: removed {len(gone)} replica point(s) beyond the retention "
                    f"of {spec.retention} (seq {', '.join(str(p.seq) for p in gone)})",
                    task_id,
                )
            await self._drop_references(vm, keep=str(snap_rec["uuid"]), task_id=task_id)
        await self.store.update_replica(
            row.id,
            vm_uuid=replica.uuid,
            vm_name=replica.name,
            source_vm_name=vm.name,
            latest_point_uuid=point.uuid,
            latest_point_at=taken,
            points=len(replica.points),
            last_success_at=time.time(),
            last_bytes=result.bytes,
            last_seconds=result.phases.get("transfer", 0.0),
        )

    async def _prepare_replica(self, vm: VmChoice, row: ReplicaRow, task_id: int) -> Replica | None:
        """The replica, at its newest point; None when there is none to continue."""
        target = self.target
        replica = await replicas.locate(
            target, vm_uuid=row.vm_uuid, job_id=self.job.id, source_uuid=vm.uuid
        )
        if replica is None:
            return None
        if replica.power_state != "Halted":
            raise ReplicationFailed(
                f"the replica {replica.name!r} is {replica.power_state.lower()} on pool "
                f"{self.target_pool_name} (started outside XenKeep?); replicating would "
                "overwrite it",
                hint="shut it down if it should go on as a replica",
            )
        if not replica.points:
            await self._log(
                f"{vm.name}: the replica {replica.name!r} has no complete point (a first run "
                "was cut before it); it is removed and made again",
                task_id,
                level="warning",
            )
            await destroy_snapshot(target, replica.ref)  # the VM and its disks
            return None
        newest = replica.newest
        assert newest is not None
        if not replica.clean:
            why = (
                "left mid-run by an earlier run (its disks were being written)"
                if replica.base == ""
                else f"its disks equal point {replica.base}, not the newest"
            )
            await self._log(
                f"{vm.name}: the replica was {why}; restoring its latest complete point "
                f"{newest.seq} from {utc_stamp(newest.taken)}",
                task_id,
                level="warning",
            )
            replica = await replicas.revert(target, replica, newest)
        return replica

    async def _clean_source(self, vm: VmChoice, replica: Replica | None, task_id: int) -> None:
        """Destroy what dead runs left of the VM's snapshots, and this job's
        references other than the one the newest point names."""
        removed = await sweep(
            self.source,
            vm_ref=vm.ref,
            running=self._running,
            marker=MARKER,
            kept_key=REFERENCE_KEY,
        )
        for name in removed.removed:
            await self._log(f"{vm.name}: removed {name!r}, left by a run that died", task_id)
        for problem in removed.failed:
            await self._log(f"{vm.name}: {problem}", task_id, level="warning")
        keep = replica.newest.source_snapshot if replica is not None and replica.newest else ""
        await self._drop_references(vm, keep=keep, task_id=task_id)

    async def _drop_references(self, vm: VmChoice, *, keep: str, task_id: int) -> None:
        for snap in await self.source.call("VM.get_snapshots", vm.ref):
            try:
                rec = await self.source.call("VM.get_record", snap)
            except XapiFailure:
                continue
            other = rec.get("other_config") or {}
            if other.get(REFERENCE_KEY) != str(self.job.id) or rec.get("uuid") == keep:
                continue
            try:
                await destroy_snapshot(self.source, snap)
                await self._log(
                    f"{vm.name}: removed the previous reference snapshot {rec.get('name_label')!r}",
                    task_id,
                )
            except XapiError as exc:
                await self._log(
                    f"{vm.name}: could not remove old snapshot {snap}: {exc}",
                    task_id,
                    level="warning",
                )

    async def _decide(self, replica: Replica | None, snap_disks: dict[str, Disk]) -> list[Decision]:
        source_disks = [SourceDisk(k, d.virtual_size) for k, d in snap_disks.items()]
        if replica is None or replica.newest is None:
            return decide(source_disks, None)
        newest = replica.newest
        reference: dict[str, Disk] = {}
        try:
            ref_vm = str(await self.source.call("VM.get_by_uuid", newest.source_snapshot))
            reference = await replicas.disks_of(self.source, ref_vm)
        except XapiFailure:
            broken = (
                f"reference snapshot {newest.source_snapshot} of the latest replica point is "
                "missing from the source pool (deleted outside XenKeep?)"
            )
            return decide(source_disks, None, no_chain=broken)
        chain = {
            key: ChainDisk(
                key,
                reference[key].uuid if key in reference else None,
                key in reference,
                newest.disks[key].virtual_size if key in newest.disks else None,
                replica.live[key].virtual_size if key in replica.live else None,
            )
            for key in set(reference) | set(newest.disks)
        }
        return decide(source_disks, chain)

    async def _create_replica(
        self, vm: VmChoice, snap_rec: dict[str, Any], work: _Work, task_id: int
    ) -> Replica:
        """The replica VM from the source snapshot's record, with its NICs, no disk yet."""
        target, spec = self.target, self.spec
        rec = vm_create_fields(snap_rec)
        rec["name_label"] = f"{vm.name} [XenKeep replica]"
        rec["name_description"] = (
            f"Replica of {vm.name} ({vm.uuid}) on pool {self.source_pool_name}, kept by "
            f"XenKeep job {spec.name!r}"
        )
        rec["is_a_template"] = False
        # A host of the source pool means nothing here.
        rec["affinity"] = NULL_REF
        rec["tags"] = sorted({*(snap_rec.get("tags") or []), REPLICA_TAG})
        other = dict(rec.get("other_config") or {})
        other.pop("mac_seed", None)
        other.update(
            {
                REPLICA_OF_KEY: vm.uuid,
                REPLICA_JOB_KEY: str(self.job.id),
                CREATING_KEY: str(self.run_id),
                BASE_KEY: "",
            }
        )
        rec["other_config"] = other
        reason = start_blocked_reason(vm.name, self.source_pool_name)
        rec["blocked_operations"] = {
            **(rec.get("blocked_operations") or {}),
            **dict.fromkeys(("start", "start_on"), reason),
        }
        ref = str(await target.call("VM.create", rec))
        work.created_vm = ref
        replica = await replicas.load(target, ref)
        await self._log(
            f"{vm.name}: created the replica VM {replica.name!r} ({replica.uuid}) on pool "
            f"{self.target_pool_name}, start blocked",
            task_id,
        )
        await self._vifs(vm, ref, task_id)
        return replica

    async def _vifs(self, vm: VmChoice, replica_ref: str, task_id: int) -> None:
        source, target = self.source, self.target
        pairs = dict(self.spec.networks)
        for vif in await source.call("VM.get_VIFs", vm.ref):
            rec = await source.call("VIF.get_record", vif)
            net = await source.call("network.get_record", rec["network"])
            chosen, how = target_network(
                str(net["uuid"]),
                str(net.get("name_label", "")),
                pairs=pairs,
                target=self._networks,
                same_pool=self.spec.same_pool,
            )
            device = str(rec.get("device", "0"))
            if chosen is None:
                await self._log(
                    f"{vm.name}: NIC {device} not created: {how}", task_id, level="warning"
                )
                continue
            net_ref = str(await target.call("network.get_by_uuid", chosen))
            # In another pool the replica keeps the MAC, so a started replica
            # looks like the same machine to its guest and its DHCP server;
            # in the same pool the two must never share one.
            mac = "" if self.spec.same_pool else str(rec.get("MAC", ""))
            await target.call(
                "VIF.create",
                new_vif(replica_ref, net_ref, device, int(rec.get("MTU") or 1500), mac),
            )
            await self._log(
                f"{vm.name}: NIC {device} on {self._networks.get(chosen, chosen)!r} ({how})",
                task_id,
            )

    async def _copy(
        self,
        vm: VmChoice,
        vm_task: int,
        replica: Replica,
        disk: Disk,
        decision: Decision,
        work: _Work,
        result: VmResult,
    ) -> None:
        source, target = self.source, self.target
        disk_task = await self.ctx.task(
            subject=vm.uuid,
            name=vm.name,
            stage=VmStage.TRANSFER.value,
            parent_id=vm_task,
            part=disk.key,
        )
        await self.ctx.update_task(
            disk_task, {"transfer": decision.kind, "reason": decision.reason}
        )
        try:
            if decision.full:
                into = str(
                    await target.call(
                        "VDI.create",
                        new_vdi(
                            self._sr,
                            disk.virtual_size,
                            name=str(disk.record.get("name_label") or f"{vm.name} {disk.key}"),
                            description=f"Replica of disk {disk.key} of {vm.name}",
                            other_config={CREATING_KEY: str(self.run_id)},
                        ),
                    )
                )
                work.loose_vdis.append(into)
                base = None
            else:
                into = replica.live[disk.key].vdi
                base = str(await source.call("VDI.get_by_uuid", decision.base_vdi))

            def fresh() -> Progress:
                return Progress(self._flusher(disk_task, vm_task))

            async def retrying(attempt: int, why: str) -> None:
                await self._log(
                    f"{vm.name} disk {disk.key}: the connection broke during copy attempt "
                    f"{attempt} ({why}); copying the disk again",
                    vm_task,
                    level="warning",
                )

            done = await copy_disk(
                source,
                disk.vdi,
                base,
                target,
                into,
                limiter=self.limiter,
                progress=fresh,
                retrying=retrying,
            )
            if decision.full:
                old = replica.live.get(disk.key)
                if old is not None:
                    # The replica's own copy goes; its points keep theirs.
                    await target.call("VBD.destroy", old.vbd)
                    with contextlib.suppress(XapiFailure):
                        await target.call("VDI.destroy", old.vdi)
                await target.call(
                    "VBD.create",
                    disk_vbd(
                        replica.ref,
                        into,
                        disk.key,
                        bootable=bool(await source.call("VBD.get_bootable", disk.vbd)),
                    ),
                )
                work.loose_vdis.remove(into)
                if work.created_vm is None:
                    work.dirty = True
        except BaseException as exc:
            await close_failed(self.ctx, disk_task, exc)
            raise
        result.bytes += done.bytes
        self._bytes_done[disk_task] = done.bytes
        await self.ctx.update_task(
            disk_task,
            status=RunStatus.SUCCESS.value,
            stage=VmStage.DONE.value,
            bytes=done.bytes,
            total_bytes=done.bytes,
            speed=done.bytes / done.seconds if done.seconds > 0 else 0.0,
            eta=0,
            finished_at=time.time(),
        )

    async def _drop_removed_disks(
        self, vm: VmChoice, replica: Replica, snap_disks: dict[str, Disk], task_id: int
    ) -> None:
        """A disk the source no longer has goes from the replica too (its points keep it)."""
        for key, disk in replica.live.items():
            if key in snap_disks:
                continue
            await self.target.call("VBD.destroy", disk.vbd)
            with contextlib.suppress(XapiFailure):
                await self.target.call("VDI.destroy", disk.vdi)
            await self._log(
                f"{vm.name}: disk {key} is no longer on the source; removed from the replica",
                task_id,
            )

    def _flusher(self, disk_task: int, vm_task: int) -> Callable[[Progress], Awaitable[None]]:
        async def flush(p: Progress) -> None:
            self._bytes_done[disk_task] = p.done
            await self.ctx.update_task(
                disk_task, bytes=p.done, total_bytes=p.total, speed=p.speed, eta=p.eta
            )
            await self.ctx.progress(sum(self._bytes_done.values()))

        return flush

    async def _undo(self, vm: VmChoice, replica: Replica | None, work: _Work, task_id: int) -> None:
        """Put both pools back as they were before this VM's run."""
        target = self.target
        for vdi in work.loose_vdis:
            with contextlib.suppress(XapiFailure):
                await target.call("VDI.destroy", vdi)
        if work.created_vm is not None:
            with contextlib.suppress(XapiError):
                await destroy_snapshot(target, work.created_vm)  # the VM and its disks
                await self._log(f"{vm.name}: the new replica was removed", task_id)
        elif work.dirty and replica is not None:
            current = await replicas.load(target, replica.ref)
            newest = current.newest
            if newest is not None:
                try:
                    await replicas.revert(target, current, newest)
                    await self._log(
                        f"{vm.name}: the replica is back at its latest complete point {newest.seq}",
                        task_id,
                    )
                except XapiError as exc:
                    # Its base mark stays "": the next run reverts it first.
                    await self._log(
                        f"{vm.name}: could not restore the replica's latest point now ({exc}); "
                        "the next run will",
                        task_id,
                        level="warning",
                    )
        if work.snapshot is not None:
            with contextlib.suppress(XapiError):
                await destroy_snapshot(self.source, work.snapshot)
