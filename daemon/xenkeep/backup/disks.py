"""Extra virtual disks of the appliance as backup storage.

The daemon cannot format or mount anything itself: it asks the privileged
helper through its client (:mod:`xenkeep.system.helper`); the helper re-lists
the disks and re-checks every argument. This module turns the helper's
answers and refusals into the daemon's error tree. Without the helper
(development, ``make run``) disk management says so and a directory is used
instead. A helper that does not answer in time is a
:class:`~xenkeep.system.helper.HelperTimeoutError` (503), which names the
operation and the time waited.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xenkeep.system import helper
from xenkeep.system.helper import Call, HelperDoor

from .confirm import require_typed


def check_erase_confirmation(device: str, confirm: str) -> None:
    """The typed confirmation of an erase must repeat the device's name."""
    require_typed(device, confirm, "everything on it is erased")


class DiskService:
    """List, format, attach and detach the appliance's backup disk."""

    def __init__(
        self, socket: Path, call: Call = helper.call, *, timeout: float | None = None
    ) -> None:
        """``timeout`` (seconds) bounds every call; None: each operation's own default."""
        self._door = HelperDoor(
            socket,
            call,
            what="disk management",
            hint="on a development machine, use an existing directory instead",
            default_field="device",
            timeout=timeout,
        )

    @property
    def available(self) -> bool:
        """Whether the privileged helper's socket exists (it does on the appliance).

        A blocking stat: from a coroutine, await :meth:`is_available` instead.
        """
        return self._door.socket.exists()

    async def is_available(self) -> bool:
        """:attr:`available`, with the stat off the event loop."""
        return await self._door.is_available()

    async def _ask(self, op: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self._door.ask(op, args)

    async def listing(self) -> dict[str, Any]:
        """``{"disks": [...], "mountpoint": ..., "mounted": {...} | None}``."""
        return await self._ask("storage.disks")

    async def format(self, device: str, confirm: str) -> dict[str, Any]:
        """Erase ``device``, make it XFS with reflink and mount it; the typed
        ``confirm`` must repeat the device name."""
        # Checked here too so a mistyped confirmation never reaches root.
        check_erase_confirmation(device, confirm)
        return await self._ask("storage.format", {"device": device, "confirm": confirm.strip()})

    async def attach(self, device: str) -> dict[str, Any]:
        """Mount the filesystem already on ``device`` (a disk from another appliance)."""
        return await self._ask("storage.attach", {"device": device})

    async def detach(self) -> dict[str, Any]:
        """Unmount the backup disk and forget its mount unit."""
        return await self._ask("storage.detach")
