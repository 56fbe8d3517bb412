"""The backup storage: the datastore in use, and the disks that can become it.

Formatting and attaching a disk are operations (they call the privileged
helper, and ``mkfs`` of a large disk takes minutes); swapping to another
directory and detaching are short. All of them claim the storage
exclusively, so nothing changes it while a backup, a restore or a verify
reads or writes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.ops import OperationContext, OperationKind, Operations
from xenkeep.ops.manager import Outcome
from xenkeep.repo.datastore import Datastore
from xenkeep.repo.errors import NoDatastoreError, RepoError
from xenkeep.repo.layout import DiskRecord, RestorePoint, VmDir
from xenkeep.store import Database

from .disks import DiskService, check_erase_confirmation
from .kinds import CHANGES_STORAGE, DISK_ATTACH, DISK_FORMAT, DiskStage

log = logging.getLogger(__name__)

DATASTORE_KEY: Final = "backup.datastore"
#: Below this share of free space the storage pages warn: a full datastore
#: fails the next runs, and merges need room for the delta they move.
LOW_SPACE_RATIO: Final = 0.10
CHANGE_ACTION: Final = "change the backup storage"


def _disk_facts(vmdir: VmDir, d: DiskRecord) -> dict[str, Any]:
    """One disk of a point: what it is now, how it was taken, its file's size
    (blocking: reads the VHD's footer and header only)."""
    kind, size = vmdir.file_kind(d.key, d.file)
    return {
        "key": d.key,
        "virtual_size": d.virtual_size,
        "type": kind,
        "transfer": d.transfer,
        "bytes": d.transferred_bytes,
        "blocks": d.blocks,
        "size": size,
        "name": str(d.vdi.get("name_label", "")),
    }


def point_type(disks: list[dict[str, Any]]) -> str:
    """full, delta, or the mix of a point's disks (``full+delta``)."""
    kinds = sorted({str(d["type"]) for d in disks})
    return "+".join(kinds) if kinds else "empty"


class BackupStorage:
    """Where backups live now, and the appliance's disks that may hold them."""

    def __init__(self, db: Database, ops: Operations, disks: DiskService | None = None) -> None:
        self.db = db
        self.ops = ops
        self._disks = disks
        self._datastore: Datastore | None = None
        #: Why the configured datastore could not be opened (disk missing...).
        self._problem: str | None = None

    async def open(self) -> None:
        """At start: open the datastore the settings name, or say why not."""
        path = await self.db.get_setting(DATASTORE_KEY)
        if not path:
            return
        try:
            self._datastore = await asyncio.to_thread(Datastore, Path(path))
        except XenKeepError as exc:
            log.error("backup storage %s unusable: %s", path, exc.message)
            self._problem = f"{path}: {exc.message}"
            return
        await self._finish_merges(self._datastore)

    @staticmethod
    async def _finish_merges(datastore: Datastore) -> None:
        """Replay the merges a killed daemon left, before anything lists a point
        (a merge replays one delta: with reflink metadata only, else the
        delta's changed blocks, so this stays short)."""
        for vm, point in (await asyncio.to_thread(datastore.recover_all)).items():
            log.warning("%s: finished the interrupted merge that retires %s", vm, point)

    @property
    def configured(self) -> bool:
        """Whether a datastore is in use."""
        return self._datastore is not None

    @property
    def datastore(self) -> Datastore:
        """The datastore in use, or a RepoError saying to set one up."""
        if self._datastore is None:
            raise NoDatastoreError(
                "no backup storage is configured", hint="initialise one on the storage page"
            )
        return self._datastore

    # ------------------------------------------------------------- directory

    async def use_directory(self, path: str) -> dict[str, Any]:
        """Initialise an existing directory as the datastore (NFS/SMB mounts, development)."""
        # A run writes into the datastore it started with: swapping it under
        # the run would leave that run's chain half in each place.
        async with self.ops.holding([CHANGES_STORAGE], action=CHANGE_ACTION):
            await self._use(path)
        return await self.status()

    async def _use(self, path: str) -> None:
        p = Path(path.strip())
        if not p.is_absolute():
            raise ValidationError("give an absolute directory path", field="path")
        if not await asyncio.to_thread(p.is_dir):
            raise ValidationError(f"{p} is not an existing directory", field="path")
        datastore = await asyncio.to_thread(Datastore.initialise, p)
        await self._finish_merges(datastore)
        self._datastore = datastore
        self._problem = None
        await self.db.set_setting(DATASTORE_KEY, str(p))

    # ----------------------------------------------------------------- disks

    def _disk_service(self) -> DiskService:
        if self._disks is None:
            raise RepoError("this daemon manages no disks", hint="use an existing directory")
        return self._disks

    async def disks(self) -> dict[str, Any]:
        """The appliance's disks as the privileged helper sees them.

        ``available`` is False where there is no helper (development).
        """
        if self._disks is None or not await self._disks.is_available():
            return {"available": False, "disks": [], "mounted": None, "mountpoint": None}
        return {"available": True, **await self._disks.listing()}

    async def _known_disk(self, device: str) -> None:
        """Refuse, before anything starts, a disk the helper does not list or that is in use."""
        listing = await self._disk_service().listing()
        disk = next((d for d in listing.get("disks", []) if d.get("name") == device), None)
        if disk is None:
            raise ValidationError(f"the appliance has no disk named {device}", field="device")
        if disk.get("in_use"):
            raise ValidationError(f"{device} cannot be used: {disk['in_use']}", field="device")

    async def start_format(self, device: str, confirm: str) -> int:
        """Start erasing ``device`` into XFS with reflink as the datastore; the operation id."""
        check_erase_confirmation(device, confirm)
        service = self._disk_service()

        async def prepare(ctx: OperationContext) -> dict[str, Any]:
            await ctx.stage(DiskStage.ERASE)
            await ctx.log(f"erasing {device} and making XFS with reflink on it")
            result = await service.format(device, confirm)
            log.warning("disk %s formatted as backup storage (%s)", device, result.get("uuid"))
            await ctx.log(f"{device} holds a new XFS filesystem {result.get('uuid')}")
            return result

        return await self._start_disk(DISK_FORMAT, "format", device, prepare)

    async def start_attach(self, device: str) -> int:
        """Start mounting the filesystem on ``device`` (no format) as the datastore."""
        service = self._disk_service()

        async def prepare(ctx: OperationContext) -> dict[str, Any]:
            await ctx.stage(DiskStage.MOUNT)
            await ctx.log(f"mounting the filesystem on {device}")
            result = await service.attach(device)
            log.info("disk %s attached as backup storage (%s)", device, result.get("uuid"))
            return result

        return await self._start_disk(DISK_ATTACH, "attach", device, prepare)

    async def _start_disk(
        self,
        kind: OperationKind,
        verb: str,
        device: str,
        prepare: Callable[[OperationContext], Awaitable[dict[str, Any]]],
    ) -> int:
        """A disk becomes the datastore as an operation: ``prepare`` has the
        helper mount it, then the datastore there is opened."""
        await self._known_disk(device)

        async def work(ctx: OperationContext) -> Outcome:
            return await self._open_mounted(ctx, device, await prepare(ctx))

        return await self.ops.start(
            kind,
            work,
            target=f"disk:{device}",
            title=f"{verb} {device}",
            action=f"{verb} {device}",
            claims=[CHANGES_STORAGE],
            params={"device": device},
        )

    async def _open_mounted(
        self, ctx: OperationContext, device: str, result: dict[str, Any]
    ) -> Outcome:
        mountpoint = str(result["mountpoint"])
        await ctx.log(f"{device} is mounted at {mountpoint}")
        await ctx.stage(DiskStage.OPEN)
        await self._use(mountpoint)
        status = await self.status()
        await ctx.log(f"backup storage ready: {len(status.get('vms', []))} VM(s) with backups")
        return Outcome(report={"device": device, **result, "storage": status})

    async def detach_disk(self) -> dict[str, Any]:
        """Unmount the backup disk so it can be detached from the VM; nothing is erased."""
        async with self.ops.holding([CHANGES_STORAGE], action="detach the backup storage"):
            service = self._disk_service()
            listing = await service.listing()
            mountpoint = listing.get("mountpoint")
            # Dropped before the unmount so nothing uses it meanwhile, and
            # given back if the helper refuses (a busy disk stays as it was).
            dropped = self._datastore
            if dropped is not None and str(dropped.root) == mountpoint:
                self._datastore = None
                await self.db.execute("DELETE FROM settings WHERE key = ?", (DATASTORE_KEY,))
            else:
                dropped = None
            try:
                await service.detach()
            except BaseException:
                if dropped is not None:
                    self._datastore = dropped
                    await self.db.set_setting(DATASTORE_KEY, str(dropped.root))
                raise
        log.info("backup disk detached from %s", mountpoint)
        return await self.status()

    async def changes(self, limit: int = 5) -> list[dict[str, Any]]:
        """The recent disk formats and attaches, newest first."""
        return await self.ops.find(kinds=[DISK_FORMAT.kind, DISK_ATTACH.kind], limit=limit)

    # ------------------------------------------------------------------ read

    async def status(self) -> dict[str, Any]:
        """Capacity, used, free, reflink and per-VM usage, or ``configured: False``."""
        ds = self._datastore
        if ds is None:
            return {"configured": False, "problem": self._problem}

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
        """Restore points of a VM, oldest first (only committed ones exist).

        Each disk says what its point **is** now (``type``: a full, or a
        delta on an older point: merges turn the oldest delta into a full)
        and how it **was taken** (``transfer``), with the ``size`` of the
        point's own file; the point's ``type`` is full when every disk is.
        ``damage`` is what a read of the point meets (disk, file, reason,
        block numbers; empty when none was found).
        """
        ds = self.datastore

        def gather() -> list[dict[str, Any]]:
            vmdir = ds.vmdir(vm_uuid)
            found: dict[str, list[dict[str, Any]]] = {}
            for d in ds.damage(vm_uuid):
                found.setdefault(d.point_id, []).append(
                    {"disk": d.disk, "file": d.file, "reason": d.reason, "blocks": list(d.blocks)}
                )
            out = []
            for p in vmdir.list_points():
                disks = [_disk_facts(vmdir, d) for d in p.disks]
                out.append(
                    {
                        "id": p.id,
                        "seq": p.seq,
                        "created": p.created,
                        "vm_name": p.vm.get("name_label", ""),
                        "job_id": p.job_id,
                        "job_name": str(p.vm.get("xenkeep", {}).get("job_name", "")),
                        "type": point_type(disks),
                        "size": sum(int(d["size"] or 0) for d in disks),
                        "disks": disks,
                        "damage": found.get(p.id, []),
                    }
                )
            return out

        return await asyncio.to_thread(gather)

    async def point(self, vm_uuid: str, point_id: str) -> RestorePoint:
        """One restore point, or PointNotFoundError (ValidationError for an id
        that cannot be one)."""
        ds = self.datastore
        try:
            return await asyncio.to_thread(lambda: ds.vmdir(vm_uuid).load_point(point_id))
        except ValueError as exc:
            raise ValidationError(str(exc), field="point_id") from None

    async def backed_up_vms(self) -> list[dict[str, Any]]:
        """VMs with restore points, with their newest name and point count."""
        ds = self.datastore

        def gather() -> list[dict[str, Any]]:
            out = []
            for v in ds.vms():
                pts = ds.points(v)
                if pts:
                    newest = pts[-1]
                    out.append(
                        {
                            "vm_uuid": v,
                            "name": newest.vm.get("name_label", ""),
                            "points": len(pts),
                            "newest": newest.created,
                            "newest_id": newest.id,
                            # The job that made the newest point (it may be gone).
                            "job_id": newest.job_id,
                            "job_name": str(newest.vm.get("xenkeep", {}).get("job_name", "")),
                        }
                    )
            return out

        return await asyncio.to_thread(gather)
