"""Checks of the fields every job form shares. Pure.

A job's texts reach mail headers, logs, the pages and the pools (a
replica's name); its numbers bound real resources (concurrency, bandwidth).
Each check raises ValidationError naming the field, so the form or the API
can say which one to fix.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from xenkeep.errors import ValidationError

from .schedule import parse_schedule

#: Unicode categories a text field never holds: controls (CR, LF, NUL, ESC...),
#: format characters (bidi overrides, zero width) and line/paragraph separators.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})
#: The longest name a job may have.
MAX_NAME: Final = 100


def plain_text(value: str, field: str) -> str:
    """``value`` if it holds no control character, else ValidationError.

    A job's texts reach mail headers, logs and the pages: a CR/LF in a name
    once made its report mail fail while the run showed success.
    """
    for ch in value:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            raise ValidationError(
                f"{field} must not contain control characters (found U+{ord(ch):04X})",
                field=field,
            )
    return value


def bounded_int(
    data: Mapping[str, Any], key: str, default: int | None, low: int, high: int
) -> int | None:
    """``data[key]`` as a whole number in ``[low, high]``; ``default`` when absent,
    None when empty."""
    raw = data.get(key, default)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise ValidationError(f"{key} must be a number", field=key)
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValidationError(f"{key} must be a whole number, not {raw!r}", field=key) from None
    if not low <= value <= high:
        raise ValidationError(f"{key} must be between {low} and {high}", field=key)
    return value


def required_int(data: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    """:func:`bounded_int` for a field that always has a value."""
    value = bounded_int(data, key, default, low, high)
    if value is None:
        raise ValidationError(f"{key} is required", field=key)
    return value


def bandwidth_limit(data: Mapping[str, Any]) -> int | None:
    """Bytes per second over all of a run's transfers, or None (unlimited).

    Forms send ``bandwidth_limit_mib`` (MiB/s); the API may send
    ``bandwidth_limit`` in bytes per second.
    """
    limit_mib = data.get("bandwidth_limit_mib")
    if limit_mib not in (None, ""):
        mib = bounded_int(
            {"bandwidth_limit_mib": limit_mib}, "bandwidth_limit_mib", None, 1, 100_000
        )
        return None if mib is None else mib << 20
    return bounded_int(data, "bandwidth_limit", None, 1 << 16, 1 << 40)


def flag(data: Mapping[str, Any], key: str, default: bool = True) -> bool:
    """A yes/no field: a JSON boolean, or a form's ``on``/``true``/``1``."""
    value = data.get(key, default)
    if isinstance(value, str):
        return value.lower() in ("1", "on", "true", "yes")
    return bool(value)


def job_name(data: Mapping[str, Any]) -> str:
    """A job's name: 1 to MAX_NAME characters, no control character."""
    plain_text(str(data.get("name") or ""), "name")
    name = str(data.get("name", "")).strip()
    if not name or len(name) > MAX_NAME:
        raise ValidationError(f"a job needs a name of 1 to {MAX_NAME} characters", field="name")
    return name


def schedule_fields(data: Mapping[str, Any]) -> tuple[str, str]:
    """The cron expression (spaces folded; "" = manual only) and its zone, checked."""
    for key in ("schedule", "timezone"):
        # Before any stripping or whitespace folding hides what was typed.
        plain_text(str(data.get(key) or ""), key)
    schedule = " ".join(str(data.get("schedule", "")).split())
    timezone = str(data.get("timezone") or "UTC").strip()
    if schedule:
        parse_schedule(schedule, timezone)
    return schedule, timezone
