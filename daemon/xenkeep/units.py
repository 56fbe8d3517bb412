"""Sizes, durations and times as people read them: pages, mails and the
console show the same figures in the same way (the run page's script
mirrors these). Times are shown in the appliance's time zone, named."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable


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


def number_ranges(numbers: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` → ``'1-3, 7'``: lists of block numbers can be long."""
    out: list[str] = []
    ordered = sorted(set(numbers))
    start = prev = None
    for n in [*ordered, None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ", ".join(out)


def ago(seconds: float | None) -> str:
    """``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 days ago``; '—' when unknown."""
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s ago"
    if s < 7200:
        return f"{s // 60} min ago"
    if s < 2 * 86400:
        return f"{s // 3600} h ago"
    return f"{s // 86400} days ago"


# --- times, in the appliance's time zone ------------------------------------------


_ZONES: dict[str, dt.tzinfo] = {}


def load_zone(name: str) -> dt.tzinfo:
    """A zone by IANA name, read once (a file of tzdata: the daemon calls
    this in a thread before a page needs it); UTC for a name this system
    does not know (a setting from a newer tzdata must not break every page)."""
    zone = _ZONES.get(name)
    if zone is None:
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = dt.UTC
        _ZONES[name] = zone
    return zone


def zone_loaded(name: str) -> bool:
    """True once :func:`load_zone` read ``name``."""
    return name in _ZONES


def _at(ts: float, zone: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(ts), load_zone(zone))


def zone_label(moment: dt.datetime, zone: str) -> str:
    """What names the zone after a time: its abbreviation then ('CET',
    'CEST', 'UTC'), or the zone's name where it has none ('+04' in
    Asia/Dubai becomes 'Asia/Dubai')."""
    abbreviation = moment.strftime("%Z")
    return abbreviation if abbreviation.isalpha() else zone


def local_time(ts: float | None, zone: str, *, seconds: bool = False) -> str:
    """1764644400 in Europe/Paris → '2025-12-02 04:00 CET'; '—' for none."""
    if not ts:
        return "—"
    moment = _at(ts, zone)
    shown = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{shown} {zone_label(moment, zone)}"


def log_time(ts: float | None, zone: str) -> str:
    """A log line's time in the zone, without its name (the log names it once)."""
    if not ts:
        return "--:--:--"
    return _at(ts, zone).strftime("%Y-%m-%d %H:%M:%S")
