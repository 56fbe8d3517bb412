"""The privileged helper: the few root operations the unprivileged daemon needs.

``xenkeepd`` runs as the ``xenkeep`` user with no capability but binding low
ports. What needs root goes through this small service instead, which systemd
starts on demand (``xenkeep-privhelper.socket``, a unix socket owned by
``root:xenkeep``, mode 0660). It accepts a closed list of operations, each
with validated arguments, and nothing else: no paths, no commands, no user
names come from the caller.

Protocol: one JSON object per line, one answer per line.

    request   {"op": "network.static", "args": {"address": "192.0.2.10/24",
               "gateway": "192.0.2.1", "dns": ["192.0.2.53"]}}
    answer    {"ok": true, "result": {...}}
              {"ok": false, "error": "message", "field": "gateway"}

Operations:

    ping               {}                                   -> {"version": ...}
    network.dhcp       {}                                   -> {}
    network.static     {address: "ip/prefix", gateway?: ip, dns?: [ip, ...]}
    ntp.set            {servers: [host, ...]}  (empty list: the defaults)
    account.password   {password: str}   sets the console/SSH account's password
    account.lock       {}                locks it again
    storage.disks      {}                -> {"disks": [disk, ...], "mountpoint": str,
                                             "mounted": {device, uuid, fstype} | null,
                                             "configured": {uuid, fstype} | null}
    storage.format     {device: "xvdb", confirm: "xvdb"}
                                         -> {device, uuid, fstype: "xfs", mountpoint}
    storage.attach     {device: "xvdb"}  -> {device, uuid, fstype, mountpoint}
    storage.detach     {}                -> {device | null, mountpoint}

Backup storage: the appliance's extra virtual disks (whole disks, named by
their bare kernel name, ``xvdb``). A ``disk`` is
:meth:`xenkeep.system.blockdev.BlockDisk.to_json`: name, path, size, model,
serial, fstype, label, uuid, mountpoints, partitions and ``in_use`` (empty
when the disk may be formatted, else why not: "holds the root filesystem",
"partition xvda1 is mounted at /boot", "read-only", ...). ``mounted`` is
what is mounted at the mount point now, ``configured`` what the mount unit
names (a configured disk that is not mounted is missing or broken).

- ``storage.format`` wipes the disk and makes XFS with reflink (merges share
  extents instead of copying), labelled ``xenkeep-bak``. The typed ``confirm``
  must repeat the device name. The device is looked up in a listing read at
  request time, never taken on trust, and must not be in use; nothing may be
  mounted at the mount point.
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

The first boot (:mod:`xenkeep.system.firstboot`) applies vm-data seeds with
the same :class:`Applier`, so the web UI and deploy scripts share one path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from xenkeep import __version__
from xenkeep.system.blockdev import (
    DEVICE_NAME,
    LSBLK_ARGV,
    PARTITION_TABLES,
    SUPPORTED_FSTYPES,
    BlockDevError,
    BlockDisk,
    find_mount,
    mount_unit_name,
    parse_lsblk,
    parse_wipefs,
    render_mount_unit,
    with_signature,
)
from xenkeep.system.netconf import (
    NETWORK_FILE,
    TIMESYNCD_FILE,
    NetconfError,
    StaticNetwork,
    parse_ntp_servers,
    parse_static_network,
    render_network,
    render_timesyncd,
)
from xenkeep.system.vmdata import validate_password

log = logging.getLogger(__name__)

SOCKET_PATH = Path("/run/xenkeep-privhelper.sock")
#: The console/SSH account; also the daemon's user (sysusers.d/xenkeep.conf).
ACCOUNT = "xenkeep"
MAX_REQUEST = 16 * 1024
OPERATIONS = (
    "ping",
    "network.dhcp",
    "network.static",
    "ntp.set",
    "account.password",
    "account.lock",
    "storage.disks",
    "storage.format",
    "storage.attach",
    "storage.detach",
)
#: Where the backup disk is mounted on the appliance.
BACKUP_MOUNTPOINT = PurePosixPath("/srv/xenkeep")
UNIT_DIR = PurePosixPath("/etc/systemd/system")
#: XFS labels hold at most 12 characters.
BACKUP_LABEL = "xenkeep-bak"
#: mkfs.xfs refuses smaller filesystems (xfsprogs 5.19 and later).
MIN_FORMAT_SIZE = 300 * 1024 * 1024
#: wipefs, mkfs and chown -R of a large disk outlast the default timeout.
LONG_TIMEOUT = 15 * 60.0
#: Starting a mount waits for udev to announce the disk, then for the mount.
MOUNT_TIMEOUT = 5 * 60.0
#: systemd passes socket-activated descriptors from 3 on.
SD_LISTEN_FDS_START = 3


class RequestError(ValueError):
    """A request the helper refuses; ``field`` names the bad argument."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Request:
    """A validated operation and its typed arguments."""

    op: str
    network: StaticNetwork | None = None
    ntp: tuple[str, ...] = ()
    password: str = ""
    device: str = ""


