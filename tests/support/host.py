"""A stand-in for the appliance's OS as the diagnostics see it (timesyncd,
failed units, journal errors), for tests that need a state this machine
cannot be put in: it has no systemd. Its name says what it is."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from xenkeep.diagnostics.host import TimeSync


@dataclass
class HostStandIn:
    """:class:`xenkeep.diagnostics.host.HostOS` answering what the test set."""

    sync: TimeSync = field(default_factory=lambda: TimeSync(True, True, "ntp.test"))
    failed: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    async def time_sync(self) -> TimeSync:
        return self.sync

    async def failed_units(self) -> list[str]:
        return list(self.failed)

    async def journal_errors(self, since: float) -> Counter[str]:
        return Counter(self.errors)
