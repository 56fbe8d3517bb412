"""A replication job: which VMs, to which SR of which pool, how often, how
many replica points to keep. Pure.

:func:`validate_job` turns user input (a form or a JSON body) into a
:class:`ReplicationSpec` or raises ValidationError naming the field. The VM
selection is the same as a backup job's (:mod:`xenkeep.jobs.vmselect`).
What input alone cannot tell (the pools, the SR and the networks exist, the
VM names are VMs) is checked by the service when the job is saved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from xenkeep.errors import ValidationError
from xenkeep.jobs import vmselect
from xenkeep.jobs.fields import (
    bandwidth_limit,
    flag,
    job_name,
    plain_text,
    required_int,
    schedule_fields,
)
from xenkeep.jobs.vmselect import Selection, Selector

MAX_RETENTION: Final = 100
MAX_CONCURRENCY: Final = 16
#: A job maps at most this many networks explicitly.
MAX_NETWORKS: Final = 64


@dataclass(frozen=True)
class ReplicationSpec:
    """What a user configures for a replication job."""

    name: str
    selector: Selector
    targets: tuple[str, ...]
    #: The pool the source VMs are in.
    pool_id: str
    #: Where the replicas live: a pool (maybe the same) and one of its SRs.
    target_pool_id: str
    target_sr_uuid: str
    schedule: str
    timezone: str = "UTC"
    #: Replica points kept per VM (the newest included).
    retention: int = 3
    concurrency: int = 2
    #: Bytes per second over all the run's transfers; None = unlimited.
    bandwidth_limit: int | None = None
    #: Explicit (source network, target network) pairs: uuids once saved.
    #: A VIF on another network goes to the target network of the same name.
    networks: tuple[tuple[str, str], ...] = ()
    enabled: bool = True
    exclude: tuple[str, ...] = ()

    @property
    def selection(self) -> Selection:
        """Which VMs the job takes (see :mod:`xenkeep.jobs.vmselect`)."""
        return Selection(self.selector, self.targets, self.pool_id, self.exclude)

    @property
    def same_pool(self) -> bool:
        """True when the replicas live in the source pool (another SR of it)."""
        return self.pool_id == self.target_pool_id

    def with_networks(self, networks: tuple[tuple[str, str], ...]) -> ReplicationSpec:
        """This spec with its network pairs replaced (resolved to uuids)."""
        return replace(self, networks=networks)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (the API's and the stored one)."""
        d = asdict(self)
        d["selector"] = self.selector.value
        d["targets"] = list(self.targets)
        d["exclude"] = list(self.exclude)
        d["networks"] = [{"source": s, "target": t} for s, t in self.networks]
        return d

    def to_json(self) -> str:
        """Serialised form stored in the database."""
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> ReplicationSpec:
        """Inverse of :meth:`to_json` (re-validated)."""
        return validate_job(json.loads(raw))


def _pair(source: Any, target: Any) -> tuple[str, str]:
    if not isinstance(source, str) or not isinstance(target, str):
        raise ValidationError("a network mapping pairs two network names", field="networks")
    s = plain_text(source, "networks").strip()
    t = plain_text(target, "networks").strip()
    if not s or not t or len(s) > 255 or len(t) > 255:
        raise ValidationError(
            "a network mapping pairs a source and a target network, e.g. 'LAN = DR LAN'",
            field="networks",
        )
    return s, t


def parse_networks(raw: Any) -> tuple[tuple[str, str], ...]:
    """Network pairs from ``{"src": "dst"}``, ``[{"source", "target"}]`` or text
    lines ``source = target`` (names or uuids)."""
    if raw in (None, "", [], {}):
        return ()
    pairs: list[tuple[str, str]] = []
    if isinstance(raw, str):
        for line in raw.replace("\r\n", "\n").split("\n"):
            if not line.strip():
                continue
            source, eq, target = line.partition("=")
            if not eq:
                raise ValidationError(
                    f"network mapping {line.strip()[:60]!r}: write 'source = target'",
                    field="networks",
                )
            pairs.append(_pair(source, target))
    elif isinstance(raw, dict):
        pairs = [_pair(k, v) for k, v in raw.items()]
    elif isinstance(raw, list):
        for item in raw:
            if not isinstance(item, dict):
                raise ValidationError(
                    "networks: a list of {source, target} objects", field="networks"
                )
            pairs.append(_pair(item.get("source"), item.get("target")))
    else:
        raise ValidationError("networks must map source to target networks", field="networks")
    if len(pairs) > MAX_NETWORKS:
        raise ValidationError(f"at most {MAX_NETWORKS} network mappings", field="networks")
    sources = [s for s, _ in pairs]
    if len(set(sources)) != len(sources):
        raise ValidationError("a source network is mapped twice", field="networks")
    return tuple(pairs)


def _target(data: Mapping[str, Any], key: str, what: str) -> str:
    raw = data.get(key)
    if raw is not None and not isinstance(raw, str | int):
        raise ValidationError(f"{key} must be a string", field=key)
    plain_text(str(raw or ""), key)
    value = str(raw or "").strip()
    if not value or len(value) > 100:
        raise ValidationError(f"choose {what}", field=key)
    return value


def validate_job(data: Mapping[str, Any]) -> ReplicationSpec:
    """A :class:`ReplicationSpec` from user input, or ValidationError naming the field."""
    name = job_name(data)
    selection = vmselect.parse_selection(data)
    target_pool = _target(data, "target_pool_id", "the pool the replicas go to")
    target_sr = _target(data, "target_sr_uuid", "the SR the replicas go to")
    schedule, timezone = schedule_fields(data)
    return ReplicationSpec(
        name=name,
        selector=selection.selector,
        targets=selection.targets,
        pool_id=selection.pool_id,
        target_pool_id=target_pool,
        target_sr_uuid=target_sr,
        schedule=schedule,
        timezone=timezone,
        retention=required_int(data, "retention", 3, 1, MAX_RETENTION),
        concurrency=required_int(data, "concurrency", 2, 1, MAX_CONCURRENCY),
        bandwidth_limit=bandwidth_limit(data),
        networks=parse_networks(data.get("networks")),
        enabled=flag(data, "enabled"),
        exclude=selection.exclude,
    )
