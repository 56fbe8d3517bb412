"""Sizes and durations as people read them: pages, mails and the console
show the same figures in the same way (the run page's script mirrors these)."""

from __future__ import annotations

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
