"""The clock: synchronised by systemd-timesyncd, and close to each pool master's."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Final

from xenkeep.diagnostics.check import Check, Finding, failure, ok, warning
from xenkeep.diagnostics.host import NotAvailableHereError
from xenkeep.diagnostics.sources import Sources
from xenkeep.pools.pool import Pool

from .pools import NOT_CONNECTED, each_pool, live_client, master_of

#: Clock differences: a warning above the first, a failure above the second
#: (XAPI datetimes have one-second resolution).
SKEW_WARN: Final = 10.0
SKEW_FAIL: Final = 60.0
_XAPI_TIME: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?Z?$")

NOT_HERE_REMEDY: Final = (
    "This machine has no systemd to ask (development, a container): nothing to do here. "
    "On the appliance this check reads systemd over D-Bus."
)


def parse_xapi_time(text: str) -> float:
    """An XAPI datetime (``20240510T12:34:56Z``, UTC) as a Unix time."""
    m = _XAPI_TIME.match(str(text).strip())
    if not m:
        raise ValueError(f"not an XAPI datetime: {text!r}")
    y, mo, d, h, mi, sec = (int(g) for g in m.groups())
    return dt.datetime(y, mo, d, h, mi, sec, tzinfo=dt.UTC).timestamp()


async def time_sync(s: Sources) -> list[Finding]:
    try:
        sync = await s.host.time_sync()
    except NotAvailableHereError as exc:
        return [warning(f"not available here: {exc.message}", NOT_HERE_REMEDY)]
    server = f" with {sync.server}" if sync.server else ""
    if not sync.ntp_enabled:
        return [
            failure(
                "network time is switched off",
                "Switch it on with `xenkeep ntp SERVERS...` on the console, or "
                "`timedatectl set-ntp true` as root.",
            )
        ]
    if not sync.synchronized:
        return [
            failure(
                f"not synchronised{server}",
                "timesyncd reaches no time server: check the NTP servers (`xenkeep ntp`) "
                "and that UDP port 123 is open towards them. Schedules and snapshots "
                "follow this clock.",
            )
        ]
    return [ok(f"synchronised{server}")]


async def skew(s: Sources, pool: Pool) -> Finding:
    client = live_client(s, pool)
    if client is None:
        return warning("not measured: not connected", NOT_CONNECTED)
    master = await master_of(client)
    sent = time.monotonic()
    before = s.clock()
    answer = await client.call("host.get_servertime", master)
    rtt = time.monotonic() - sent
    # The master read its clock somewhere in the round trip: compare with the middle.
    diff = parse_xapi_time(answer) - (before + rtt / 2)
    words = f"the master's clock is {abs(diff):.0f} s {'ahead' if diff > 0 else 'behind'}"
    if abs(diff) < 1.5 + rtt:
        words = "within a second of the appliance"
    remedy = (
        "The appliance and the pool master disagree on the time: check the time servers "
        "of both (on the appliance `xenkeep ntp`). Snapshots, schedules and reports "
        "carry times from both clocks."
    )
    if abs(diff) > SKEW_FAIL + rtt:
        return failure(words, remedy)
    if abs(diff) > SKEW_WARN + rtt:
        return warning(words, remedy)
    return ok(words)


CHECKS: Final = (
    Check("time.sync", "Clock synchronised (timesyncd)", time_sync),
    Check("time.skew", "Clock against the pool master", each_pool(skew)),
)
