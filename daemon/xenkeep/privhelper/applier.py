"""Carrying out a validated request on the system: network, NTP, backup disk.

The helper's server (:mod:`.server`) hands each request here once
:mod:`.request` has validated it; the first boot
(:mod:`xenkeep.system.firstboot`) applies vm-data seeds through the same
:class:`Applier`, so the web UI and deploy scripts share one path. Commands go
through :func:`xenkeep.system.run.output` unless a test passes its own runner.
"""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath
from typing import Any

from xenkeep import __version__
from xenkeep.privhelper.files import write_atomic
from xenkeep.privhelper.request import Request
from xenkeep.privhelper.storage import BACKUP_MOUNTPOINT, BackupStorage
from xenkeep.system.helper_protocol import RequestError
from xenkeep.system.netconf import (
    NETWORK_FILE,
    TIMESYNCD_FILE,
    UnrepresentableError,
    render_network,
    render_timesyncd,
)
from xenkeep.system.run import Run, output
from xenkeep.system.vmdata import validate_password

#: The console/SSH account; also the daemon's user (sysusers.d/xenkeep.conf).
ACCOUNT = "xenkeep"


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
        run: Run = output,
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
        self._storage = BackupStorage(
            self._path,
            run,
            include_loop=include_loop,
            mountpoint=mountpoint,
            owner=owner,
            mountinfo=mountinfo,
        )

    def _path(self, absolute: PurePosixPath) -> Path:
        return self._root / str(absolute).lstrip("/")

    async def apply(self, req: Request) -> dict[str, Any]:
        """Do what ``req`` asks; return the result object.

        Raise RequestError when the system's state refuses it (a disk in use),
        RuntimeError when a command fails.
        """
        if req.op == "ping":
            return {"version": __version__}
        if req.op.startswith("storage."):
            return await self._storage.apply(req, live=self._live)
        if req.op == "network.dhcp":
            await asyncio.to_thread(self._path(NETWORK_FILE).unlink, missing_ok=True)
            await self._reload_network()
        elif req.op == "network.static":
            assert req.network is not None
            try:
                text = render_network(req.network)
            except UnrepresentableError as exc:
                # Validation lets nothing through that gets here; if it did,
                # refusing beats writing a file networkd would read otherwise.
                raise RequestError(str(exc)) from None
            await asyncio.to_thread(write_atomic, self._path(NETWORK_FILE), text)
            await self._reload_network()
        elif req.op == "ntp.set":
            await self.set_ntp(req.ntp)
        return {}

    async def set_console_password(self, password: str) -> None:
        """Set the console/SSH account's password: the first boot's vm-data seed only.

        Deliberately no operation of the socket: the account is the daemon's
        user too, so a daemon that could set it could log in over SSH.
        """
        # chpasswd reads "user:password" lines: the same check as vm-data's.
        line = f"{ACCOUNT}:{validate_password(password)}\n"
        # chpasswd hashes with the system's default (yescrypt on bookworm).
        await self._run(["chpasswd"], line.encode())

    async def set_ntp(self, servers: tuple[str, ...]) -> None:
        """Write (or remove, for none) the timesyncd drop-in."""
        path = self._path(TIMESYNCD_FILE)
        if servers:
            await asyncio.to_thread(write_atomic, path, render_timesyncd(servers))
        else:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        if self._live:
            await self._run(["systemctl", "try-restart", "systemd-timesyncd.service"], None)

    async def _reload_network(self) -> None:
        if self._live:
            await self._run(["networkctl", "reload"], None)
            interfaces = await asyncio.to_thread(_interfaces)
            await self._run(["networkctl", "reconfigure", *interfaces], None)


def _interfaces() -> list[str]:
    return sorted(
        p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(("en", "eth"))
    )
