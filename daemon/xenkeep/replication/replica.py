"""A replica as its pool holds it: the VM, its live disks and its points.

Reading (:func:`locate`, :func:`load`) and the few changes every user of a
replica makes the same way: mark it being written, bring it back to a point
(:func:`revert`), take a point (:func:`take_point`), drop old points
(:func:`prune`). The rules (see :mod:`.const`): the replica VM's own disks
are where a run writes; the points are never written; a replica whose
``BASE_KEY`` is not its newest point's uuid was left mid-write and is
reverted before anything reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from xenkeep.jobs.snapshots import destroy_snapshot
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiFailure

from .const import (
    BASE_KEY,
    REPLICA_JOB_KEY,
    REPLICA_OF_KEY,
    SEQ_KEY,
    SOURCE_SNAPSHOT_KEY,
    TAKEN_KEY,
)

NULL_REF: Final = "OpaqueRef:NULL"


@dataclass(frozen=True)
class Disk:
    """One disk of a VM or snapshot, by its position (VBD userdevice)."""

    key: str
    vbd: str
    vdi: str
    uuid: str
    virtual_size: int
    record: Mapping[str, Any]


async def disks_of(client: XapiClient, vm: str) -> dict[str, Disk]:
    """The disks (not CD drives) of a VM or snapshot, by userdevice."""
    out: dict[str, Disk] = {}
    for vbd in await client.call("VM.get_VBDs", vm):
        rec = await client.call("VBD.get_record", vbd)
        vdi = rec.get("VDI")
        if rec.get("type") != "Disk" or vdi in (None, "", NULL_REF):
            continue
        vdi_rec = await client.call("VDI.get_record", vdi)
        key = str(rec["userdevice"])
        out[key] = Disk(
            key, vbd, str(vdi), str(vdi_rec["uuid"]), int(vdi_rec["virtual_size"]), vdi_rec
        )
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Point:
    """A complete point of a replica: a snapshot of it, and what it equals."""

    ref: str
    uuid: str
    name: str
    seq: int
    #: uuid of the source snapshot this point is a copy of.
    source_snapshot: str
    #: When that source snapshot was taken (epoch seconds).
    taken: float
    disks: dict[str, Disk]

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the pages and the API."""
        return {
            "uuid": self.uuid,
            "name": self.name,
            "seq": self.seq,
            "source_snapshot": self.source_snapshot,
            "taken": self.taken,
            "disks": {
                k: {"uuid": d.uuid, "virtual_size": d.virtual_size} for k, d in self.disks.items()
            },
        }


@dataclass
class Replica:
    """A replica VM in its pool."""

    ref: str
    uuid: str
    record: Mapping[str, Any]
    live: dict[str, Disk]
    #: Oldest first.
    points: list[Point] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The replica VM's name."""
        return str(self.record.get("name_label", self.uuid))

    @property
    def newest(self) -> Point | None:
        """The latest complete point, if any."""
        return self.points[-1] if self.points else None

    @property
    def base(self) -> str:
        """The uuid of the point the live disks equal ("" while written)."""
        return str((self.record.get("other_config") or {}).get(BASE_KEY, ""))

    @property
    def clean(self) -> bool:
        """True when the live disks are known to equal the newest point."""
        return self.newest is not None and self.base == self.newest.uuid

    @property
    def power_state(self) -> str:
        """The VM's power state."""
        return str(self.record.get("power_state", "Halted"))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


async def _point(client: XapiClient, ref: str, rec: Mapping[str, Any]) -> Point | None:
    other = rec.get("other_config") or {}
    try:
        seq = int(other[SEQ_KEY])
    except (KeyError, TypeError, ValueError):
        return None
    return Point(
        ref=ref,
        uuid=str(rec["uuid"]),
        name=str(rec.get("name_label", "")),
        seq=seq,
        source_snapshot=str(other.get(SOURCE_SNAPSHOT_KEY, "")),
        taken=_float(other.get(TAKEN_KEY)),
        disks=await disks_of(client, ref),
    )


async def load(client: XapiClient, ref: str) -> Replica:
    """The replica VM ``ref`` with its live disks and points."""
    record = dict(await client.call("VM.get_record", ref))
    points = []
    for snap in await client.call("VM.get_snapshots", ref):
        with contextlib.suppress(XapiFailure):  # destroyed meanwhile
            rec = await client.call("VM.get_record", snap)
            point = await _point(client, str(snap), rec)
            if point is not None:
                points.append(point)
    points.sort(key=lambda p: p.seq)
    return Replica(str(ref), str(record["uuid"]), record, await disks_of(client, ref), points)


