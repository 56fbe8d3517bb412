"""Extra virtual disks of the appliance as backup storage.

The daemon cannot format or mount anything itself: it asks the privileged
helper (:mod:`xenkeep.system.privhelper`), which re-lists the disks and
re-checks every argument. This module turns the helper's answers and
refusals into the daemon's error tree. Without the helper (development,
``make run``) disk management says so and a directory is used instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from xenkeep.errors import UnavailableError, ValidationError
from xenkeep.system import privhelper

Call = Callable[..., Awaitable[Any]]


class DiskService:
    """List, format, attach and detach the appliance's backup disk."""

    def __init__(self, socket: Path, call: Call = privhelper.call) -> None:
        self._socket = socket
        self._call = call

    async def available(self) -> bool:
        """Whether the privileged helper's socket exists (it does on the appliance)."""
        return await asyncio.to_thread(self._socket.exists)

    async def _ask(self, op: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if not await self.available():
            raise UnavailableError(
                "disk management needs the appliance's privileged helper, which is not running",
                hint="on a development machine, use an existing directory instead",
            )
        try:
            result = await self._call(op, args or {}, path=self._socket)
        except privhelper.RequestError as exc:
            raise ValidationError(str(exc), field=exc.field or "device") from None
        except (OSError, ValueError) as exc:
            raise UnavailableError(f"the privileged helper did not answer: {exc}") from None
        return dict(result or {})

    async def listing(self) -> dict[str, Any]:
        """``{"disks": [...], "mountpoint": ..., "mounted": {...} | None}``."""
        return await self._ask("storage.disks")

    async def format(self, device: str, confirm: str) -> dict[str, Any]:
        """Erase ``device``, make it XFS with reflink and mount it; the typed
        ``confirm`` must repeat the device name."""
        if confirm.strip() != device:
            # Checked here too so a mistyped confirmation never reaches root.
            raise ValidationError(
                f"type {device} to confirm that everything on it is erased", field="confirm"
            )
        return await self._ask("storage.format", {"device": device, "confirm": confirm.strip()})

    async def attach(self, device: str) -> dict[str, Any]:
        """Mount the filesystem already on ``device`` (a disk from another appliance)."""
        return await self._ask("storage.attach", {"device": device})

    async def detach(self) -> dict[str, Any]:
        """Unmount the backup disk and forget its mount unit."""
        return await self._ask("storage.detach")
