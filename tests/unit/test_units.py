"""Sizes and durations as the pages, mails and console show them."""

from __future__ import annotations

import pytest

from xenkeep import units
from xenkeep.units import clock_duration, human_bytes, number_ranges


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (4197888, "4.0 MiB"),
        (5 << 30, "5.0 GiB"),
        (3 << 40, "3.0 TiB"),
        (5000 << 40, "5000.0 TiB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (0, "0:00"), (-3, "0:00"), (59.6, "1:00"), (75, "1:15"), (3723, "1:02:03")],
)
def test_clock_duration(seconds: float | None, text: str) -> None:
    assert clock_duration(seconds) == text


@pytest.mark.parametrize(
    ("numbers", "text"),
    [
        ([], ""),
        ([5], "5"),
        ([3, 1, 2], "1-3"),
        ([1, 2, 3, 7, 9, 10], "1-3, 7, 9-10"),
        ([4, 4], "4"),
    ],
)
def test_number_ranges(numbers: list[int], text: str) -> None:
    assert number_ranges(numbers) == text


def test_times_are_shown_in_the_zone_named() -> None:
    winter, summer = 1764644400.0, 1750000000.0  # 2025-12-02 03:00 UTC, 2025-06-15 15:06:40 UTC
    for zone in ("Europe/Paris", "Asia/Dubai", "UTC", "Not/AZone"):
        units.load_zone(zone)
    assert units.local_time(winter, "Europe/Paris") == "2025-12-02 04:00 CET"
    assert units.local_time(summer, "Europe/Paris", seconds=True) == "2025-06-15 17:06:40 CEST"
    # A zone without an abbreviation is named by its name, never "+04".
    assert units.local_time(winter, "Asia/Dubai") == "2025-12-02 07:00 Asia/Dubai"
    # A zone this system does not know falls back to UTC instead of breaking pages.
    assert units.local_time(winter, "Not/AZone") == "2025-12-02 03:00 UTC"
    assert units.local_time(None, "UTC") == "—"
    assert units.log_time(winter, "Europe/Paris") == "2025-12-02 04:00:00"
