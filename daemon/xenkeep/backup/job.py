"""A backup job: what to back up, when, how many points to keep. Pure.

:func:`validate_job` turns user input (a form or a JSON body) into a
:class:`JobSpec` or raises ValidationError naming the field;
:func:`select_vms` applies the job's selector to the pool's VM records at run
time, so a VM tagged later is picked up by the next run.
"""

from __future__ import annotations

import json
import unicodedata
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from xenkeep.errors import ValidationError

from .const import Selector
from .schedule import parse_schedule

MAX_RETENTION = 1000
MAX_CONCURRENCY = 16
#: Five minutes: a guest with its agent boots and reports well within it.
DEFAULT_HEALTH_CHECK_TIMEOUT = 300
MAX_RPO_HOURS = 24 * 366


@dataclass(frozen=True)
class JobSpec:
    """What a user configures for a backup job."""

    name: str
    selector: Selector
    #: VM name labels, tags or pool ids, depending on ``selector``.
    targets: tuple[str, ...]
    pool_id: str
    schedule: str
    timezone: str = "UTC"
    retention: int = 7
    concurrency: int = 2
    #: Bytes per second over all the job's transfers; None = unlimited.
    bandwidth_limit: int | None = None
    #: Force a full transfer every N restore points of a disk; None = never.
    full_every: int | None = None
    enabled: bool = True
    #: Recovery point objective: the newest point of each VM must be younger
    #: than this many hours; None = twice the schedule's interval.
    rpo_hours: int | None = None
    #: After each run, restore each VM's new point to this SR of the job's
    #: pool, start it and wait for its guest (a health check); "" = off.
    health_check_sr: str = ""
    #: Seconds a health check waits for the restored guest to report.
    health_check_timeout: int = DEFAULT_HEALTH_CHECK_TIMEOUT

    def to_json(self) -> str:
        """Serialised form stored in the database."""
        d = asdict(self)
        d["targets"] = list(self.targets)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> JobSpec:
        """Inverse of :meth:`to_json` (re-validated)."""
        return validate_job(json.loads(raw))


