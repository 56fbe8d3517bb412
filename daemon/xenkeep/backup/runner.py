"""One backup run: the VMs of a job, each snapshot → export → chain → commit.

Per VM: read the newest restore point of its chain, take a snapshot, decide
per disk full or delta (:func:`~xenkeep.backup.decide.decide`, the reason
goes to the log), stream each disk from ``export_raw_vdi?format=vhd[&base=]``
into the datastore's point writer, commit, then keep the new snapshot as the
next reference and delete the older XenKeep snapshots of that VM. Retention
merges run after the VM's transfer, outside the concurrency slot, so they do
not hold up the next VM.

The reference for the next delta lives in the restore point itself (each
disk records the snapshot VDI it was exported from): the datastore is the
single source of truth, so a kill between commit and cleanup costs nothing
but a leftover snapshot the next run removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from xenkeep.errors import XenKeepError
from xenkeep.jobs.claims import reads_vm
from xenkeep.jobs.snapshots import destroy_snapshot, snapshot_name, sweep
from xenkeep.jobs.streams import Pipe, PipeBroken, Progress, RateLimiter
from xenkeep.ops import OperationContext
from xenkeep.repo.datastore import Datastore
from xenkeep.repo.errors import ChainBrokenError, RepoError
from xenkeep.repo.layout import RestorePoint
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiError, XapiFailure
from xenkeep.xapi.transfer import TransferResult, export_raw_vdi

from .const import SNAPSHOT_KEY, SNAPSHOT_MARKER, RunStatus, Stage
from .decide import CurrentDisk, Decision, PreviousDisk, decide
from .job import JobSpec, VmChoice, missing_names, select_vms
from .runbase import RunBase

log = logging.getLogger(__name__)

NULL_REF = "OpaqueRef:NULL"


#: Whole-disk export attempts: a stream that broke in a way the transfer
#: could not resume is exported again from the start.
DISK_ATTEMPTS = 3


def _retryable(exc: BaseException) -> bool:
    """A stream that arrived damaged (a resumed export whose bytes differ,
    e.g. a new VHD footer per request) is worth one more export; transfer
    errors were already retried by the transfer itself."""
    if isinstance(exc, RepoError) and not isinstance(exc, ChainBrokenError):
        cause = exc.__cause__
        return not isinstance(cause, OSError)
    return False


class BackupFailed(XenKeepError):
    """A VM could not be backed up; the message says why."""

    code = "backup_failed"


@dataclass
class VmResult:
    """What happened to one VM of a run (the report's row)."""

    vm_uuid: str
    vm_name: str
    status: RunStatus = RunStatus.PENDING
    point_id: str = ""
    transfers: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0
    merge_seconds: float | None = None
    merged: int = 0
    error: str = ""
    #: What needs a look although the point was made (a snapshot left in
    #: the pool...): the VM, and so the run, ends with a warning.
    warnings: list[str] = field(default_factory=list)

    @property
    def speed(self) -> float:
        """Average transfer speed in bytes per second."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the report."""
        return {
            "vm_uuid": self.vm_uuid,
            "vm_name": self.vm_name,
            "status": self.status.value,
            "point_id": self.point_id,
            "transfers": self.transfers,
            "reasons": self.reasons,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "speed": round(self.speed, 1),
            "merge_seconds": None if self.merge_seconds is None else round(self.merge_seconds, 3),
            "merged": self.merged,
            "error": self.error,
            "warnings": list(self.warnings),
        }


def describe_error(exc: BaseException) -> str:
    """A user-facing cause for a failure (never a bare traceback)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"the backup storage is full: {exc.strerror}"
    if isinstance(exc, XapiFailure):
        return f"the pool refused: {exc}"
    if isinstance(exc, XenKeepError):
        text = exc.message
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            text = f"the backup storage is full ({text})"
        return text + (f" — {exc.hint}" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


def _previous_disks(points: list[RestorePoint]) -> dict[str, PreviousDisk] | None:
    if not points:
        return None
    newest = points[-1]
    out = {}
    for disk in newest.disks:
        # Merges rewrite the oldest full, so "transfer" in older records no
        # longer marks the last full: each disk carries the seq of its last
        # full export forward instead.
        full_seq = disk.vdi.get("full_seq")
        if isinstance(full_seq, int):
            snap = disk.vdi.get("snapshot_vdi_uuid")
            out[disk.key] = PreviousDisk(
                disk.key, disk.virtual_size, str(snap) if snap else None, newest.seq - full_seq + 1
            )
            continue
        since = 0
        for p in reversed(points):
            try:
                rec = p.disk(disk.key)
            except XenKeepError:
                break
            since += 1
            if rec.transfer == "full":
                break
        snap = disk.vdi.get("snapshot_vdi_uuid")
        out[disk.key] = PreviousDisk(
            disk.key, disk.virtual_size, str(snap) if snap else None, since
        )
    return out


class BackupRun(RunBase):
    """Runs one job once; create it per run."""

    def __init__(
        self,
        *,
        ctx: OperationContext,
        job_id: int,
        spec: JobSpec,
        client: XapiClient,
        datastore: Datastore,
        running: Callable[[], frozenset[int]] | None = None,
    ) -> None:
        super().__init__(ctx=ctx, client=client, datastore=datastore)
        self.job_id = job_id
        self.spec = spec
        #: Ids of the backup runs in progress (their snapshots are not orphans).
        self._running = running
        self.limiter = RateLimiter(spec.bandwidth_limit)
        self.results: list[VmResult] = []
        #: The run's own warnings (each VM has its own in its result).
        self.warnings: list[str] = []
        self._bytes_done: dict[int, int] = {}

    async def execute(self) -> list[VmResult]:
        """Back up every VM the job selects; never raises for one VM's failure."""
        vms = select_vms(self.spec, await self.client.call("VM.get_all_records"))
        for name in missing_names(self.spec, vms):
            await self._log(f"no VM named {name!r} in the pool", level="error")
            self.results.append(
                VmResult("", name, RunStatus.FAILED, error=f"no VM named {name!r} in the pool")
            )
        if not vms and not self.results:
            # Nothing failed, but nothing was backed up: not a success.
            await self._log("the job selects no VM", level="warning")
            self.warnings.append("the job selects no VM: nothing was backed up")
        await self._log(
            f"{len(vms)} VM(s): {', '.join(v.name for v in vms)}; "
            f"concurrency {self.spec.concurrency}, retention {self.spec.retention}"
        )
        slots = asyncio.Semaphore(self.spec.concurrency)
        merges: list[asyncio.Task[None]] = []

        async def one(vm: VmChoice) -> None:
            result = VmResult(vm.uuid, vm.name)
            self.results.append(result)
            async with slots:
                task_id = await self._new_task(vm_uuid=vm.uuid, vm_name=vm.name, stage=Stage.QUEUED)
                ok = await self._vm_guarded(vm, result, task_id)
            if ok:
                merges.append(asyncio.create_task(self._merge(vm, result, task_id)))

        try:
            await asyncio.gather(*(one(vm) for vm in vms))
        finally:
            if merges:
                # Merges already started finish even if the run is cancelled:
                # interrupting one only means resuming it later.
                await asyncio.shield(asyncio.gather(*merges, return_exceptions=True))
        return self.results

    async def _vm_guarded(self, vm: VmChoice, result: VmResult, task_id: int) -> bool:
        started = time.monotonic()
        claim = [reads_vm(vm.uuid)]
        try:
            # Shared with a replication reading it; refused while a failback
            # overwrites it (the refusal says which).
            self.ctx.claim(claim, f"back up {vm.name}")
            await self._backup_vm(vm, result, task_id)
        except asyncio.CancelledError:
            result.status = RunStatus.CANCELLED
            result.error = "cancelled"
            await asyncio.shield(self._close_task(task_id, result, started))
            raise
        except Exception as exc:
            result.status = RunStatus.FAILED
            result.error = describe_error(exc)
            log.debug("VM %s failed", vm.uuid, exc_info=True)
            await self._log(f"{vm.name}: FAILED: {result.error}", level="error", task_id=task_id)
            await self._close_task(task_id, result, started)
            return False
        finally:
            self.ctx.release(claim)
        result.status = RunStatus.WARNING if result.warnings else RunStatus.SUCCESS
        await self._close_task(task_id, result, started)
        return True

    async def _close_task(self, task_id: int, result: VmResult, started: float) -> None:
        result.seconds = time.monotonic() - started
        backed_up = result.status in (RunStatus.SUCCESS, RunStatus.WARNING)
        done = {"stage": Stage.DONE.value} if backed_up else {}
        await self._update_task(
            task_id,
            status=result.status.value,
            **done,
            bytes=result.bytes,
            speed=result.speed,
            eta=0 if backed_up else None,
            finished_at=time.time(),
            point_id=result.point_id,
            error=result.error or "; ".join(result.warnings),
            transfer=",".join(sorted(set(result.transfers.values()))),
        )

    # ----------------------------------------------------------------- per VM

    async def _snapshot_disks(self, snap: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(key, VDI ref, VDI record) of each disk of a snapshot, by key."""
        out = []
        for vbd in await self.client.call("VM.get_VBDs", snap):
            rec = await self.client.call("VBD.get_record", vbd)
            if rec.get("type") != "Disk" or rec.get("VDI") in (None, "", NULL_REF):
                continue
            vdi = await self.client.call("VDI.get_record", rec["VDI"])
            out.append((str(rec["userdevice"]), str(rec["VDI"]), vdi))
        return sorted(out, key=lambda t: t[0])

    async def _vdi_ref(self, uuid: str) -> str | None:
        try:
            return str(await self.client.call("VDI.get_by_uuid", uuid))
        except XapiFailure:
            return None

    async def _backup_vm(self, vm: VmChoice, result: VmResult, task_id: int) -> None:
        client = self.client
        await self._update_task(task_id, stage=Stage.SNAPSHOT)
        points = await asyncio.to_thread(self.datastore.points, vm.uuid)
        previous = _previous_disks(points)
        damaged = None
        if points:
            broken = await asyncio.to_thread(self.datastore.damage, vm.uuid)
            mine = [d for d in broken if d.point_id == points[-1].id]
            if mine:
                damaged = f"restore point {mine[0].point_id} disk {mine[0].disk}: {mine[0].reason}"
        vm_record = await client.call("VM.get_record", vm.ref)
        await self._sweep_orphans(vm, points, task_id, result)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        # The name carries the run's marker: if this run dies while the pool
        # snapshots, the snapshot that appears later is still known as ours.
        name = snapshot_name(self.spec.name, stamp, self.run_id, marker=SNAPSHOT_MARKER)
        await self._log(f"{vm.name}: snapshotting as {name!r}", task_id=task_id)
        snap = str(await client.call("VM.snapshot", vm.ref, name))
        committed = False
        try:
            snap_uuid = str(await client.call("VM.get_uuid", snap))
            await self._log(f"{vm.name}: snapshot {snap_uuid} taken", task_id=task_id)
            disks = await self._snapshot_disks(snap)
            if not disks:
                raise BackupFailed(f"VM {vm.name} has no disk to back up")
            existing: set[str] = set()
            base_refs: dict[str, str] = {}
            for prev in (previous or {}).values():
                if prev.snapshot_vdi:
                    ref = await self._vdi_ref(prev.snapshot_vdi)
                    if ref is not None:
                        existing.add(prev.snapshot_vdi)
                        base_refs[prev.snapshot_vdi] = ref
            decisions = decide(
                [CurrentDisk(k, int(rec["virtual_size"])) for k, _ref, rec in disks],
                previous,
                existing_snapshots=frozenset(existing),
                damaged=damaged,
                full_every=self.spec.full_every,
            )
            for d in decisions:
                result.transfers[d.key] = d.kind
                result.reasons[d.key] = d.reason
                await self._log(f"{vm.name} disk {d.key}: {d.kind} — {d.reason}", task_id=task_id)
            meta = dict(vm_record)
            meta["xenkeep"] = {
                "snapshot_uuid": snap_uuid,
                "job_id": self.job_id,
                "job_name": self.spec.name,
                "vifs": await self._vifs(vm.ref),
            }
            full_seqs = {
                k: points[-1].seq - prev.points_since_full + 1
                for k, prev in (previous or {}).items()
            }
            any_delta = any(not d.full for d in decisions)
            expect = points[-1].id if (any_delta and points) else None
            await self._update_task(task_id, stage=Stage.EXPORT)
            async with self.datastore.begin_point(
                vm.uuid, vm_record=meta, job_id=str(self.job_id), expect_parent=expect
            ) as writer:
                for (key, ref, vdi), decision in zip(disks, decisions, strict=True):
                    await self._transfer_disk(
                        vm, task_id, writer, key, ref, vdi, decision, base_refs, full_seqs, result
                    )
                await self._update_task(task_id, stage=Stage.COMMIT)
                point = await writer.commit()
            committed = True
            result.point_id = point.id
            await self._log(
                f"{vm.name}: restore point {point.id} committed ({result.bytes} bytes transferred)",
                task_id=task_id,
            )
            await self._update_task(task_id, stage=Stage.CLEANUP, point_id=point.id)
            # Tagged only now that a point names it: an untagged marked
            # snapshot is one no restore point uses, whatever killed its run.
            with contextlib.suppress(XapiFailure):
                await client.call("VM.add_to_other_config", snap, SNAPSHOT_KEY, str(self.job_id))
            await self._cleanup_snapshots(vm, keep=snap, task_id=task_id, result=result)
        finally:
            if not committed:
                # The previous reference stays; the new snapshot is useless.
                await asyncio.shield(self._discard_snapshot(vm, snap, task_id))

    async def _vifs(self, vm_ref: str) -> list[dict[str, Any]]:
        out = []
        for vif in await self.client.call("VM.get_VIFs", vm_ref):
            rec = await self.client.call("VIF.get_record", vif)
            net_uuid = ""
            with contextlib.suppress(XapiError):
                net_uuid = str(await self.client.call("network.get_uuid", rec["network"]))
            out.append(
                {
                    "device": rec.get("device", ""),
                    "MAC": rec.get("MAC", ""),
                    "MTU": rec.get("MTU", 1500),
                    "network_uuid": net_uuid,
                }
            )
        return out

    async def _transfer_disk(
        self,
        vm: VmChoice,
        vm_task: int,
        writer: Any,
        key: str,
        ref: str,
        vdi: dict[str, Any],
        decision: Decision,
        base_refs: dict[str, str],
        full_seqs: dict[str, int],
        result: VmResult,
    ) -> None:
        disk_task = await self._new_task(
            vm_uuid=vm.uuid,
            vm_name=vm.name,
            stage=Stage.EXPORT,
            parent_id=vm_task,
            disk_key=key,
        )
        await self._update_task(disk_task, transfer=decision.kind, reason=decision.reason)
        base = None if decision.full else base_refs[str(decision.base_vdi)]
        record = {
            "snapshot_vdi_uuid": vdi["uuid"],
            "full_seq": writer.seq if decision.full else full_seqs.get(key, writer.seq),
            "vdi_uuid": "",
            "name_label": vdi.get("name_label", ""),
            "name_description": vdi.get("name_description", ""),
            "virtual_size": int(vdi["virtual_size"]),
            "sr_uuid": "",
        }
        with contextlib.suppress(XapiError):
            record["sr_uuid"] = str(await self.client.call("SR.get_uuid", vdi["SR"]))
        with contextlib.suppress(XapiError):
            record["vdi_uuid"] = str(await self.client.call("VDI.get_uuid", vdi["snapshot_of"]))
        attempt = 0
        while True:
            attempt += 1
            progress = Progress(self._flusher(disk_task, vm_task))
            try:
                done = await self._stream_once(writer, key, ref, base, decision, record, progress)
                break
            except BaseException as exc:
                if attempt < DISK_ATTEMPTS and _retryable(exc):
                    await self._log(
                        f"{vm.name} disk {key}: attempt {attempt} failed "
                        f"({describe_error(exc)}); exporting the disk again",
                        level="warning",
                        task_id=vm_task,
                    )
                    continue
                # What moved before the stop counts, in the disk's row and the
                # VM's, so a cancelled run does not read "0 B transferred".
                result.bytes += progress.done
                self._bytes_done[disk_task] = progress.done
                await asyncio.shield(
                    self._update_task(
                        disk_task,
                        status=RunStatus.CANCELLED.value
                        if isinstance(exc, asyncio.CancelledError)
                        else RunStatus.FAILED.value,
                        bytes=progress.done,
                        speed=0,
                        eta=None,
                        error=describe_error(exc) if isinstance(exc, Exception) else "cancelled",
                        finished_at=time.time(),
                    )
                )
                raise
        progress.done = done.bytes
        await progress.finish()
        result.bytes += done.bytes
        if done.attempts > 1:
            await self._log(
                f"{vm.name} disk {key}: export resumed after {done.attempts - 1} broken "
                "connection(s)",
                level="warning",
                task_id=vm_task,
            )
        await self._update_task(
            disk_task,
            status=RunStatus.SUCCESS.value,
            stage=Stage.DONE,
            bytes=done.bytes,
            total_bytes=done.bytes,
            speed=done.bytes / done.seconds if done.seconds > 0 else 0.0,
            eta=0,
            finished_at=time.time(),
        )

    async def _stream_once(
        self,
        writer: Any,
        key: str,
        ref: str,
        base: str | None,
        decision: Decision,
        record: dict[str, Any],
        progress: Progress,
    ) -> TransferResult:
        """One export of a disk piped into the point writer."""
        pipe = Pipe()
        limiter = self.limiter

        async def sink(chunk: bytes) -> None:
            await limiter.take(len(chunk))
            await pipe.put(chunk)

        write = asyncio.create_task(
            writer.write_vhd(key, pipe.reader(), delta=not decision.full, vdi=record)
        )
        write.add_done_callback(lambda t: pipe.break_() if t.cancelled() or t.exception() else None)
        try:
            try:
                done = await export_raw_vdi(
                    self.client, ref, sink, fmt="vhd", base=base, progress=progress.update
                )
            except PipeBroken:
                await write  # raises the writer's own error
                raise
            await pipe.close()
            await write
        except BaseException as exc:
            pipe.fail(exc if isinstance(exc, Exception) else RepoError("transfer cancelled"))
            if not write.done():
                with contextlib.suppress(BaseException):
                    await asyncio.shield(write)
            raise
        return done

    def _flusher(self, disk_task: int, vm_task: int) -> Callable[[Progress], Awaitable[None]]:
        async def flush(p: Progress) -> None:
            self._bytes_done[disk_task] = p.done
            await self._update_task(
                disk_task, bytes=p.done, total_bytes=p.total, speed=p.speed, eta=p.eta
            )
            await self.ctx.progress(sum(self._bytes_done.values()))

        return flush

    async def _destroy_snapshot(
        self, vm: VmChoice, snap: str, task_id: int, what: str
    ) -> list[str]:
        """Destroy one of this run's snapshots of ``vm``; what it left behind
        (empty: nothing), each line logged as a warning."""
        try:
            removal = await destroy_snapshot(self.client, snap)
        except XapiError as exc:
            problems = [f"{what} {snap} stays in the pool: {describe_error(exc)}"]
        else:
            if removal.lifted:
                await self._log(
                    f"{vm.name}: {what} had {', '.join(removal.lifted)} blocked, as its VM "
                    "has: lifted on XenKeep's own snapshot to remove it",
                    task_id=task_id,
                )
            problems = [f"{what}: {left} stays in the pool" for left in removal.left]
        for problem in problems:
            await self._log(f"{vm.name}: {problem}", level="warning", task_id=task_id)
        return problems

    async def _discard_snapshot(self, vm: VmChoice, snap: str, task_id: int) -> None:
        """A failed or cancelled VM's new snapshot; the VM already says it
        failed, the log says what stayed."""
        with contextlib.suppress(Exception):
            await self._destroy_snapshot(vm, snap, task_id, "the unused new snapshot")

    def running_runs(self) -> frozenset[int]:
        """This run and every other backup run in progress."""
        others = self._running() if self._running is not None else frozenset()
        return others | {self.run_id}

    async def _sweep_orphans(
        self, vm: VmChoice, points: list[RestorePoint], task_id: int, result: VmResult
    ) -> None:
        """Destroy what dead runs left of this VM's snapshots before taking one more."""
        newest = str(points[-1].vm.get("xenkeep", {}).get("snapshot_uuid", "")) if points else ""

        async def reference(_vm_uuid: str) -> str | None:
            return newest or None

        swept = await sweep(
            self.client,
            vm_ref=vm.ref,
            running=self.running_runs,
            references=reference,
            marker=SNAPSHOT_MARKER,
            kept_key=SNAPSHOT_KEY,
        )
        for name in swept.removed:
            await self._log(
                f"{vm.name}: removed {name!r}, left by a run that died", task_id=task_id
            )
        for problem in swept.failed:
            warning = f"a snapshot left by a run that died stays in the pool: {problem}"
            await self._log(f"{vm.name}: {warning}", level="warning", task_id=task_id)
            result.warnings.append(warning)

    async def _cleanup_snapshots(
        self, vm: VmChoice, *, keep: str, task_id: int, result: VmResult
    ) -> None:
        """Delete this job's older snapshots of the VM; the newest is the next
        reference. One that stays is a warning on the VM (and so the run)."""
        for snap in await self.client.call("VM.get_snapshots", vm.ref):
            if snap == keep:
                continue
            other = await self.client.call("VM.get_other_config", snap)
            if other.get(SNAPSHOT_KEY) != str(self.job_id):
                continue
            problems = await self._destroy_snapshot(
                vm, snap, task_id, "the previous reference snapshot"
            )
            result.warnings.extend(problems)
            if not problems:
                await self._log(
                    f"{vm.name}: removed the previous reference snapshot", task_id=task_id
                )

    async def _merge(self, vm: VmChoice, result: VmResult, task_id: int) -> None:
        """Apply retention after the transfer; a failure is logged, not fatal to the point."""
        await self._update_task(task_id, stage=Stage.MERGE)
        started = time.monotonic()
        try:
            pruned = await self.datastore.prune(vm.uuid, self.spec.retention)
        except Exception as exc:
            result.error = f"merge failed: {describe_error(exc)}"
            await self._log(f"{vm.name}: {result.error}", level="error", task_id=task_id)
            await self._update_task(task_id, stage=Stage.DONE, error=result.error)
            return
        result.merge_seconds = time.monotonic() - started
        result.merged = len(pruned.merged)
        if pruned.merged:
            s = pruned.stats
            await self._log(
                f"{vm.name}: merged {len(pruned.merged)} restore point(s) in "
                f"{result.merge_seconds:.2f}s ({s.blocks} blocks: {s.blocks_shared} shared, "
                f"{s.blocks_copied} copied)",
                task_id=task_id,
            )
        if pruned.damaged:
            result.error = f"merge refused: {pruned.damaged}"
            await self._log(f"{vm.name}: {result.error}", level="error", task_id=task_id)
        if pruned.plan.blocked:
            await self._log(f"{vm.name}: retention: {pruned.plan.blocked}", level="warning")
        if pruned.deferred:
            await self._log(f"{vm.name}: {pruned.deferred}", level="warning")
        await self._update_task(task_id, stage=Stage.DONE, merge_seconds=result.merge_seconds)
