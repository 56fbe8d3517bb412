"""What the diagnostics pages and API share: reading a log query, streaming a bundle."""

from __future__ import annotations

import datetime as dt
import re
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from xenkeep.errors import ValidationError
from xenkeep.system.journal import MAX_ENTRIES, JournalQuery, parse_priority
from xenkeep.web import keys

#: systemd unit names: letters, digits and ``:-_.\@`` (systemd.unit(5)).
UNIT_NAME: Final = re.compile(r"^[A-Za-z0-9:_.\\@-]{1,255}$")
MAX_UNITS: Final = 20


def parse_time(raw: str, name: str, zone: str) -> float | None:
    """A Unix time, an ISO 8601 time, or a local ``YYYY-MM-DDTHH:MM`` (the
    page's datetime fields) read in the appliance's zone; None when empty."""
    text = raw.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{name}: give a time as 2024-05-10T14:00 or a Unix time", field=name
        ) from None
    if when.tzinfo is None:
        try:
            when = when.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


async def log_query(request: web.Request, *, default_limit: int = 500) -> JournalQuery:
    """The journal query of ``?unit=&priority=&since=&until=&limit=``."""
    q = request.query
    units = tuple(u.strip() for raw in q.getall("unit", []) for u in raw.split(",") if u.strip())
    if len(units) > MAX_UNITS:
        raise ValidationError(f"at most {MAX_UNITS} units", field="unit")
    for unit in units:
        if not UNIT_NAME.match(unit):
            raise ValidationError(f"not a unit name: {unit[:60]!r}", field="unit")
    zone = (await keys.identity(request.app).get()).timezone
    since = parse_time(q.get("since", ""), "since", zone)
    until = parse_time(q.get("until", ""), "until", zone)
    if since is not None and until is not None and until < since:
        raise ValidationError("until is before since", field="until")
    raw_limit = q.get("limit", str(default_limit))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_ENTRIES:
        raise ValidationError(f"limit must be between 1 and {MAX_ENTRIES}", field="limit")
    return JournalQuery(
        units=units,
        priority=parse_priority(q.get("priority"), 7),
        since=since,
        until=until,
        limit=int(raw_limit),
    )


async def send_bundle(request: web.Request) -> web.StreamResponse:
    """The support bundle as a download, streamed while it is made."""
    bundle = keys.bundle(request.app)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/gzip",
            "Content-Disposition": f'attachment; filename="{bundle.filename()}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    await bundle.stream(response.write)
    await response.write_eof()
    return response
