"""Carrying out a validated request on the system: network, NTP, backup disk.

The helper's server (:mod:`.server`) hands each request here once
:mod:`.request` has validated it. Network and NTP changes go through
checkpoints (:mod:`.checkpoint`: undone unless confirmed) over the files of
:mod:`.netfiles`; the first boot (:mod:`xenkeep.system.firstboot`) writes its
vm-data seeds through the same files with :meth:`Applier.seed`, so the web
UI, the console and deploy scripts share one path. Commands go through
:func:`xenkeep.system.run.output` unless a test passes its own runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

from xenkeep import __version__
from xenkeep.privhelper.checkpoint import BOOT_ID, STATE_DIR, Checkpoints
from xenkeep.privhelper.netfiles import NETWORK, NTP, NetworkFiles
from xenkeep.privhelper.request import Request
from xenkeep.privhelper.storage import BACKUP_MOUNTPOINT, BackupStorage
from xenkeep.system.helper_protocol import CHANGE_OPERATIONS
from xenkeep.system.netconf import NetworkSettings, StaticNetwork
from xenkeep.system.run import Run, output
from xenkeep.system.vmdata import validate_password

#: The console/SSH account; also the daemon's user (sysusers.d/xenkeep.conf).
ACCOUNT = "xenkeep"


async def _read_live() -> dict[str, Any]:
    # pyroute2 is the helper's alone; imported at the first look, so the
    # first boot (which writes files and reads nothing live) never loads it.
    from xenkeep.privhelper.live import read_live

    return await asyncio.to_thread(read_live)


class Applier:
    """Carries out validated requests on the system under ``root``.

    ``root`` is ``/`` on the appliance and a temporary directory in tests;
    ``live`` says whether running services should be told (networkctl,
    systemctl), which the first boot skips for networkd because it has not
    started. Checkpoints are kept in ``state_dir`` (by default
    ``/var/lib/xenkeep-privhelper`` under ``root``). The storage operations
    act on real disks and need ``live``; tests point ``mountpoint`` away
    from ``/srv/xenkeep``, let loop devices count as disks
    (``include_loop``) and give the filesystem to another ``owner``.
    """

    def __init__(
        self,
        root: Path = Path("/"),
        run: Run = output,
        *,
        live: bool = True,
        include_loop: bool = False,
        mountpoint: PurePosixPath = BACKUP_MOUNTPOINT,
        owner: str = ACCOUNT,
        mountinfo: Path = Path("/proc/self/mountinfo"),
        state_dir: Path | None = None,
        boot_id: Path = BOOT_ID,
        read_live: Callable[[], Awaitable[dict[str, Any]]] = _read_live,
    ):
        self._root = root
        self._run = run
        self._live = live
        self._storage = BackupStorage(
            self._path,
            run,
            include_loop=include_loop,
            mountpoint=mountpoint,
            owner=owner,
            mountinfo=mountinfo,
        )
        self.files = NetworkFiles(self._path, run, live=live)
        self.checkpoints = Checkpoints(
            self.files,
            self._path(PurePosixPath(STATE_DIR)) if state_dir is None else state_dir,
            boot_id=boot_id,
            live=read_live if live else None,
        )

    def _path(self, absolute: PurePosixPath) -> Path:
        return self._root / str(absolute).lstrip("/")

    async def start(self) -> None:
        """Take up what a previous helper left: a change waiting for confirmation."""
        await self.checkpoints.resume()

    async def close(self, *, revert_pending: bool = True) -> None:
        """The helper stops: an unconfirmed change goes back (see :meth:`Checkpoints.close`)."""
        await self.checkpoints.close(revert_pending=revert_pending)

    async def apply(self, req: Request, uid: int = 0) -> dict[str, Any]:
        """Do what ``req`` asks for the caller ``uid``; return the result object.

        Raise RequestError when the system's state refuses it (a disk in use,
        a change already pending), RuntimeError when a command fails.
        """
        if req.op == "ping":
            return {"version": __version__}
        if req.op.startswith("storage."):
            return await self._storage.apply(req, live=self._live)
        if req.op == "network.show":
            return await self.checkpoints.show()
        if req.op in CHANGE_OPERATIONS:
            return await self.checkpoints.change(req, uid)
        if req.op == "network.confirm":
            return await self.checkpoints.confirm(req.checkpoint)
        assert req.op == "network.revert", req.op
        return await self.checkpoints.revert(req.checkpoint)

    async def seed(self, static: StaticNetwork | None, ntp: tuple[str, ...]) -> None:
        """The first boot's vm-data: write the files as they are, no checkpoint.

        Before networkd starts, so it reads them at its start. timesyncd is
        no longer waited for (it would hold the whole boot behind this), so
        an NTP seed queues its restart when ``live``.
        """
        parts = [NETWORK, NTP] if ntp else [NETWORK]
        await self.files.write(NetworkSettings(static, ntp), parts)
        if ntp:
            await self.files.reload([NTP], block=False)

    async def set_console_password(self, password: str) -> None:
        """Set the console/SSH account's password: the first boot's vm-data seed only.

        Deliberately no operation of the socket: the account is the daemon's
        user too, so a daemon that could set it could log in over SSH.
        """
        # chpasswd reads "user:password" lines: the same check as vm-data's.
        line = f"{ACCOUNT}:{validate_password(password)}\n"
        # chpasswd hashes with the system's default (yescrypt on bookworm).
        await self._run(["chpasswd"], line.encode())
