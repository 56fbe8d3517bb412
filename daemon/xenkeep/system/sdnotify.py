"""Telling systemd how the daemon is doing (Type=notify, watchdog).

Uses systemd-python (Debian's python3-systemd on the appliance). Outside
systemd ``NOTIFY_SOCKET`` is unset and every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

try:
    from systemd import daemon as _sd_daemon
except ImportError:  # pragma: no cover - the appliance and the test venv have it
    _sd_daemon = None

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send one sd_notify message; True when systemd listens."""
    if not os.environ.get("NOTIFY_SOCKET") or _sd_daemon is None:
        return False
    return bool(_sd_daemon.notify(state))


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd asks for, in seconds, or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.1)
    except ValueError:
        return None


@contextlib.asynccontextmanager
async def watchdog() -> AsyncIterator[None]:
    """Ping the watchdog from the event loop while the context is open.

    Pinging from the loop itself means a blocked loop stops the pings and
    systemd restarts the daemon, which is the point of the watchdog.
    """
    interval = watchdog_interval()
    task: asyncio.Task[None] | None = None

    async def ping() -> None:
        assert interval is not None
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    if interval is not None:
        task = asyncio.create_task(ping())
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
