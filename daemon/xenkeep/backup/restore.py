"""Restoring a restore point into a pool: a new VM, or one disk.

The disk is reconstructed from the chain as one dynamic VHD streamed
straight into ``PUT /import_raw_vdi?format=vhd`` (only present blocks travel;
nothing is staged on disk). The new VM is ``VM.create`` from the VM record
saved with the point, with fresh disks (``VDI.create`` on the chosen SR) and,
when asked, VIFs on mapped networks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.formats.vhd import VhdStream, vhd_timestamp
from xenkeep.jobs.fields import plain_text
from xenkeep.jobs.streams import Progress
from xenkeep.ops import OperationContext
from xenkeep.repo.datastore import Datastore
from xenkeep.repo.layout import RestorePoint, check_key, check_uuid
from xenkeep.repo.reader import DiskReader, describe_findings
from xenkeep.units import human_bytes, number_ranges
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import TransferError, XapiFailure
from xenkeep.xapi.records import disk_vbd, new_vdi, new_vif, vm_create_fields
from xenkeep.xapi.transfer import connection_broke, import_raw_vdi

from .const import RESTORING_KEY, RunStatus, Stage
from .runbase import RunBase
from .runner import describe_error

#: Whole-disk import attempts when the connection breaks (an import cannot resume).
IMPORT_ATTEMPTS: Final = 3


class RestoreFailed(XenKeepError):
    """A restore could not finish; the message says what happened."""

    code = "restore_failed"


@dataclass
class RestoreRequest:
    """What to restore where."""

    pool_id: str
    vm_uuid: str
    point_id: str
    sr_uuid: str
    name: str = ""
    #: Only this disk, as a new VDI (not attached); None = the whole VM.
    disk: str | None = None
    #: Source network uuid → target network uuid; VIFs of unmapped networks
    #: are created on the same network if it exists in the target pool.
    networks: dict[str, str] = field(default_factory=dict)
    with_networks: bool = True
    #: "Restore what can be read": damaged blocks become zeros and are listed,
    #: blocks whose checksums cannot be read go unchecked and are listed.
    #: Without it a restore stops before a damaged block reaches the pool.
    salvage: bool = False
    #: Keys the new VM keeps in its other_config (a health check's mark,
    #: set before the VM exists so that a kill never leaves it unmarked).
    marks: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (stored as the run's parameters)."""
        return {
            "pool_id": self.pool_id,
            "vm_uuid": self.vm_uuid,
            "point_id": self.point_id,
            "sr_uuid": self.sr_uuid,
            "name": self.name,
            "disk": self.disk,
            "networks": self.networks,
            "with_networks": self.with_networks,
            "salvage": self.salvage,
        }

    @classmethod
    def from_input(cls, data: Mapping[str, Any]) -> RestoreRequest:
        """Validate user input."""
        out = {}
        for key in ("pool_id", "vm_uuid", "point_id", "sr_uuid"):
            value = str(data.get(key, "")).strip()
            if not value:
                raise ValidationError(f"{key} is required", field=key)
            out[key] = value
        try:
            out["vm_uuid"] = check_uuid(out["vm_uuid"])
        except ValueError:
            raise ValidationError(f"{out['vm_uuid']!r} is not a VM uuid", field="vm_uuid") from None
        try:
            check_key(out["point_id"], "restore point id")
        except ValueError:
            raise ValidationError(
                f"{out['point_id']!r} is not a restore point id (like 20261125T125013Z-000004)",
                field="point_id",
            ) from None
        # The new VM's name reaches the pool and the run's log and report.
        plain_text(str(data.get("name") or ""), "name")
        disk = str(data.get("disk") or "").strip() or None
        salvage = data.get("salvage", False)
        if not isinstance(salvage, bool):
            raise ValidationError("salvage must be true or false", field="salvage")
        nets = data.get("networks") or {}
        if not isinstance(nets, dict):
            raise ValidationError("networks must map source to target uuids", field="networks")
        return cls(
            pool_id=out["pool_id"],
            vm_uuid=out["vm_uuid"],
            point_id=out["point_id"],
            sr_uuid=out["sr_uuid"],
            name=str(data.get("name") or "").strip()[:200],
            disk=disk,
            networks={str(k): str(v) for k, v in nets.items()},
            with_networks=bool(data.get("with_networks", True)),
            salvage=salvage,
        )


_END: Final = object()


@dataclass
class PointStream:
    """One disk of a restore point as a dynamic VHD stream (see :func:`chain_vhd`)."""

    length: int
    chunks: AsyncIterator[bytes]
    #: The checked reader producing it: once the chunks are consumed, what it
    #: found (damaged blocks zeroed, blocks passed unchecked).
    reader: DiskReader