def _int(data: Mapping[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
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


#: Unicode categories a text field never holds: controls (CR, LF, NUL, ESC...),
#: format characters (bidi overrides, zero width) and line/paragraph separators.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})


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


def _targets(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        # A textarea sends one per line: CR/LF separate here, nothing more.
        items = [t.strip() for t in raw.replace("\r\n", ",").replace("\n", ",").split(",")]
    elif isinstance(raw, list | tuple):
        items = [str(t).strip() for t in raw]
    else:
        raise ValidationError("targets must be a list of names", field="targets")
    return tuple(dict.fromkeys(plain_text(t, "targets") for t in items if t))


def health_check_wait(data: Mapping[str, Any]) -> int:
    """``health_check_timeout`` of user input: 10 s to an hour, the default when empty."""
    wait = _int(data, "health_check_timeout", DEFAULT_HEALTH_CHECK_TIMEOUT, 10, 3600)
    return DEFAULT_HEALTH_CHECK_TIMEOUT if wait is None else wait


def validate_job(data: Mapping[str, Any]) -> JobSpec:
    """A :class:`JobSpec` from user input, or ValidationError naming the field."""
    for key in ("name", "pool_id", "schedule", "timezone"):
        # Before any stripping or whitespace folding hides what was typed.
        plain_text(str(data.get(key) or ""), key)
    name = str(data.get("name", "")).strip()
    if not name or len(name) > 100:
        raise ValidationError("a job needs a name of 1 to 100 characters", field="name")
    try:
        selector = Selector(str(data.get("selector", "")).strip())
    except ValueError:
        raise ValidationError("choose VMs by name, tag or pool", field="selector") from None
    targets = _targets(data.get("targets", ()))
    if selector is not Selector.POOL and not targets:
        raise ValidationError(f"give at least one VM {selector.value}", field="targets")
    pool_id = str(data.get("pool_id", "")).strip()
    if not pool_id:
        raise ValidationError("choose the pool the VMs are in", field="pool_id")
    schedule = " ".join(str(data.get("schedule", "")).split())
    timezone = str(data.get("timezone") or "UTC").strip()
    if schedule:
        parse_schedule(schedule, timezone)
    retention = _int(data, "retention", 7, 1, MAX_RETENTION)
    concurrency = _int(data, "concurrency", 2, 1, MAX_CONCURRENCY)
    assert retention is not None and concurrency is not None
    limit_mib = data.get("bandwidth_limit_mib")
    bandwidth: int | None
    if limit_mib not in (None, ""):
        mib = _int({"bandwidth_limit_mib": limit_mib}, "bandwidth_limit_mib", None, 1, 100_000)
        bandwidth = None if mib is None else mib << 20
    else:
        bandwidth = _int(data, "bandwidth_limit", None, 1 << 16, 1 << 40)
    full_every = _int(data, "full_every", None, 2, 10_000)
    enabled = data.get("enabled", True)
    if isinstance(enabled, str):
        enabled = enabled.lower() in ("1", "on", "true", "yes")
    rpo_hours = _int(data, "rpo_hours", None, 1, MAX_RPO_HOURS)
    health_sr = plain_text(str(data.get("health_check_sr") or "").strip(), "health_check_sr")
    if health_sr:
        try:
            health_sr = str(uuidlib.UUID(health_sr))
        except ValueError:
            raise ValidationError(
                f"{health_sr[:80]!r} is not an SR uuid", field="health_check_sr"
            ) from None
    timeout = health_check_wait(data)
    return JobSpec(
        name=name,
        selector=selector,
        targets=targets,
        pool_id=pool_id,
        schedule=schedule,
        timezone=timezone,
        retention=retention,
        concurrency=concurrency,
        bandwidth_limit=bandwidth,
        full_every=full_every,
        enabled=bool(enabled),
        rpo_hours=rpo_hours,
        health_check_sr=health_sr,
        health_check_timeout=timeout,
    )


@dataclass(frozen=True)
class VmChoice:
    """A VM a run backs up."""

    ref: str
    uuid: str
    name: str


def select_vms(spec: JobSpec, vms: Mapping[str, Mapping[str, Any]]) -> list[VmChoice]:
    """The VMs of the pool ``spec`` selects, from ``VM.get_all_records``.

    Templates, snapshots and control domains never count. By name, every
    name listed must exist (a VM renamed away is an error the run reports,
    not a silent skip); by tag or pool, whatever matches now.
    """
    real = [
        (ref, rec)
        for ref, rec in vms.items()
        if not rec.get("is_a_template")
        and not rec.get("is_a_snapshot")
        and not rec.get("is_control_domain")
    ]
    chosen: list[VmChoice] = []
    if spec.selector is Selector.NAME:
        wanted = set(spec.targets)
        chosen = [
            VmChoice(ref, str(rec["uuid"]), str(rec["name_label"]))
            for ref, rec in real
            if rec.get("name_label") in wanted
        ]
    elif spec.selector is Selector.TAG:
        tags = set(spec.targets)
        chosen = [
            VmChoice(ref, str(rec["uuid"]), str(rec["name_label"]))
            for ref, rec in real
            if tags & set(rec.get("tags") or ())
        ]
    else:
        chosen = [VmChoice(ref, str(rec["uuid"]), str(rec["name_label"])) for ref, rec in real]
    return sorted(chosen, key=lambda c: (c.name, c.uuid))


def missing_names(spec: JobSpec, chosen: Iterable[VmChoice]) -> list[str]:
    """Names a by-name job lists that match no VM."""
    if spec.selector is not Selector.NAME:
        return []
    found = {c.name for c in chosen}
    return [t for t in spec.targets if t not in found]