def _args(raw: Mapping[str, Any], allowed: set[str]) -> Mapping[str, Any]:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise RequestError(f"unexpected argument {extra[0]!r}", field=extra[0])
    return raw


def _string(args: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            raise RequestError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise RequestError(f"{name} must be a string", field=name)
    return value


def _string_list(args: Mapping[str, Any], name: str) -> list[str]:
    value = args.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"{name} must be a list of strings", field=name)
    return value


def _device(raw: Mapping[str, Any], *, confirm: bool) -> str:
    args = _args(raw, {"device", "confirm"} if confirm else {"device"})
    device = _string(args, "device")
    assert device is not None
    if not DEVICE_NAME.match(device):
        raise RequestError(
            f"{device!r} is not a disk name (a kernel name such as xvdb, no /dev/)", "device"
        )
    if confirm and _string(args, "confirm", required=False) != device:
        raise RequestError(f"type the disk name {device} to confirm erasing it", "confirm")
    return device


def parse_request(line: bytes) -> Request:
    """Decode and validate one request line; raise RequestError."""
    if len(line) > MAX_REQUEST:
        raise RequestError("request too large")
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RequestError("request is not JSON") from None
    if not isinstance(obj, dict) or set(obj) - {"op", "args"}:
        raise RequestError('request must be {"op": ..., "args": {...}}')
    op = obj.get("op")
    if op not in OPERATIONS:
        raise RequestError(f"unknown operation {op!r}", field="op")
    raw_args = obj.get("args", {})
    if not isinstance(raw_args, dict):
        raise RequestError("args must be an object", field="args")
    try:
        if op in ("ping", "network.dhcp", "account.lock", "storage.disks", "storage.detach"):
            _args(raw_args, set())
            return Request(op)
        if op == "network.static":
            args = _args(raw_args, {"address", "gateway", "dns"})
            address = _string(args, "address")
            assert address is not None
            ip, sep, prefix = address.partition("/")
            if not sep:
                raise RequestError("address needs a prefix length, e.g. 192.0.2.10/24", "address")
            network = parse_static_network(
                ip, prefix, _string(args, "gateway", required=False), _string_list(args, "dns")
            )
            return Request(op, network=network)
        if op == "ntp.set":
            args = _args(raw_args, {"servers"})
            return Request(op, ntp=parse_ntp_servers(_string_list(args, "servers")))
        if op in ("storage.format", "storage.attach"):
            return Request(op, device=_device(raw_args, confirm=op == "storage.format"))
        args = _args(raw_args, {"password"})
        password = _string(args, "password")
        assert password is not None
        try:
            return Request(op, password=validate_password(password))
        except ValueError as exc:
            raise RequestError(str(exc), field="password") from None
    except NetconfError as exc:
        field = {"ip": "address", "netmask": "address"}.get(exc.field, exc.field)
        raise RequestError(str(exc), field=field) from None


class Run(Protocol):
    """How the applier runs a command: argv, optional stdin -> stdout."""

    def __call__(
        self, argv: list[str], stdin: bytes | None = None, /, *, timeout: float = 60.0
    ) -> Awaitable[str]: ...