async def chain_vhd(
    datastore: Datastore, vm_uuid: str, point_id: str, key: str, *, salvage: bool = False
) -> PointStream:
    """The disk of a restore point as one dynamic VHD stream.

    A worker thread holds the VM's readers lock (merges wait) and produces
    the stream block by block into a small queue, so memory stays flat. Each
    block is checked as it is read (:mod:`xenkeep.repo.reader`): a damaged one
    ends the stream with :class:`~xenkeep.repo.errors.DamagedDataError` before
    its data is sent, or with ``salvage`` goes as zeros and is listed.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(4)
    opened: asyncio.Future[tuple[int, DiskReader]] = loop.create_future()
    stop = threading.Event()

    def put(item: Any) -> None:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            try:
                fut.result(timeout=0.5)
                return
            except TimeoutError:
                continue
        fut.cancel()

    def produce() -> None:
        try:
            with datastore.open_point_disk(vm_uuid, point_id, key, salvage=salvage) as reader:
                stream = VhdStream(
                    reader.size,
                    uuid=uuidlib.uuid4(),
                    present=reader.present_blocks(),
                    read_block=lambda i: (reader.block(i), None),
                    timestamp=vhd_timestamp(time.time()),
                    block_size=reader.block_size,
                )
                loop.call_soon_threadsafe(opened.set_result, (stream.length, reader))
                for piece in stream:
                    if stop.is_set():
                        return
                    put(piece)
            put(_END)
        except BaseException as exc:
            failure = exc

            def fail_open() -> None:
                if not opened.done():
                    opened.set_exception(failure)

            loop.call_soon_threadsafe(fail_open)
            put(exc)

    worker = asyncio.create_task(asyncio.to_thread(produce))
    try:
        length, reader = await opened
    except BaseException:
        stop.set()
        with contextlib.suppress(BaseException):
            await worker
        raise

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while not queue.empty():
                queue.get_nowait()
            with contextlib.suppress(BaseException):
                await worker

    return PointStream(length, chunks(), reader)


def vm_create_record(point: RestorePoint, name: str) -> dict[str, Any]:
    """The ``VM.create`` argument for a restore of ``point``."""
    rec = vm_create_fields(point.vm)
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(point.created))
    rec["name_label"] = name or f"{point.vm.get('name_label', 'VM')} (restored {when})"
    rec["is_a_template"] = False
    other = dict(rec.get("other_config") or {})
    other.pop("mac_seed", None)
    other["xenkeep-restored-from"] = f"{point.vm_uuid}/{point.id}"
    rec["other_config"] = other
    rec.setdefault("user_version", 1)
    return rec


class RestoreRun(RunBase):
    """One restore; create it per request."""

    def __init__(
        self,
        *,
        ctx: OperationContext,
        request: RestoreRequest,
        client: XapiClient,
        datastore: Datastore,
    ) -> None:
        super().__init__(ctx=ctx, client=client, datastore=datastore)
        self.req = request
        self.created: dict[str, Any] = {}
        #: Per disk, what a salvaging restore met: damaged blocks (zeroed)
        #: and blocks whose checksums could not be read (passed unchecked).
        self.damage: dict[str, dict[str, Any]] = {}

    async def execute(self) -> dict[str, Any]:
        """Restore; returns the report (new VM/VDI refs, bytes, seconds)."""
        req, client = self.req, self.client
        point = await asyncio.to_thread(
            lambda: self.datastore.vmdir(req.vm_uuid).load_point(req.point_id)
        )
        disks = [point.disk(req.disk)] if req.disk else list(point.disks)
        if not req.salvage:
            # Damage an earlier read or verify found refuses the restore before
            # anything is created; what no one found yet stops it on the way.
            await asyncio.to_thread(
                self.datastore.check_point, req.vm_uuid, point.id, [d.key for d in disks]
            )
        sr = str(await client.call("SR.get_by_uuid", req.sr_uuid))
        vm_name = str(point.vm.get("name_label", req.vm_uuid))
        task_id = await self._new_task(vm_uuid=req.vm_uuid, vm_name=vm_name, stage=Stage.CREATE)
        started = time.monotonic()
        new_vm: str | None = None
        new_vm_name: str | None = None
        new_vm_uuid: str | None = None
        new_vdis: list[str] = []
        vdi_uuids: list[str] = []
        try:
            if req.disk is None:
                record = vm_create_record(point, req.name)
                record["other_config"].update(req.marks)
                record["other_config"][RESTORING_KEY] = str(self.run_id)
                new_vm = str(await client.call("VM.create", record))
                new_vm_name = str(record["name_label"])
                self.created["vm"] = new_vm
                new_vm_uuid = str(await client.call("VM.get_uuid", new_vm))
                await self._log(
                    f"created VM {new_vm_name!r} ({new_vm_uuid}) from restore point {point.id}",
                    task_id=task_id,
                )
            for d in disks:
                vdi, vdi_uuid = await self._restore_disk(
                    point, d.key, d.vdi, d.virtual_size, sr, task_id
                )
                new_vdis.append(vdi)
                vdi_uuids.append(vdi_uuid)
                if new_vm is not None:
                    await client.call("VBD.create", disk_vbd(new_vm, vdi, d.key))
            if new_vm is not None and req.with_networks:
                await self._vifs(point, new_vm, task_id)
            # Complete: no longer a leftover for the sweep after a kill.
            if new_vm is not None:
                await client.call("VM.remove_from_other_config", new_vm, RESTORING_KEY)
            for vdi in new_vdis:
                await client.call("VDI.remove_from_other_config", vdi, RESTORING_KEY)
        except BaseException as exc:
            # A half-restored VM is worse than none: remove what was created.
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._undo(new_vm, new_vdis))
            await self._update_task(
                task_id,
                status=RunStatus.CANCELLED.value
                if isinstance(exc, asyncio.CancelledError)
                else RunStatus.FAILED.value,
                error=describe_error(exc) if isinstance(exc, Exception) else "cancelled",
                finished_at=time.time(),
            )
            raise
        seconds = time.monotonic() - started
        moved = sum(self.created.get("per_disk", {}).values())
        await self._update_task(
            task_id,
            status=RunStatus.SUCCESS.value,
            stage=Stage.DONE,
            bytes=moved,
            speed=moved / seconds if seconds > 0 else 0.0,
            eta=0,
            finished_at=time.time(),
            point_id=point.id,
        )
        report = {
            "vm_uuid": req.vm_uuid,
            "vm_name": vm_name,
            "point_id": point.id,
            "new_vm": new_vm,
            "new_vm_uuid": new_vm_uuid,
            "new_vm_name": new_vm_name,
            "new_vdis": new_vdis,
            "new_vdi_uuids": vdi_uuids,
            "bytes": moved,
            "seconds": round(seconds, 3),
            "speed": round(moved / seconds, 1) if seconds > 0 else 0.0,
            "salvage": req.salvage,
        }
        if self.damage:
            report["damage"] = [self.damage[k] for k in sorted(self.damage)]
            report["damage_summary"] = damage_summary(point.id, report["damage"])
        return report

    async def _restore_disk(
        self,
        point: RestorePoint,
        key: str,
        vdi_meta: dict[str, Any],
        size: int,
        sr: str,
        vm_task: int,
    ) -> tuple[str, str]:
        """Create a VDI on ``sr`` and stream the chain's disk ``key`` into it; its ref and uuid."""
        client = self.client
        disk_task = await self._new_task(
            vm_uuid=point.vm_uuid,
            vm_name=str(point.vm.get("name_label", "")),
            stage=Stage.IMPORT,
            parent_id=vm_task,
            disk_key=key,
        )
        vdi = str(
            await client.call(
                "VDI.create",
                new_vdi(
                    sr,
                    size,
                    name=vdi_meta.get("name_label") or f"restored disk {key}",
                    description=f"Restored by XenKeep from restore point {point.id}",
                    other_config={RESTORING_KEY: str(self.run_id)},
                ),
            )
        )
        try:
            # Inside the try: a failing look-up must not leave the new VDI behind.
            vdi_uuid = str(await client.call("VDI.get_uuid", vdi))
            before = sum(self.created.get("per_disk", {}).values())

            async def flush(p: Progress) -> None:
                await self._update_task(
                    disk_task, bytes=p.done, total_bytes=p.total, speed=p.speed, eta=p.eta
                )
                await self.ctx.progress(before + p.done)

            for attempt in range(1, IMPORT_ATTEMPTS + 1):
                stream = await chain_vhd(
                    self.datastore, point.vm_uuid, point.id, key, salvage=self.req.salvage
                )
                length, chunks = stream.length, stream.chunks
                progress = Progress(flush)
                progress.total = length
                try:
                    done = await import_raw_vdi(
                        client, vdi, chunks, fmt="vhd", size=length, progress=progress.update
                    )
                    break
                except (TransferError, XapiFailure) as exc:
                    broke = connection_broke(exc)
                    if broke is None:
                        raise  # the pool refused the data: another attempt would too
                    if attempt == IMPORT_ATTEMPTS:
                        raise RestoreFailed(
                            f"disk {key}: the connection to the pool broke during the import "
                            f"{IMPORT_ATTEMPTS} times; the last time: {broke}",
                            hint="check the network to the pool, then restore again",
                        ) from exc
                    # The import protocol cannot resume: the whole disk again,
                    # into the same new VDI (every block the stream holds is
                    # written again, and nothing else was written).
                    await self._log(
                        f"disk {key}: the connection to the pool broke during import "
                        f"attempt {attempt} ({broke}); importing again from the start",
                        level="warning",
                        task_id=vm_task,
                    )
                finally:
                    await chunks.aclose()  # type: ignore[attr-defined]
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                await asyncio.shield(client.call("VDI.destroy", vdi))
            await self._update_task(
                disk_task,
                status=RunStatus.FAILED.value,
                error=describe_error(exc) if isinstance(exc, Exception) else "cancelled",
                finished_at=time.time(),
            )
            raise
        await progress.finish()
        self.created.setdefault("per_disk", {})[key] = done.bytes
        await self._note_damage(point, key, stream.reader, vm_task)
        await self._update_task(
            disk_task,
            status=RunStatus.SUCCESS.value,
            stage=Stage.DONE,
            bytes=done.bytes,
            total_bytes=length,
            speed=done.bytes / done.seconds if done.seconds > 0 else 0.0,
            eta=0,
            finished_at=time.time(),
        )
        await self._log(
            f"disk {key}: {human_bytes(done.bytes)} imported into new VDI "
            f"{vdi_uuid} in {done.seconds:.1f} s",
            task_id=vm_task,
        )
        return vdi, vdi_uuid

    async def _note_damage(
        self, point: RestorePoint, key: str, reader: DiskReader, vm_task: int
    ) -> None:
        """What a salvaging read of disk ``key`` met, in the log and the report."""
        findings, unchecked = reader.findings, reader.unchecked
        if not reader.zeroed and not unchecked:
            return
        zeroed = sorted(reader.zeroed)
        where = ""
        if zeroed:
            where = await asyncio.to_thread(
                self.datastore.intact_elsewhere,
                point.vm_uuid,
                point.id,
                key,
                [f for f in findings if f.blocks],
            )
        self.damage[key] = {
            "disk": key,
            "zeroed": zeroed,
            "unchecked": unchecked,
            "findings": [dataclasses.asdict(f) for f in findings],
            "intact_copies": where,
        }
        if zeroed:
            await self._log(
                f"disk {key}: damaged blocks {number_ranges(zeroed)} were restored as zeros "
                f"({describe_findings([f for f in findings if f.blocks])}); {where}",
                level="error",
                task_id=vm_task,
            )
        for file, blocks in unchecked.items():
            await self._log(
                f"disk {key}: blocks {number_ranges(blocks)} of {file}.vhd were restored "
                "unchecked: its checksums cannot be read",
                level="error",
                task_id=vm_task,
            )

    async def _vifs(self, point: RestorePoint, vm: str, task_id: int) -> None:
        meta = point.vm.get("xenkeep") or {}
        for vif in meta.get("vifs") or []:
            src = str(vif.get("network_uuid") or "")
            target = self.req.networks.get(src, src)
            try:
                net = await self.client.call("network.get_by_uuid", target)
            except XapiFailure:
                await self._log(
                    f"VIF {vif.get('device')}: network {target} not in this pool; skipped",
                    level="warning",
                    task_id=task_id,
                )
                continue
            await self.client.call(
                "VIF.create",
                new_vif(vm, net, str(vif.get("device", "0")), int(vif.get("MTU") or 1500)),
            )

    async def _undo(self, vm: str | None, vdis: list[str]) -> None:
        for vdi in vdis:
            with contextlib.suppress(XapiFailure):
                await self.client.call("VDI.destroy", vdi)
        if vm is not None:
            with contextlib.suppress(XapiFailure):
                await self.client.call("VM.destroy", vm)


def damage_summary(point_id: str, damage: list[dict[str, Any]]) -> str:
    """The error of a restore that restored what could be read: which point,
    disks and blocks, and where intact copies are."""
    parts = []
    for d in damage:
        if d["zeroed"]:
            blocks = number_ranges(d["zeroed"])
            part = f"disk {d['disk']} blocks {blocks} damaged, restored as zeros"
            if d.get("intact_copies"):
                part += f" ({d['intact_copies']})"
            parts.append(part)
        for file, blocks in (d.get("unchecked") or {}).items():
            parts.append(
                f"disk {d['disk']} blocks {number_ranges(blocks)} restored unchecked "
                f"(the checksums of {file}.vhd cannot be read)"
            )
    return f"restored what could be read from restore point {point_id}: " + "; ".join(parts)
