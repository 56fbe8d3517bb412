"""The appliance's own identity: its display name and time zone."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import AuditEvent
from xenkeep.errors import ValidationError
from xenkeep.store import Database

NAME_KEY = "appliance.name"
TIMEZONE_KEY = "appliance.timezone"
DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True, slots=True)
class Identity:
    """What the appliance calls itself and which clock it shows."""

    name: str
    timezone: str
    configured: bool


#: tzdata's compact source: "Z <name>" lines are zones, "L <target> <alias>"
#: lines the backward-compatible aliases (US/Eastern, Asia/Calcutta...).
TZDATA_SOURCE = Path("/usr/share/zoneinfo/tzdata.zi")
#: Spellings no one should pick from a list: POSIX-style offsets with the
#: sign inverted (Etc/GMT+5 is UTC-5) and files that are not zones.
_NOT_OFFERED = ("Etc/", "SystemV/", "posix", "right/", "Factory", "localtime")


def _canonical(available: set[str], source: Path) -> set[str]:
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {z for z in available if "/" in z}
    return {line.split()[1] for line in lines if line.startswith("Z ")} & available


@lru_cache(maxsize=1)
def known_timezones() -> tuple[str, ...]:
    """The canonical IANA zones the system knows (no aliases), UTC first."""
    available = zoneinfo.available_timezones()
    zones = {z for z in _canonical(available, TZDATA_SOURCE) if not z.startswith(_NOT_OFFERED)}
    return ("UTC", *sorted(zones - {"UTC"}))


def validate_identity(name: str, timezone: str) -> tuple[str, str]:
    """Clean and check a name and a time zone; raise ValidationError."""
    name = " ".join(name.split())
    if not 1 <= len(name) <= 64:
        raise ValidationError("the appliance name is 1 to 64 characters", field="name")
    if any(ch in name for ch in "<>\"'`\\"):
        raise ValidationError("the appliance name cannot contain < > \" ' ` \\", field="name")
    if timezone not in known_timezones():
        raise ValidationError(
            f"unknown time zone {timezone!r}", field="timezone", hint="for example Europe/Paris"
        )
    return name, timezone


class IdentityManager:
    """Reads and changes the appliance identity."""

    def __init__(self, db: Database, audit: AuditLog, default_name: str) -> None:
        self._db = db
        self._audit = audit
        self._default_name = default_name

    async def get(self) -> Identity:
        """The current identity (defaults until the wizard sets it)."""
        name = await self._db.get_setting(NAME_KEY)
        timezone = await self._db.get_setting(TIMEZONE_KEY, DEFAULT_TIMEZONE)
        return Identity(
            name=name or self._default_name,
            timezone=timezone or DEFAULT_TIMEZONE,
            configured=name is not None,
        )

    async def set(self, name: str, timezone: str, *, actor: str, ip: str = "") -> Identity:
        """Validate and store a new identity."""
        name, timezone = validate_identity(name, timezone)
        await self._db.set_setting(NAME_KEY, name)
        await self._db.set_setting(TIMEZONE_KEY, timezone)
        await self._audit.record(
            AuditEvent.SETTINGS_CHANGED, username=actor, ip=ip, name=name, timezone=timezone
        )
        return Identity(name, timezone, True)
