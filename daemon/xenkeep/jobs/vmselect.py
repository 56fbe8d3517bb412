"""Which VMs a job takes: one set of rules for backup and replication jobs. Pure.

A :class:`Selection` is what a person chooses: the pool, VMs by name, by
tag or the whole pool, and exclusions (names or uuids). :func:`parse_selection`
checks the input; :func:`match` applies a selection to the pool's
``VM.get_all_records`` *now*, so a VM tagged later is picked up by the next
run; :func:`check_names` refuses, when a job is saved, a name that matches
no VM (a typo would otherwise back up nothing, or exclude nothing).

A by-name selection lists VM names *or uuids*: names are what people read,
but a pool may hold two VMs of one name, and a name takes both. The picker
(:func:`pickable`) offers such a VM by its uuid, and :func:`ambiguous_names`
says which listed names stand for more than one VM.

Never selected, whatever the selection says: templates, snapshots, control
domains, and XenKeep's own replicas (a replica changes under the
replication, and is itself the copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from xenkeep.errors import ValidationError

from .fields import plain_text

#: other_config key on a replica VM (and its points): the uuid of its source VM.
REPLICA_OF_KEY: Final = "xenkeep-replica-of"
#: At most this many names in a list (targets, exclusions).
MAX_NAMES: Final = 500
#: The longest name or tag accepted.
MAX_NAME_LENGTH: Final = 255


class Selector(StrEnum):
    """How a job chooses its VMs."""

    NAME = "name"
    TAG = "tag"
    POOL = "pool"


@dataclass(frozen=True)
class Selection:
    """What a job takes: from which pool, by what, and what it leaves out."""

    selector: Selector
    #: VM name labels (or uuids) or tags, depending on ``selector`` (empty for the pool).
    targets: tuple[str, ...]
    pool_id: str
    #: VM names or uuids never taken, whatever matches.
    exclude: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (the fields of a job's API and form)."""
        return {
            "selector": self.selector.value,
            "targets": list(self.targets),
            "pool_id": self.pool_id,
            "exclude": list(self.exclude),
        }


@dataclass(frozen=True)
class VmChoice:
    """A VM a run takes."""

    ref: str
    uuid: str
    name: str


def names(raw: Any, field: str) -> tuple[str, ...]:
    """A list of names from a list, or from text separated by commas or lines."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        # A textarea sends one per line: CR/LF separate here, nothing more.
        items = [t.strip() for t in raw.replace("\r\n", ",").replace("\n", ",").split(",")]
    elif isinstance(raw, list | tuple):
        if not all(isinstance(t, str) for t in raw):
            raise ValidationError(f"{field} must be a list of names", field=field)
        items = [t.strip() for t in raw]
    else:
        raise ValidationError(f"{field} must be a list of names", field=field)
    out = tuple(dict.fromkeys(plain_text(t, field) for t in items if t))
    if len(out) > MAX_NAMES:
        raise ValidationError(f"{field}: at most {MAX_NAMES} names", field=field)
    for t in out:
        if len(t) > MAX_NAME_LENGTH:
            raise ValidationError(
                f"{field}: {t[:40]!r}... is longer than {MAX_NAME_LENGTH} characters",
                field=field,
            )
    return out


def parse_selection(data: Mapping[str, Any], *, partial: bool = False) -> Selection:
    """A :class:`Selection` from user input, or ValidationError naming the field.

    ``partial``: a selection still being made (a preview) may list no name
    or tag yet; it matches nothing, and saving it is still refused."""
    plain_text(str(data.get("pool_id") or ""), "pool_id")
    try:
        selector = Selector(str(data.get("selector", "")).strip())
    except ValueError:
        raise ValidationError("choose VMs by name, tag or pool", field="selector") from None
    targets = names(data.get("targets", ()), "targets")
    if selector is not Selector.POOL and not targets and not partial:
        raise ValidationError(f"give at least one VM {selector.value}", field="targets")
    if selector is Selector.POOL:
        targets = ()
    pool_id = str(data.get("pool_id", "")).strip()
    if not pool_id:
        raise ValidationError("choose the pool the VMs are in", field="pool_id")
    return Selection(selector, targets, pool_id, names(data.get("exclude", ()), "exclude"))


def is_replica(rec: Mapping[str, Any]) -> bool:
    """True for a VM XenKeep made as a replica."""
    return REPLICA_OF_KEY in (rec.get("other_config") or {})


def candidates(vms: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """The VMs any job may take, of ``VM.get_all_records``."""
    return [
        (ref, rec)
        for ref, rec in vms.items()
        if not rec.get("is_a_template")
        and not rec.get("is_a_snapshot")
        and not rec.get("is_control_domain")
        and not is_replica(rec)
    ]


def _excluded(sel: Selection, rec: Mapping[str, Any]) -> bool:
    return bool(sel.exclude) and (
        rec.get("name_label") in sel.exclude or rec.get("uuid") in sel.exclude
    )


def match(sel: Selection, vms: Mapping[str, Mapping[str, Any]]) -> list[VmChoice]:
    """The VMs ``sel`` takes from ``VM.get_all_records``, by name then uuid."""
    chosen = []
    for ref, rec in candidates(vms):
        if _excluded(sel, rec):
            continue
        if sel.selector is Selector.NAME:
            taken = rec.get("name_label") in sel.targets or rec.get("uuid") in sel.targets
        elif sel.selector is Selector.TAG:
            taken = bool(set(sel.targets) & set(rec.get("tags") or ()))
        else:
            taken = True
        if taken:
            chosen.append(VmChoice(ref, str(rec["uuid"]), str(rec["name_label"])))
    return sorted(chosen, key=lambda c: (c.name, c.uuid))


def missing_names(sel: Selection, chosen: Iterable[VmChoice]) -> list[str]:
    """Names (or uuids) a by-name selection lists that match none of ``chosen``."""
    if sel.selector is not Selector.NAME:
        return []
    found: set[str] = set()
    for c in chosen:
        found.update((c.name, c.uuid))
    return [t for t in sel.targets if t not in found]


def unknown_names(sel: Selection, vms: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per field (``targets``, ``exclude``), the names that match no VM a job may take."""
    known = candidates(vms)
    labels = {str(rec.get("name_label", "")) for _, rec in known}
    uuids = {str(rec.get("uuid", "")) for _, rec in known}
    out: dict[str, list[str]] = {}
    if sel.selector is Selector.NAME:
        missing = [t for t in sel.targets if t not in labels and t not in uuids]
        if missing:
            out["targets"] = missing
    gone = [e for e in sel.exclude if e not in labels and e not in uuids]
    if gone:
        out["exclude"] = gone
    return out