def _is_replica_of(rec: Mapping[str, Any], job_id: int | None, source_uuid: str) -> bool:
    other = rec.get("other_config") or {}
    return (
        not rec.get("is_a_snapshot")
        and not rec.get("is_a_template")
        and other.get(REPLICA_OF_KEY) == source_uuid
        and (job_id is None or other.get(REPLICA_JOB_KEY) == str(job_id))
    )


async def locate(
    client: XapiClient, *, vm_uuid: str, job_id: int | None, source_uuid: str
) -> Replica | None:
    """The replica of ``source_uuid`` kept by ``job_id``: by its known uuid,
    else by its marks (a run killed before the database learnt its uuid).
    Without a job (it was deleted) only the known uuid finds it."""
    if vm_uuid:
        try:
            ref = str(await client.call("VM.get_by_uuid", vm_uuid))
            rec = await client.call("VM.get_record", ref)
        except XapiFailure:
            pass
        else:
            if _is_replica_of(rec, job_id, source_uuid):
                return await load(client, ref)
    if job_id is None:
        return None
    found = [
        ref
        for ref, rec in (await client.call("VM.get_all_records")).items()
        if _is_replica_of(rec, job_id, source_uuid)
    ]
    if not found:
        return None
    # Several is a mess someone made by hand: take the one with the most points.
    loaded = [await load(client, ref) for ref in sorted(found)]
    return max(loaded, key=lambda r: (len(r.points), r.uuid))


async def set_key(client: XapiClient, cls: str, ref: str, key: str, value: str) -> None:
    """Set ``other_config[key]`` of an object (XAPI's add refuses an existing key)."""
    await client.call(f"{cls}.remove_from_other_config", ref, key)
    await client.call(f"{cls}.add_to_other_config", ref, key, value)


async def mark_writing(client: XapiClient, replica: Replica) -> None:
    """Say, before the first byte is written, that the live disks no longer equal a point."""
    await set_key(client, "VM", replica.ref, BASE_KEY, "")


async def revert(client: XapiClient, replica: Replica, point: Point) -> Replica:
    """Bring the replica's live disks back to ``point``; the replica reloaded.

    ``VM.revert`` replaces the VM's disks by fresh clones of the point's;
    the marks are set again explicitly (a pool may or may not restore
    other_config with the rest of the record).
    """
    await client.call("VM.revert", point.ref)
    await set_key(client, "VM", replica.ref, BASE_KEY, point.uuid)
    return await load(client, replica.ref)


async def take_point(
    client: XapiClient,
    replica: Replica,
    *,
    name: str,
    seq: int,
    source_snapshot: str,
    taken: float,
) -> Point:
    """Snapshot the replica as its point ``seq`` equal to ``source_snapshot``.

    The facts go on the VM first, so that ``VM.snapshot`` copies them into
    the point in the same step that makes it: a point never exists without
    them, whatever is cut when.
    """
    for key, value in (
        (SOURCE_SNAPSHOT_KEY, source_snapshot),
        (SEQ_KEY, str(seq)),
        (TAKEN_KEY, f"{taken:.3f}"),
    ):
        await set_key(client, "VM", replica.ref, key, value)
    ref = str(await client.call("VM.snapshot", replica.ref, name))
    rec = await client.call("VM.get_record", ref)
    point = await _point(client, ref, rec)
    if point is None:  # the pool did not copy other_config: not a pool we can replicate to
        raise XapiFailure("INTERNAL_ERROR", ["the point did not keep its facts"], method=name)
    await set_key(client, "VM", replica.ref, BASE_KEY, point.uuid)
    return point


async def prune(client: XapiClient, replica: Replica, retention: int) -> list[Point]:
    """Destroy the oldest points beyond ``retention``; those destroyed."""
    excess = replica.points[: max(0, len(replica.points) - retention)]
    gone = []
    for point in excess:
        await destroy_snapshot(client, point.ref)
        gone.append(point)
    replica.points = [p for p in replica.points if p not in gone]
    return gone


def describe_points(points: list[Point]) -> str:
    """``3 points (seq 4-6)`` for the log."""
    if not points:
        return "no point"
    return f"{len(points)} point(s) (seq {points[0].seq}-{points[-1].seq})"


async def block_start(client: XapiClient, vm: str, reason: str) -> None:
    """Refuse ``start`` (and ``start_on``) of a VM, with the reason a person reads."""
    for op in ("start", "start_on"):
        await client.call("VM.remove_from_blocked_operations", vm, op)
        await client.call("VM.add_to_blocked_operations", vm, op, reason)


async def unblock_start(client: XapiClient, vm: str) -> None:
    """Let a VM start again."""
    for op in ("start", "start_on"):
        await client.call("VM.remove_from_blocked_operations", vm, op)