async def run_command(
    argv: list[str],
    stdin: bytes | None = None,
    *,
    timeout: float = 60.0,  # noqa: ASYNC109
) -> str:
    """Run ``argv`` (never a shell) and return its output.

    Raise RuntimeError with its stderr on failure, or after ``timeout`` seconds.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{argv[0]} timed out") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)


def _owner_of(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def _give(path: Path, uid: int, gid: int, mode: int) -> None:
    os.chown(path, uid, gid)
    path.chmod(mode)


class Applier:
    """Carries out validated requests on the system under ``root``.

    ``root`` is ``/`` on the appliance and a temporary directory in tests;
    ``live`` says whether running services should be told (networkctl,
    systemctl), which the first boot skips because they have not started.
    The storage operations act on real disks and need ``live``; tests point
    ``mountpoint`` away from ``/srv/xenkeep``, let loop devices count as disks
    (``include_loop``) and give the filesystem to another ``owner``.
    """

    def __init__(
        self,
        root: Path = Path("/"),
        run: Run = run_command,
        *,
        live: bool = True,
        include_loop: bool = False,
        mountpoint: PurePosixPath = BACKUP_MOUNTPOINT,
        owner: str = ACCOUNT,
        mountinfo: Path = Path("/proc/self/mountinfo"),
    ):
        self._root = root
        self._run = run
        self._live = live
        self._include_loop = include_loop
        self._mountpoint = mountpoint
        self._owner = owner
        self._mountinfo = mountinfo

    def _path(self, absolute: Any) -> Path:
        return self._root / str(absolute).lstrip("/")

    async def apply(self, req: Request) -> dict[str, Any]:
        """Do what ``req`` asks; return the result object.

        Raise RequestError when the system's state refuses it (a disk in use),
        RuntimeError when a command fails.
        """
        if req.op == "ping":
            return {"version": __version__}
        if req.op.startswith("storage."):
            return await self._storage(req)
        if req.op == "network.dhcp":
            await asyncio.to_thread(self._path(NETWORK_FILE).unlink, missing_ok=True)
            await self._reload_network()
        elif req.op == "network.static":
            assert req.network is not None
            await asyncio.to_thread(
                _write_atomic, self._path(NETWORK_FILE), render_network(req.network)
            )
            await self._reload_network()
        elif req.op == "ntp.set":
            await self.set_ntp(req.ntp)
        elif req.op == "account.password":
            # chpasswd hashes with the system's default (yescrypt on bookworm).
            await self._run(["chpasswd"], f"{ACCOUNT}:{req.password}\n".encode())
        elif req.op == "account.lock":
            await self._run(["usermod", "--lock", ACCOUNT], None)
        return {}

    async def set_ntp(self, servers: tuple[str, ...]) -> None:
        """Write (or remove, for none) the timesyncd drop-in."""
        path = self._path(TIMESYNCD_FILE)
        if servers:
            await asyncio.to_thread(_write_atomic, path, render_timesyncd(servers))
        else:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        if self._live:
            await self._run(["systemctl", "try-restart", "systemd-timesyncd.service"], None)

    async def _reload_network(self) -> None:
        if self._live:
            await self._run(["networkctl", "reload"], None)
            interfaces = await asyncio.to_thread(self._interfaces)
            await self._run(["networkctl", "reconfigure", *interfaces], None)

    def _interfaces(self) -> list[str]:
        return sorted(
            p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(("en", "eth"))
        )

    # Backup storage ------------------------------------------------------

    @property
    def _unit_name(self) -> str:
        return mount_unit_name(self._mountpoint)

    @property
    def _unit_path(self) -> Path:
        return self._path(UNIT_DIR / self._unit_name)

    async def _storage(self, req: Request) -> dict[str, Any]:
        try:
            if req.op == "storage.disks":
                return await self.storage_disks()
            if not self._live:
                raise RuntimeError("storage operations act on the running system (live)")
            if req.op == "storage.format":
                return await self._format(req.device)
            if req.op == "storage.attach":
                return await self._attach(req.device)
            return await self._detach()
        except BlockDevError as exc:
            raise RuntimeError(str(exc)) from None

    async def _disks(self) -> list[BlockDisk]:
        text = await self._run(LSBLK_ARGV, None)
        disks = parse_lsblk(text, include_loop=self._include_loop)
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
                    disk = with_signature(disk, sigs[0])
            out.append(disk)
        return out

    async def _signatures(self, disk: BlockDisk) -> list[Any]:
        # Without -a, wipefs only lists what it would erase.
        return parse_wipefs(await self._run(["wipefs", "--json", disk.path], None))

    def _mounted_entry(self) -> tuple[str, str] | None:
        entry = find_mount(self._mountinfo.read_text(), self._mountpoint)
        if entry is None:
            return None
        source = entry.source
        if source.startswith("/"):
            source = os.path.realpath(source)
        return source, entry.fstype

    def _mounted_from(self, disk: BlockDisk) -> bool:
        entry = self._mounted_entry()
        return entry is not None and entry[0] == os.path.realpath(disk.path)

    def _configured(self) -> dict[str, Any] | None:
        try:
            text = self._unit_path.read_text()
        except FileNotFoundError:
            return None
        keys = dict(
            line.split("=", 1) for line in text.splitlines() if line.startswith(("What=", "Type="))
        )
        return {
            "uuid": keys.get("What", "").rpartition("/")[2] or None,
            "fstype": keys.get("Type"),
        }

    async def storage_disks(self) -> dict[str, Any]:
        """The disks, what is mounted at the backup mount point, what the unit names."""
        disks = await self._disks()
        mounted = None
        entry = await asyncio.to_thread(self._mounted_entry)
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
            "configured": await asyncio.to_thread(self._configured),
        }

    async def _candidate(self, device: str) -> BlockDisk:
        entry = await asyncio.to_thread(self._mounted_entry)
        if entry is not None:
            raise RequestError(
                f"{entry[0]} is already mounted at {self._mountpoint} as the backup storage; "
                "detach it first",
                "device",
            )
        disks = await self._disks()
        disk = next((d for d in disks if d.name == device), None)
        if disk is None:
            names = ", ".join(d.name for d in disks if not d.in_use) or "none"
            raise RequestError(f"there is no disk {device} (free disks: {names})", "device")
        if disk.in_use:
            raise RequestError(f"{device} cannot be used: it {disk.in_use}", "device")
        return disk

    async def _format(self, device: str) -> dict[str, Any]:
        self._owner_ids()
        disk = await self._candidate(device)
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
        disk = await self._candidate(device)
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
        await asyncio.to_thread(_write_atomic, self._unit_path, unit)
        try:
            await self._run(["systemctl", "daemon-reload"], None)
            await self._run(
                ["systemctl", "enable", "--now", self._unit_name], None, timeout=MOUNT_TIMEOUT
            )
            if not await asyncio.to_thread(self._mounted_from, disk):
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
        uid, gid = await asyncio.to_thread(_owner_of, root)
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
        await asyncio.to_thread(_give, root, new_uid, new_gid, 0o750)

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
        entry = await asyncio.to_thread(self._mounted_entry)
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
        if await asyncio.to_thread(self._mounted_entry) is not None:
            raise RuntimeError(f"{self._mountpoint} is still mounted (busy?); nothing changed")
        await self._run(["systemctl", "disable", self._unit_name], None)
        await asyncio.to_thread(self._unit_path.unlink)
        await self._run(["systemctl", "daemon-reload"], None)
        log.info("backup storage detached: %s", device or "(was not mounted)")
        return {"device": device, "mountpoint": str(self._mountpoint)}


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def allowed_uids() -> set[int]:
    """Root and the xenkeep account may talk to the helper."""
    uids = {0}
    with contextlib.suppress(KeyError):
        uids.add(pwd.getpwnam(ACCOUNT).pw_uid)
    return uids


class Server:
    """Serves requests on a listening unix socket, one line at a time."""

    def __init__(self, applier: Applier, allowed: set[int]) -> None:
        self._applier = applier
        self._allowed = allowed
        # One operation at a time: two network changes must not interleave.
        self._lock = asyncio.Lock()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer each request line of one connection."""
        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock)
            if uid not in self._allowed:
                log.warning("refused a connection from uid %d", uid)
                await self._answer(writer, {"ok": False, "error": "permission denied"})
                return
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    await self._answer(writer, {"ok": False, "error": "request too large"})
                    return
                await self._answer(writer, await self._one(line, uid))
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def _one(self, line: bytes, uid: int) -> dict[str, Any]:
        try:
            req = parse_request(line.strip())
        except RequestError as exc:
            return {"ok": False, "error": str(exc), "field": exc.field}
        async with self._lock:
            try:
                result = await self._applier.apply(req)
            except RequestError as exc:
                log.warning("%s refused: %s", req.op, exc)
                return {"ok": False, "error": str(exc), "field": exc.field}
            except (RuntimeError, OSError) as exc:
                log.error("%s failed: %s", req.op, exc)
                return {"ok": False, "error": str(exc), "field": ""}
        if req.op != "ping":
            log.info("%s done for uid %d", req.op, uid)
        return {"ok": True, "result": result}

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, obj: Mapping[str, Any]) -> None:
        writer.write(json.dumps(obj).encode() + b"\n")
        await writer.drain()


