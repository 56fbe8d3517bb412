"""The backup disk: list the appliance's extra disks, format, attach, detach.

Backup storage is one of the appliance's extra virtual disks (a whole disk,
named by its bare kernel name, ``xvdb``). Every decision is taken from a
listing read at request time (:mod:`xenkeep.system.blockdev`), never from
what the daemon says it saw.

- ``storage.format`` wipes the disk and makes XFS with reflink (merges share
  extents instead of copying), labelled ``xenkeep-bak``. The typed ``confirm``
  must repeat the device name (checked by :mod:`.request`); the disk must not
  be in use, and nothing may be mounted at the mount point.
- ``storage.attach`` mounts a disk that already holds xfs, ext4 or btrfs
  (a backup disk moved from another appliance) without formatting it.
- Both write ``/etc/systemd/system/srv-xenkeep.mount`` (What= the disk by
  UUID, Where= ``/srv/xenkeep``), enable and start it, and give the root of
  the filesystem to ``xenkeep:xenkeep`` mode 0750 (files another appliance's
  ``xenkeep`` owned follow). When the disk is not mounted, ``/srv/xenkeep``
  is root's (tmpfiles.d/xenkeep.conf), so the daemon cannot fill the root
  filesystem with backups. A mount that fails removes the unit again.
  Refusals name ``device`` or ``confirm`` as the field. mkfs of a large disk
  takes minutes (commands time out after 15): callers wait for the answer.
- ``storage.detach`` stops and disables the mount and removes the unit, so
  the disk can be detached in XenServer. The daemon must have stopped using
  the storage first: a busy filesystem does not unmount, and the error says so.

``storage.disks`` answers with every disk (``in_use`` empty when it may be
formatted, else why not: "holds the root filesystem", "partition xvda1 is
mounted at /boot", "holds part of the btrfs filesystem at /data" for a member
of a filesystem mounted through another device, "read-only", ...), what is
mounted at the mount point now (``mounted``) and what the mount unit names
(``configured``: a configured disk that is not mounted is missing or broken).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from xenkeep.privhelper.files import give, owner_of, write_atomic
from xenkeep.privhelper.request import Request
from xenkeep.system.blockdev import (
    LSBLK_ARGV,
    PARTITION_TABLES,
    SUPPORTED_FSTYPES,
    BlockDevError,
    BlockDisk,
    Signature,
    find_mount,
    mount_unit_name,
    mounted_uuids,
    parse_lsblk,
    parse_wipefs,
    render_mount_unit,
    signature_in_use,
    with_signature,
)
from xenkeep.system.helper_protocol import LONG_TIMEOUT, MOUNT_TIMEOUT, RequestError
from xenkeep.system.run import Run

log = logging.getLogger(__name__)

#: Where the backup disk is mounted on the appliance.
BACKUP_MOUNTPOINT = PurePosixPath("/srv/xenkeep")
UNIT_DIR = PurePosixPath("/etc/systemd/system")
#: XFS labels hold at most 12 characters.
BACKUP_LABEL = "xenkeep-bak"
#: mkfs.xfs refuses smaller filesystems (xfsprogs 5.19 and later).
MIN_FORMAT_SIZE = 300 * 1024 * 1024


class BackupStorage:
    """Carries out the ``storage.*`` operations; see the module's description.

    ``path`` maps an absolute path of the system to the file to touch (the
    applier's root); ``run`` runs commands. Tests point ``mountpoint`` away
    from ``/srv/xenkeep``, let loop devices count as disks (``include_loop``)
    and give the filesystem to another ``owner``.
    """

    def __init__(
        self,
        path: Callable[[PurePosixPath], Path],
        run: Run,
        *,
        include_loop: bool,
        mountpoint: PurePosixPath,
        owner: str,
        mountinfo: Path,
    ) -> None:
        self._run = run
        self._include_loop = include_loop
        self._mountpoint = mountpoint
        self._owner = owner
        self._mountinfo = mountinfo
        self._unit_name = mount_unit_name(mountpoint)
        self._unit_path = path(UNIT_DIR / self._unit_name)

    async def apply(self, req: Request, *, live: bool) -> dict[str, Any]:
        """Do the storage operation ``req``; only a listing works without ``live``."""
        try:
            if req.op == "storage.disks":
                return await self.listing()
            if not live:
                raise RuntimeError("storage operations act on the running system (live)")
            if req.op == "storage.format":
                return await self._format(req.device)
            if req.op == "storage.attach":
                return await self._attach(req.device)
            return await self._detach()
        except BlockDevError as exc:
            raise RuntimeError(str(exc)) from None

    async def _disks(self) -> list[BlockDisk]:
        return (await self._reading())[0]

    async def _reading(self) -> tuple[list[BlockDisk], dict[str, tuple[str, ...]]]:
        """The disks, and the UUIDs of mounted filesystems with their mount points."""
        text = await self._run(LSBLK_ARGV, None)
        disks = parse_lsblk(text, include_loop=self._include_loop)
        mounted = mounted_uuids(text)
        # lsblk takes filesystems from the udev database, which lags behind a
        # fresh mkfs (and is absent without udev): ask the disk itself.
        out = []
        for disk in disks:
            if disk.fstype is None and not disk.partitions and not disk.in_use:
                try:
                    sigs = await self._signatures(disk)
                except (RuntimeError, BlockDevError) as exc:
                    log.warning("cannot probe %s: %s", disk.path, exc)
                    sigs = []
                if sigs:
                    disk = with_signature(disk, sigs[0], mounted)
            out.append(disk)
        return out, mounted

    async def _signatures(self, disk: BlockDisk) -> list[Signature]:
        # Without -a, wipefs only lists what it would erase.
        return parse_wipefs(await self._run(["wipefs", "--json", disk.path], None))

    async def _mounted_entry(self) -> tuple[str, str] | None:
        return await asyncio.to_thread(self._read_mounted_entry)

    def _read_mounted_entry(self) -> tuple[str, str] | None:
        entry = find_mount(self._mountinfo.read_text(), self._mountpoint)
        if entry is None:
            return None
        source = entry.source
        if source.startswith("/"):
            source = os.path.realpath(source)
        return source, entry.fstype

    async def _mounted_from(self, disk: BlockDisk) -> bool:
        entry = await self._mounted_entry()
        return entry is not None and entry[0] == await asyncio.to_thread(
            os.path.realpath, disk.path
        )

    async def _configured(self) -> dict[str, Any] | None:
        try:
            text = await asyncio.to_thread(self._unit_path.read_text)
        except FileNotFoundError:
            return None
        keys = dict(
            line.split("=", 1) for line in text.splitlines() if line.startswith(("What=", "Type="))
        )
        return {
            "uuid": keys.get("What", "").rpartition("/")[2] or None,
            "fstype": keys.get("Type"),
        }

    async def listing(self) -> dict[str, Any]:
        """The disks, what is mounted at the backup mount point, what the unit names."""
        disks = await self._disks()
        mounted = None
        entry = await self._mounted_entry()
        if entry is not None:
            source, fstype = entry
            disk = next((d for d in disks if d.path == source), None)
            uuid = disk.uuid if disk else None
            if disk is not None and uuid is None:
                with contextlib.suppress(RuntimeError, BlockDevError):
                    uuid = next((s.uuid for s in await self._signatures(disk) if s.uuid), None)
            mounted = {
                "device": disk.name if disk else source.rpartition("/")[2],
                "uuid": uuid,
                "fstype": fstype,
            }
        return {
            "disks": [d.to_json() for d in disks],
            "mountpoint": str(self._mountpoint),
            "mounted": mounted,
            "configured": await self._configured(),
        }

    async def _candidate(self, device: str) -> tuple[BlockDisk, dict[str, tuple[str, ...]]]:
        entry = await self._mounted_entry()
        if entry is not None:
            raise RequestError(
                f"{entry[0]} is already mounted at {self._mountpoint} as the backup storage; "
                "detach it first",
                "device",
            )
        disks, mounted = await self._reading()
        disk = next((d for d in disks if d.name == device), None)
        if disk is None:
            names = ", ".join(d.name for d in disks if not d.in_use) or "none"
            raise RequestError(f"there is no disk {device} (free disks: {names})", "device")
        if disk.in_use:
            raise RequestError(f"{device} cannot be used: it {disk.in_use}", "device")
        return disk, mounted

    async def _format(self, device: str) -> dict[str, Any]:
        self._owner_ids()
        disk, _ = await self._candidate(device)
        if disk.size < MIN_FORMAT_SIZE:
            raise RequestError(f"{device} is too small: XFS needs at least 300 MiB", "device")
        log.warning("formatting %s (%d bytes) as the backup storage", disk.path, disk.size)
        await self._run(["wipefs", "-a", disk.path], None, timeout=LONG_TIMEOUT)
        await self._run(
            # -K: no discard of every block first; a new VDI holds nothing to
            # discard, and on thin-provisioned SRs that pass takes minutes.
            ["mkfs.xfs", "-f", "-K", "-m", "reflink=1", "-L", BACKUP_LABEL, disk.path],
            None,
            timeout=LONG_TIMEOUT,
        )
        # -p probes the disk itself, not blkid's cache of what it held before.
        uuid = await self._run(["blkid", "-p", "-s", "UUID", "-o", "value", disk.path], None)
        return await self._mount(disk, uuid.strip(), "xfs")

    async def _attach(self, device: str) -> dict[str, Any]:
        self._owner_ids()
        disk, mounted = await self._candidate(device)
        if disk.partitions:
            raise RequestError(
                f"{device} is partitioned ({', '.join(disk.partitions)}); "
                "XenKeep uses a filesystem on the whole disk",
                "device",
            )
        sigs = await self._signatures(disk)
        if any(s.type in PARTITION_TABLES for s in sigs):
            raise RequestError(f"{device} holds a partition table, not a filesystem", "device")
        if not sigs:
            raise RequestError(
                f"{device} has no filesystem: format it to use it as backup storage", "device"
            )
        fs = sigs[0]
        # The probe is fresher than the listing: a member of a mounted
        # multi-device filesystem must not be mounted a second time here (a
        # btrfs root would come up at the mount point, its root the daemon's).
        reason = signature_in_use(fs, mounted)
        if reason:
            raise RequestError(f"{device} cannot be used: it {reason}", "device")
        if fs.type not in SUPPORTED_FSTYPES:
            raise RequestError(
                f"{device} holds {fs.type}; XenKeep attaches only " + ", ".join(SUPPORTED_FSTYPES),
                "device",
            )
        if fs.uuid is None:
            raise RequestError(f"the {fs.type} filesystem on {device} has no UUID", "device")
        return await self._mount(disk, fs.uuid, fs.type)

    def _owner_ids(self) -> tuple[int, int]:
        try:
            user = pwd.getpwnam(self._owner)
        except KeyError:
            raise RuntimeError(
                f"there is no user {self._owner} to own the backup storage"
            ) from None
        return user.pw_uid, user.pw_gid

    async def _mount(self, disk: BlockDisk, uuid: str, fstype: str) -> dict[str, Any]:
        unit = render_mount_unit(uuid, fstype, self._mountpoint)
        await asyncio.to_thread(write_atomic, self._unit_path, unit)
        try:
            await self._run(["systemctl", "daemon-reload"], None)
            await self._run(
                ["systemctl", "enable", "--now", self._unit_name], None, timeout=MOUNT_TIMEOUT
            )
            if not await self._mounted_from(disk):
                raise RuntimeError(
                    f"{self._unit_name} started but {disk.name} is not mounted at "
                    f"{self._mountpoint}"
                )
            await self._own_root(Path(self._mountpoint))
        except (RuntimeError, OSError) as exc:
            # Leave no unit that would mount a half-set-up disk at the next boot.
            log.error("mounting %s failed, removing %s: %s", disk.name, self._unit_name, exc)
            await self._remove_unit(stop=True)
            raise
        log.info("backup storage: %s (%s %s) at %s", disk.name, fstype, uuid, self._mountpoint)
        return {
            "device": disk.name,
            "uuid": uuid,
            "fstype": fstype,
            "mountpoint": str(self._mountpoint),
        }

    async def _own_root(self, root: Path) -> None:
        new_uid, new_gid = self._owner_ids()
        uid, gid = await asyncio.to_thread(owner_of, root)
        if uid not in (0, new_uid):
            # A disk from another appliance, whose xenkeep had another uid.
            # -P -h: symbolic links on the disk are changed, never followed.
            await self._run(
                [
                    "chown",
                    "-R",
                    "-P",
                    "-h",
                    f"--from={uid}:{gid}",
                    f"{new_uid}:{new_gid}",
                    str(root),
                ],
                None,
                timeout=LONG_TIMEOUT,
            )
        await asyncio.to_thread(give, root, new_uid, new_gid, 0o750)

    async def _remove_unit(self, *, stop: bool) -> None:
        """Best effort: stop, disable and delete the mount unit (after a failure)."""
        for argv in (
            ["systemctl", "stop", self._unit_name] if stop else None,
            ["systemctl", "disable", self._unit_name],
        ):
            if argv is not None:
                with contextlib.suppress(RuntimeError):
                    await self._run(argv, None, timeout=MOUNT_TIMEOUT)
        await asyncio.to_thread(self._unit_path.unlink, missing_ok=True)
        with contextlib.suppress(RuntimeError):
            await self._run(["systemctl", "daemon-reload"], None)

    async def _detach(self) -> dict[str, Any]:
        entry = await self._mounted_entry()
        configured = await asyncio.to_thread(self._unit_path.exists)
        if entry is None and not configured:
            raise RequestError(f"no backup disk is attached at {self._mountpoint}")
        if not configured:
            raise RequestError(
                f"{entry[0] if entry else 'something'} is mounted at {self._mountpoint} "
                "but XenKeep did not mount it; unmount it by hand"
            )
        device = None
        if entry is not None:
            device = entry[0].rpartition("/")[2]
        # Stop first: if the filesystem is busy nothing has changed yet.
        await self._run(["systemctl", "stop", self._unit_name], None, timeout=MOUNT_TIMEOUT)
        if await self._mounted_entry() is not None:
            raise RuntimeError(f"{self._mountpoint} is still mounted (busy?); nothing changed")
        await self._run(["systemctl", "disable", self._unit_name], None)
        await asyncio.to_thread(self._unit_path.unlink)
        await self._run(["systemctl", "daemon-reload"], None)
        log.info("backup storage detached: %s", device or "(was not mounted)")
        return {"device": device, "mountpoint": str(self._mountpoint)}
