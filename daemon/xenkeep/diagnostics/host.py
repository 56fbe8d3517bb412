"""What the checks ask of the appliance's operating system, behind one small interface.

Time synchronisation (systemd-timesyncd, read over D-Bus from
``org.freedesktop.timedate1`` and ``org.freedesktop.timesync1``), units in the
failed state (``org.freedesktop.systemd1``) and errors in the journal.
:class:`SystemdHost` is the real one; on a machine without systemd (``make
run`` in a container, a laptop) it raises :class:`NotAvailableHereError`,
which the checks report as a warning saying "not available here": XenKeep
could not look, so it does not claim all is well, and it is not a fault of
the appliance either. Tests that need a host in a chosen state use a stand-in
that says so in its name (``tests/support/host.py``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Final, Protocol

from xenkeep.errors import XenKeepError
from xenkeep.system.dbus import BusError, BusUnavailableError, SystemBus
from xenkeep.system.journal import Journal

TIMEDATE: Final = ("org.freedesktop.timedate1", "/org/freedesktop/timedate1")
TIMESYNC: Final = ("org.freedesktop.timesync1", "/org/freedesktop/timesync1")
SYSTEMD: Final = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1")


class NotAvailableHereError(XenKeepError):
    """This machine cannot answer (no system bus, no journal)."""

    code = "not_available_here"


@dataclass(frozen=True, slots=True)
class TimeSync:
    """What systemd says about the clock."""

    #: The kernel's clock is synchronised (timedated's NTPSynchronized).
    synchronized: bool
    #: Network time is switched on (timedated's NTP).
    ntp_enabled: bool
    #: The server timesyncd uses now ("" when none).
    server: str = ""


class HostOS(Protocol):
    """The operating system facts the checks need."""

    async def time_sync(self) -> TimeSync:
        """The clock's synchronisation, or NotAvailableHereError."""
        ...

    async def failed_units(self) -> list[str]:
        """Names of the units in the failed state, or NotAvailableHereError."""
        ...

    async def journal_errors(self, since: float) -> Counter[str]:
        """Error entries since ``since`` by unit, or NotAvailableHereError."""
        ...


class SystemdHost:
    """:class:`HostOS` over the system bus and the journal."""

    def __init__(self, bus: SystemBus, journal: Journal) -> None:
        self.bus = bus
        self.journal = journal

    async def time_sync(self) -> TimeSync:
        try:
            synced = await self.bus.get_property(*TIMEDATE, TIMEDATE[0], "NTPSynchronized")
            enabled = await self.bus.get_property(*TIMEDATE, TIMEDATE[0], "NTP")
        except BusUnavailableError as exc:
            raise NotAvailableHereError(exc.message) from None
        server = ""
        # timesyncd not running: the timedated answer says enough.
        with contextlib.suppress(BusError):
            server = str(
                await self.bus.get_property(*TIMESYNC, TIMESYNC[0] + ".Manager", "ServerName")
            )
        return TimeSync(bool(synced), bool(enabled), server)

    async def failed_units(self) -> list[str]:
        try:
            answer = await self.bus.call(
                *SYSTEMD, SYSTEMD[0] + ".Manager", "ListUnitsFiltered", "as", "1", "failed"
            )
        except BusUnavailableError as exc:
            raise NotAvailableHereError(exc.message) from None
        units = answer[0] if answer else []
        return sorted(str(u[0]) for u in units if isinstance(u, list) and u)

    async def journal_errors(self, since: float) -> Counter[str]:
        why = await self.journal.unavailable()
        if why is not None:
            raise NotAvailableHereError(why)
        return await self.journal.error_counts(since)