async def call(op: str, args: Mapping[str, Any] | None = None, *, path: Path = SOCKET_PATH) -> Any:
    """Client side: send one request and return its result or raise RequestError."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST * 4)
    try:
        writer.write(json.dumps({"op": op, "args": dict(args or {})}).encode() + b"\n")
        await writer.drain()
        answer = json.loads(await reader.readline())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not answer.get("ok"):
        raise RequestError(answer.get("error", "failed"), field=answer.get("field", ""))
    return answer.get("result")


def _listening_socket(path: Path | None) -> socket.socket:
    if path is None and os.environ.get("LISTEN_PID") == str(os.getpid()):
        if int(os.environ.get("LISTEN_FDS", "0")) != 1:
            raise SystemExit("privhelper: expected exactly one socket from systemd")
        return socket.socket(fileno=SD_LISTEN_FDS_START)
    target = path or SOCKET_PATH
    target.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(target))
    target.chmod(0o660)
    sock.listen(16)
    return sock


async def serve(sock: socket.socket, server: Server) -> None:
    """Serve until cancelled."""
    srv = await asyncio.start_unix_server(server.handle, sock=sock, limit=MAX_REQUEST)
    async with srv:
        await srv.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Entry point of xenkeep-privhelper.service."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, help="listen here instead of systemd's socket")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sock = _listening_socket(ns.socket)
    # What is mounted at the backup mount point is read from PID 1's view:
    # in this service's own namespace, ReadWritePaths= bind-mounts the empty
    # /srv/xenkeep onto itself, which would look like a mounted disk.
    applier = Applier(mountinfo=Path("/proc/1/mountinfo"))
    asyncio.run(serve(sock, Server(applier, allowed_uids())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