#: What a refusal of unknown names suggests.
NAMES_HINT: Final = (
    "VM names are exact (case matters); replicas, templates and snapshots are never chosen"
)


def name_problems(
    sel: Selection, vms: Mapping[str, Mapping[str, Any]], pool_name: str
) -> list[tuple[str, str]]:
    """Per field with names no VM of the pool has: (field, message in words)."""
    out = []
    for field, missing in unknown_names(sel, vms).items():
        shown = ", ".join(repr(n) for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        what = "no VM" if field == "targets" else "no VM to exclude"
        out.append((field, f"{what} named {shown} in pool {pool_name}"))
    return out


def check_names(sel: Selection, vms: Mapping[str, Mapping[str, Any]], pool_name: str) -> None:
    """ValidationError naming the first field with names no VM of the pool has."""
    for field, message in name_problems(sel, vms, pool_name):
        raise ValidationError(message, field=field, hint=NAMES_HINT)


def _uuids_by_name(vms: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = {}
    for _, rec in candidates(vms):
        by_name.setdefault(str(rec.get("name_label", "")), []).append(str(rec.get("uuid", "")))
    return {name: sorted(uuids) for name, uuids in by_name.items()}


def ambiguous_names(sel: Selection, vms: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Names the selection lists (to take by name, or to exclude) that more
    than one VM of the pool bears: name → their uuids. Not an error (a name
    takes, or leaves out, every VM that bears it), but worth showing."""
    listed = [*(sel.targets if sel.selector is Selector.NAME else ()), *sel.exclude]
    shared = {n: u for n, u in _uuids_by_name(vms).items() if len(u) > 1}
    return {n: shared[n] for n in dict.fromkeys(listed) if n in shared}


@dataclass(frozen=True)
class PickableVm:
    """A VM a job may take, as the picker lists it."""

    uuid: str
    name: str
    power_state: str
    tags: tuple[str, ...]
    #: Another VM of the pool bears the same name.
    shared_name: bool

    @property
    def key(self) -> str:
        """What the picker writes into a names field for this VM: its name,
        unless another VM bears it too, then its uuid (a name takes both)."""
        return self.uuid if self.shared_name else self.name

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, with :attr:`key`."""
        return {
            "uuid": self.uuid,
            "name": self.name,
            "power_state": self.power_state,
            "tags": list(self.tags),
            "shared_name": self.shared_name,
            "key": self.key,
        }


def pickable(vms: Mapping[str, Mapping[str, Any]]) -> list[PickableVm]:
    """Every VM of ``VM.get_all_records`` a job may take, by name then uuid."""
    by_name = _uuids_by_name(vms)
    rows = [
        PickableVm(
            uuid=str(rec.get("uuid", "")),
            name=str(rec.get("name_label", "")),
            power_state=str(rec.get("power_state") or "unknown"),
            tags=tuple(str(t) for t in rec.get("tags") or ()),
            shared_name=len(by_name.get(str(rec.get("name_label", "")), ())) > 1,
        )
        for _, rec in candidates(vms)
    ]
    return sorted(rows, key=lambda r: (r.name.lower(), r.name, r.uuid))
