"""Failback: what ran on site B goes back to the source VM on site A, then
the two take their roles again.

1. The started VM on B is shut down (cleanly) and snapshotted; the source VM
   on A must be halted, and its state now is kept as a snapshot ("before
   failback"), which also undoes the failback if it fails part-way.
2. Per disk, as a delta against the data A still has: the source snapshot
   the started point was copied from. A is reverted to it, and the blocks
   B changed since that point are written over it (a full copy for a disk
   that chain cannot serve).
3. Roles swap: A is snapshotted as the job's new reference; on B the
   replica is made equal to that (if a clone of an older point was
   started, the replica goes back to that point and takes the clone's
   changes, and the clone goes), and a new point names the new reference.
   The replica's start is blocked again, the job's schedule resumes, and
   the next run is a delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from xenkeep.jobs.snapshots import destroy_snapshot, snapshot_name
from xenkeep.jobs.streams import Progress, RateLimiter
from xenkeep.ops import OperationContext
from xenkeep.units import human_bytes
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiError, XapiFailure
from xenkeep.xapi.records import disk_vbd, new_vdi

from . import replica as replicas
from .const import MARKER, REFERENCE_KEY, ReplicaState
from .copy import Retrying, copy_disk
from .failover import ReplicaUnusableError, replica_in_pool
from .kinds import FailbackStage, close_failed
from .replica import Disk, Point, Replica
from .runner import point_name, start_blocked_reason, utc_stamp
from .store import ReplicaRow, ReplicationStore


@dataclass(frozen=True)
class Sides:
    """The two pools of a failback."""

    source: XapiClient
    target: XapiClient
    source_name: str
    target_name: str


@dataclass
class _Undo:
    started_was_running: bool = False
    started_vm: str = ""
    snapshot_b: str | None = None
    source_vm: str = ""
    safety: str | None = None
    #: New VDIs on A not yet a disk of the source VM.
    loose: list[str] = field(default_factory=list)
    source_written: bool = False


class Failback:
    """One failback of one replica; create it per operation."""

    def __init__(
        self,
        ctx: OperationContext,
        *,
        row: ReplicaRow,
        sides: Sides,
        store: ReplicationStore,
        job_name: str,
        retention: int,
        bandwidth_limit: int | None,
        start_source: bool,
    ) -> None:
        self.ctx = ctx
        self.row = row
        self.sides = sides
        self.store = store
        self.job_name = job_name
        self.retention = retention
        self.limiter = RateLimiter(bandwidth_limit)
        self.start_source = start_source
        self.moved = 0
        self._task = 0

    async def _log(self, msg: str, *, level: str = "info") -> None:
        await self.ctx.log(msg, level=level, task_id=self._task or None)

    async def execute(self) -> dict[str, Any]:
        """Fail back; the report."""
        row, a, b = self.row, self.sides.source, self.sides.target
        await self.ctx.stage(FailbackStage.CHECK)
        self._task = await self.ctx.task(
            subject=row.source_vm_uuid, name=row.source_vm_name, stage="check"
        )
        replica = await replica_in_pool(b, row, self.sides.target_name)
        try:
            started = str(await b.call("VM.get_by_uuid", row.started_vm_uuid))
        except XapiFailure:
            raise ReplicaUnusableError(
                f"the started VM {row.started_vm_uuid} is gone from pool {self.sides.target_name}"
            ) from None
        point = next((p for p in replica.points if p.uuid == row.started_point_uuid), None)
        try:
            source_vm = str(await a.call("VM.get_by_uuid", row.source_vm_uuid))
        except XapiFailure:
            raise ReplicaUnusableError(
                f"the source VM {row.source_vm_name} ({row.source_vm_uuid}) is gone from pool "
                f"{self.sides.source_name}: there is nothing to fail back into",
                hint="restore or recreate it, or keep running on the started replica",
            ) from None
        power = str(await a.call("VM.get_power_state", source_vm))
        if power != "Halted":
            raise ReplicaUnusableError(
                f"{row.source_vm_name} is {power.lower()} on pool {self.sides.source_name}: "
                "the failback would overwrite its disks",
                hint="shut it down first (what it wrote since the failover is kept as a "
                "snapshot, but two copies must not run)",
            )
        undo = _Undo(started_vm=started, source_vm=source_vm)
        try:
            report = await self._fail_back(replica, started, point, source_vm, undo)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._undo(undo))
            raise
        return report

    async def run(self) -> dict[str, Any]:
        """:meth:`execute`, its sub-task closed however it ends."""
        try:
            return await self.execute()
        except BaseException as exc:
            if self._task:
                await close_failed(self.ctx, self._task, exc)
            raise

    async def _fail_back(
        self,
        replica: Replica,
        started: str,
        point: Point | None,
        source_vm: str,
        undo: _Undo,
    ) -> dict[str, Any]:
        row, a, b = self.row, self.sides.source, self.sides.target
        await self.ctx.stage(FailbackStage.SNAPSHOT)
        await self.ctx.update_task(self._task, stage="snapshot")
        undo.safety = await self._safety_snapshot(source_vm)
        if str(await b.call("VM.get_power_state", started)) != "Halted":
            await self._log(f"shutting down the started VM on pool {self.sides.target_name}")
            await b.call("VM.clean_shutdown", started)
            undo.started_was_running = True
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        name = snapshot_name(f"{self.job_name} failback", stamp, self.ctx.id, marker=MARKER)
        undo.snapshot_b = str(await b.call("VM.snapshot", started, name))
        b_disks = await replicas.disks_of(b, undo.snapshot_b)
        base = await self._base(point)
        await self.ctx.stage(FailbackStage.TRANSFER)
        await self.ctx.update_task(self._task, stage="transfer")
        if base is not None and any(self._delta(k, d, point, base) for k, d in b_disks.items()):
            ref_vm = str(await a.call("VM.get_by_uuid", base[0]))
            await a.call("VM.revert", ref_vm)
            await self._log(
                f"{row.source_vm_name} on pool {self.sides.source_name} is back at the data "
                f"the started point was copied from ({utc_stamp(point.taken if point else 0)})"
            )
        undo.source_written = True
        a_disks = await replicas.disks_of(a, source_vm)
        transfers: dict[str, str] = {}
        for key, disk in b_disks.items():
            delta = base is not None and self._delta(key, disk, point, base)
            assert point is not None or not delta
            into = a_disks[key].vdi if delta and key in a_disks else None
            if into is None:
                into = await self._fresh_vdi(a, source_vm, disk, a_disks, undo)
                delta = False
            transfers[key] = "delta" if delta else "full"
            await self._log(
                f"disk {key}: {transfers[key]} from pool {self.sides.target_name} to "
                f"pool {self.sides.source_name}"
            )
            copied = await copy_disk(
                b,
                disk.vdi,
                point.disks[key].vdi if delta and point is not None else None,
                a,
                into,
                limiter=self.limiter,
                progress=self._progress,
                retrying=self._retrying(key),
            )
            self.moved += copied.bytes
            if key not in a_disks or not delta:
                await self._attach(a, source_vm, key, into, a_disks, undo)
        for key, disk in a_disks.items():
            if key not in b_disks:
                await a.call("VBD.destroy", disk.vbd)
                with contextlib.suppress(XapiFailure):
                    await a.call("VDI.destroy", disk.vdi)
        await self.ctx.stage(FailbackStage.SWAP)
        await self.ctx.update_task(self._task, stage="swap")
        new_point = await self._swap(replica, started, point, undo)
        await self.ctx.stage(FailbackStage.CLEANUP)
        await self.ctx.update_task(self._task, stage="cleanup")
        with contextlib.suppress(XapiError):
            await destroy_snapshot(b, undo.snapshot_b)
        undo.snapshot_b = None
        if self.start_source:
            await a.call("VM.start", source_vm, False, False)
            await self._log(f"started {row.source_vm_name} on pool {self.sides.source_name}")
        await self.ctx.update_task(
            self._task, status="success", stage="done", bytes=self.moved, finished_at=time.time()
        )
        return {
            "replica_id": row.id,
            "vm_name": row.source_vm_name,
            "transfers": transfers,
            "bytes": self.moved,
            "point_id": new_point.uuid,
            "safety_snapshot": undo.safety,
            "source_started": self.start_source,
        }

    async def _safety_snapshot(self, source_vm: str) -> str:
        """The source VM's state before this failback, kept (and reverted to
        first when an earlier failback died part-way through writing it)."""
        a, row = self.sides.source, self.row
        if row.safety_snapshot_uuid:
            try:
                ref = str(await a.call("VM.get_by_uuid", row.safety_snapshot_uuid))
            except XapiFailure:
                pass
            else:
                await a.call("VM.revert", ref)
                await self._log(
                    "an earlier failback was cut: the source VM is back at its snapshot "
                    f"from before it ({row.safety_snapshot_uuid})",
                    level="warning",
                )
                return ref
        name = f"{row.source_vm_name} before failback {utc_stamp(time.time())}"
        ref = str(await a.call("VM.snapshot", source_vm, name))
        uuid = str(await a.call("VM.get_uuid", ref))
        await self.store.update_replica(
            row.id, state=ReplicaState.FAILING_BACK, safety_snapshot_uuid=uuid
        )
        await self._log(
            f"kept {row.source_vm_name}'s state before the failback as snapshot {name!r} "
            "(delete it once satisfied)"
        )
        return ref

    async def _base(self, point: Point | None) -> tuple[str, dict[str, Disk]] | None:
        """The source snapshot the started point equals, and its disks, if A still has it."""
        if point is None or not point.source_snapshot:
            return None
        a = self.sides.source
        try:
            ref = str(await a.call("VM.get_by_uuid", point.source_snapshot))
        except XapiFailure:
            await self._log(
                f"the source snapshot {point.source_snapshot} behind the started point is gone "
                "from the source pool: the disks go back in full",
                level="warning",
            )
            return None
        return point.source_snapshot, await replicas.disks_of(a, ref)

    @staticmethod
    def _delta(
        key: str, disk: Disk, point: Point | None, base: tuple[str, dict[str, Disk]]
    ) -> bool:
        ref = base[1].get(key)
        return (
            point is not None
            and key in point.disks
            and ref is not None
            and ref.virtual_size == disk.virtual_size == point.disks[key].virtual_size
        )

    async def _fresh_vdi(
        self, a: XapiClient, source_vm: str, disk: Disk, a_disks: dict[str, Disk], undo: _Undo
    ) -> str:
        old = a_disks.get(disk.key)
        sr = (
            str(old.record["SR"])
            if old is not None
            else str(await a.call("pool.get_default_SR", (await a.call("pool.get_all"))[0]))
        )
        vdi = str(
            await a.call(
                "VDI.create",
                new_vdi(
                    sr,
                    disk.virtual_size,
                    name=str(disk.record.get("name_label") or f"disk {disk.key}"),
                    description=f"Failed back by XenKeep from pool {self.sides.target_name}",
                    other_config={},
                ),
            )
        )
        undo.loose.append(vdi)
        return vdi

    async def _attach(
        self,
        a: XapiClient,
        source_vm: str,
        key: str,
        vdi: str,
        a_disks: dict[str, Disk],
        undo: _Undo,
    ) -> None:
        old = a_disks.get(key)
        if old is not None and old.vdi == vdi:
            return
        if old is not None:
            await a.call("VBD.destroy", old.vbd)
            with contextlib.suppress(XapiFailure):
                await a.call("VDI.destroy", old.vdi)
        await a.call("VBD.create", disk_vbd(source_vm, vdi, key))
        undo.loose.remove(vdi)

    def _progress(self) -> Progress:
        before = self.moved

        async def flush(p: Progress) -> None:
            await self.ctx.update_task(self._task, bytes=before + p.done, speed=p.speed, eta=p.eta)
            await self.ctx.progress(before + p.done)

        return Progress(flush)

    def _retrying(self, key: str) -> Retrying:
        async def retrying(attempt: int, why: str) -> None:
            await self._log(
                f"disk {key}: the connection broke during copy attempt {attempt} ({why}); "
                "copying it again",
                level="warning",
            )

        return retrying

    async def _swap(
        self, replica: Replica, started: str, point: Point | None, undo: _Undo
    ) -> Point:
        """A is the source again: its new reference, and on B the replica equal to it."""
        row, a, b = self.row, self.sides.source, self.sides.target
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        taken = time.time()
        name = snapshot_name(self.job_name, stamp, self.ctx.id, marker=MARKER)
        reference = str(await a.call("VM.snapshot", undo.source_vm, name))
        if row.job_id is not None:
            await a.call("VM.add_to_other_config", reference, REFERENCE_KEY, str(row.job_id))
        reference_uuid = str(await a.call("VM.get_uuid", reference))
        if started != replica.ref:
            # A clone of an older point ran: the replica goes back to that
            # point and takes the clone's changes, then the clone goes.
            assert point is not None and undo.snapshot_b is not None
            replica = await replicas.revert(b, replica, point)
            await replicas.mark_writing(b, replica)
            clone_disks = await replicas.disks_of(b, undo.snapshot_b)
            for key, disk in clone_disks.items():
                if key in replica.live and key in point.disks:
                    await copy_disk(
                        b,
                        disk.vdi,
                        point.disks[key].vdi,
                        b,
                        replica.live[key].vdi,
                        limiter=self.limiter,
                        progress=self._progress,
                        retrying=self._retrying(key),
                    )
            await destroy_snapshot(b, started)
            await self._log("the started clone was removed; the replica holds its data")
        replica = await replicas.load(b, replica.ref)
        seq = (replica.newest.seq if replica.newest else 0) + 1
        new_point = await replicas.take_point(
            b,
            replica,
            name=point_name(row.source_vm_name, utc_stamp(taken)),
            seq=seq,
            source_snapshot=reference_uuid,
            taken=taken,
        )
        await replicas.block_start(
            b, replica.ref, start_blocked_reason(row.source_vm_name, self.sides.source_name)
        )
        replica = await replicas.load(b, replica.ref)
        await replicas.prune(b, replica, self.retention)
        # The job's older references of this VM go: the new one is the base now.
        for snap in await a.call("VM.get_snapshots", undo.source_vm):
            with contextlib.suppress(XapiFailure):
                other = await a.call("VM.get_other_config", snap)
                if other.get(REFERENCE_KEY) == str(row.job_id) and snap != reference:
                    await destroy_snapshot(a, snap)
        await self.store.update_replica(
            row.id,
            state=ReplicaState.REPLICATING,
            started_vm_uuid="",
            started_point_uuid="",
            started_at=None,
            safety_snapshot_uuid="",
            vm_uuid=replica.uuid,
            latest_point_uuid=new_point.uuid,
            latest_point_at=taken,
            points=len(replica.points),
            last_success_at=time.time(),
            last_bytes=self.moved,
            last_error="",
        )
        if row.job_id is not None:
            await self.store.set_paused(row.job_id, "")
        await self._log(
            f"roles swapped: {row.source_vm_name} on pool {self.sides.source_name} is the "
            f"source again; its replica is at the new point {seq}; "
            f"{human_bytes(self.moved)} moved"
        )
        return new_point

    async def _undo(self, undo: _Undo) -> None:
        """A failback that failed: A back as it was, B's started VM as it was."""
        a, b = self.sides.source, self.sides.target
        for vdi in undo.loose:
            with contextlib.suppress(XapiFailure):
                await a.call("VDI.destroy", vdi)
        if undo.source_written and undo.safety is not None:
            with contextlib.suppress(XapiError):
                await a.call("VM.revert", undo.safety)
                await self._log("the source VM is back as it was before the failback")
        if undo.snapshot_b is not None:
            with contextlib.suppress(XapiError):
                await destroy_snapshot(b, undo.snapshot_b)
        if undo.started_was_running:
            with contextlib.suppress(XapiError):
                await b.call("VM.start", undo.started_vm, False, False)
                await self._log("the started VM on the target runs again")
        await self.store.update_replica(self.row.id, state=ReplicaState.STARTED)
