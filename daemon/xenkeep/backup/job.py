"""A backup job: what to back up, when, how many points to keep. Pure.

:func:`validate_job` turns user input (a form or a JSON body) into a
:class:`JobSpec` or raises ValidationError naming the field. Which VMs a job
takes is :mod:`xenkeep.jobs.vmselect`'s, the same rules as every job kind:
applied at run time, so a VM tagged later is picked up by the next run.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from xenkeep.errors import ValidationError
from xenkeep.jobs import vmselect
from xenkeep.jobs.fields import (
    bandwidth_limit,
    bounded_int,
    flag,
    job_name,
    plain_text,
    required_int,
    schedule_fields,
)
from xenkeep.jobs.vmselect import Selection, VmChoice

from .const import Selector

__all__ = [
    "DEFAULT_HEALTH_CHECK_TIMEOUT",
    "MAX_CONCURRENCY",
    "MAX_RETENTION",
    "MAX_RPO_HOURS",
    "JobSpec",
    "VmChoice",
    "health_check_wait",
    "missing_names",
    "select_vms",
    "validate_job",
]

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
    #: VM names or uuids never backed up, whatever the selector matches.
    exclude: tuple[str, ...] = ()

    @property
    def selection(self) -> Selection:
        """Which VMs the job takes (see :mod:`xenkeep.jobs.vmselect`)."""
        return Selection(self.selector, self.targets, self.pool_id, self.exclude)

    def to_json(self) -> str:
        """Serialised form stored in the database."""
        d = asdict(self)
        d["targets"] = list(self.targets)
        d["exclude"] = list(self.exclude)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> JobSpec:
        """Inverse of :meth:`to_json` (re-validated)."""
        return validate_job(json.loads(raw))


def health_check_wait(data: Mapping[str, Any]) -> int:
    """``health_check_timeout`` of user input: 10 s to an hour, the default when empty."""
    wait = bounded_int(data, "health_check_timeout", DEFAULT_HEALTH_CHECK_TIMEOUT, 10, 3600)
    return DEFAULT_HEALTH_CHECK_TIMEOUT if wait is None else wait


def _health_check_sr(data: Mapping[str, Any]) -> str:
    """The health check SR's uuid, or "" (off)."""
    health_sr = plain_text(str(data.get("health_check_sr") or "").strip(), "health_check_sr")
    if not health_sr:
        return ""
    try:
        return str(uuidlib.UUID(health_sr))
    except ValueError:
        raise ValidationError(
            f"{health_sr[:80]!r} is not an SR uuid", field="health_check_sr"
        ) from None


def validate_job(data: Mapping[str, Any]) -> JobSpec:
    """A :class:`JobSpec` from user input, or ValidationError naming the field."""
    name = job_name(data)
    selection = vmselect.parse_selection(data)
    schedule, timezone = schedule_fields(data)
    return JobSpec(
        name=name,
        selector=selection.selector,
        targets=selection.targets,
        pool_id=selection.pool_id,
        schedule=schedule,
        timezone=timezone,
        retention=required_int(data, "retention", 7, 1, MAX_RETENTION),
        concurrency=required_int(data, "concurrency", 2, 1, MAX_CONCURRENCY),
        bandwidth_limit=bandwidth_limit(data),
        full_every=bounded_int(data, "full_every", None, 2, 10_000),
        enabled=flag(data, "enabled"),
        rpo_hours=bounded_int(data, "rpo_hours", None, 1, MAX_RPO_HOURS),
        health_check_sr=_health_check_sr(data),
        health_check_timeout=health_check_wait(data),
        exclude=selection.exclude,
    )


def select_vms(spec: JobSpec, vms: Mapping[str, Mapping[str, Any]]) -> list[VmChoice]:
    """The VMs of the pool ``spec`` selects, from ``VM.get_all_records``."""
    return vmselect.match(spec.selection, vms)


def missing_names(spec: JobSpec, chosen: Iterable[VmChoice]) -> list[str]:
    """Names a by-name job lists that match no VM."""
    return vmselect.missing_names(spec.selection, chosen)
