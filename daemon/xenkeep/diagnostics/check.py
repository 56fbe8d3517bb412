"""A check, what it finds, and the registry of every check.

A check is a small unit: an id (``disk.root``), a title, and an ``async``
function that looks at one thing through :class:`~.sources.Sources` and
returns one :class:`Finding` (or one per pool for the checks of each pool).
The service turns findings into :class:`Result`\\ s with ids and titles;
that is what the page, the API, the console and the bundle show.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .const import SEVERITY, CheckStatus

if TYPE_CHECKING:
    from .sources import Sources


@dataclass(frozen=True, slots=True)
class Finding:
    """What one check found about one subject."""

    status: CheckStatus
    #: The measured value, in words: "4.1 GiB free of 20 GiB (20 %)".
    value: str
    #: What to do about it, in words (shown when the status is not ok).
    remedy: str = ""
    #: "" for the appliance itself, "pool:3" for a check of one pool.
    subject: str = ""
    #: How people call the subject ("pool lab").
    subject_name: str = ""


def ok(value: str, **subject: str) -> Finding:
    """All is well."""
    return Finding(CheckStatus.OK, value, "", **subject)


def warning(value: str, remedy: str, **subject: str) -> Finding:
    """Worth a look; nothing is broken yet."""
    return Finding(CheckStatus.WARNING, value, remedy, **subject)


def failure(value: str, remedy: str, **subject: str) -> Finding:
    """Something is broken, or will be soon."""
    return Finding(CheckStatus.FAILURE, value, remedy, **subject)


CheckFunction = Callable[["Sources"], Awaitable[Sequence[Finding]]]


@dataclass(frozen=True, slots=True)
class Check:
    """One health check."""

    id: str
    title: str
    run: CheckFunction


@dataclass(frozen=True, slots=True)
class Result:
    """A finding with its check: what is stored and shown."""

    id: str
    check: str
    title: str
    status: CheckStatus
    value: str
    remedy: str
    checked_at: float

    @classmethod
    def of(cls, check: Check, finding: Finding, checked_at: float) -> Result:
        """The result of ``check`` for one finding."""
        rid = f"{check.id}:{finding.subject}" if finding.subject else check.id
        title = f"{check.title} ({finding.subject_name})" if finding.subject_name else check.title
        return cls(
            id=rid,
            check=check.id,
            title=title,
            status=finding.status,
            value=finding.value,
            remedy="" if finding.status is CheckStatus.OK else finding.remedy,
            checked_at=checked_at,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON form (API, report, bundle)."""
        return {
            "id": self.id,
            "check": self.check,
            "title": self.title,
            "status": self.status.value,
            "value": self.value,
            "remedy": self.remedy,
            "checked_at": self.checked_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """Back from :meth:`as_dict` (a stored result)."""
        return cls(
            id=str(data["id"]),
            check=str(data["check"]),
            title=str(data.get("title", "")),
            status=CheckStatus(str(data["status"])),
            value=str(data.get("value", "")),
            remedy=str(data.get("remedy", "")),
            checked_at=float(data.get("checked_at") or 0),
        )


def worst(statuses: Iterable[CheckStatus]) -> CheckStatus:
    """The worst of ``statuses`` (ok when there are none)."""
    return max(statuses, key=SEVERITY.__getitem__, default=CheckStatus.OK)


class CheckRegistry:
    """Every check, in the order they run and are shown."""

    def __init__(self, checks: Iterable[Check] = ()) -> None:
        self._checks: dict[str, Check] = {}
        for check in checks:
            self.register(check)

    def register(self, check: Check) -> None:
        """Add a check; its id must be new."""
        if check.id in self._checks:
            raise ValueError(f"check {check.id!r} registered twice")
        self._checks[check.id] = check

    def __iter__(self) -> Iterator[Check]:
        return iter(self._checks.values())

    def __len__(self) -> int:
        return len(self._checks)

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._checks

    def get(self, check_id: str) -> Check:
        """One check by id (KeyError when unknown)."""
        return self._checks[check_id]
