"""Sizes and durations as people read them: pages, mails and the console
show the same figures in the same way (the run page's script mirrors these)."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """1536 → '1.5 KiB'; whole bytes below 1 KiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable: TiB ends the loop")


def clock_duration(seconds: float | None) -> str:
    """75 → '1:15', 3723 → '1:02:03'; '?' when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(float(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def zoned_time(ts: float | None, zone: str) -> str:
    """A Unix time as ``2024-05-10 14:03:07 Europe/Paris``: in the appliance's
    zone, the zone named (UTC for an unknown zone); a dash when there is none."""
    import datetime as dt
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not ts:
        return "—"
    try:
        tz: dt.tzinfo = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz, zone = dt.UTC, "UTC"
    return dt.datetime.fromtimestamp(float(ts), tz).strftime("%Y-%m-%d %H:%M:%S ") + zone
