"""Resource sets: who (users, groups) may create VMs from which templates,
on which SRs and networks, within which limits; and the quota charges.

Each member's VM (or creation under way) is one row of
``resource_allocations`` charged to one set. :meth:`ResourceSets.reserve`
reads the set's usage and adds the new charge in one ``BEGIN IMMEDIATE``
transaction, so of creations racing at the limit the database lets through
exactly those that fit; a failed creation or a deleted VM releases its row.
Only members' VMs made through XenKeep are charged: replicas and XenKeep's
backup snapshots are never rows here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from xenkeep.errors import ConflictError, NotFoundError, ValidationError
from xenkeep.store import Database

#: The limited resources, with how they are written in messages.
RESOURCES: Final = ("cpus", "memory", "disk", "disks", "vms")
OBJECT_KINDS: Final = ("template", "sr", "network")
MAX_NAME: Final = 100


class QuotaExceededError(ConflictError):
    """A creation that would take a set past one of its limits."""

    code = "quota_exceeded"


@dataclass(frozen=True)
class Amounts:
    """Resources a VM takes: vCPUs, memory and disk bytes, disk and VM counts."""

    cpus: int = 0
    memory: int = 0
    disk: int = 0
    disks: int = 0
    vms: int = 0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(*(getattr(self, r) + getattr(other, r) for r in RESOURCES))

    def scaled(self, n: int) -> Amounts:
        return Amounts(*(getattr(self, r) * n for r in RESOURCES))


@dataclass(frozen=True)
class ResourceSet:
    id: int
    name: str
    #: Resource → limit; a resource absent has none.
    limits: Mapping[str, int]
    count_snapshots: bool
    subjects: tuple[str, ...] = ()  # "user:3", "group:2"
    objects: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def allows(self, kind: str, ref: str) -> bool:
        return ref in self.objects.get(kind, ())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "limits": dict(self.limits),
            "count_snapshots": self.count_snapshots,
            "subjects": list(self.subjects),
            "objects": {k: list(self.objects.get(k, ())) for k in OBJECT_KINDS},
        }


def over(limits: Mapping[str, int], used: Amounts, need: Amounts) -> list[str]:
    """The limits ``need`` would pass on top of ``used``, in words with the numbers."""
    words = []
    for r in RESOURCES:
        limit = limits.get(r)
        if limit is not None and getattr(used, r) + getattr(need, r) > limit:
            words.append(
                f"{r}: {getattr(used, r)} used + {getattr(need, r)} asked > {limit} allowed"
            )
    return words


def _limits(body: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in RESOURCES:
        value = body.get(r)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValidationError(f"limit {r!r} must be a whole number ≥ 0 or null", field=r)
        out[r] = value
    return out


#: The live resources of a VM by pool id and uuid (from the pool's records),
#: with its snapshots' disks when the flag says so; None when not seen.
LiveUsage = Callable[[int, str, bool], Amounts | None]


class ResourceSets:
    """Resource sets, their members' sets, and the quota charges."""

    def __init__(self, db: Database, live: LiveUsage | None = None) -> None:
        self._db = db
        self._live = live

    # ------------------------------------------------------------ definitions

    async def save(
        self,
        *,
        name: str,
        limits: Mapping[str, Any],
        subjects: Iterable[str] = (),
        objects: Mapping[str, Iterable[str]] | None = None,
        count_snapshots: bool = False,
        set_id: int | None = None,
    ) -> ResourceSet:
        """Create (or, with ``set_id``, replace) a set."""
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise ValidationError(f"a set needs a name of 1 to {MAX_NAME} characters", field="name")
        checked = _limits(limits)
        subs = []
        for s in subjects:
            kind, _, number = str(s).partition(":")
            if kind not in ("user", "group") or not number.isdigit():
                raise ValidationError(
                    f"{str(s)[:40]!r} is no user:<id> or group:<id>", field="subjects"
                )
            subs.append((kind, int(number)))
        objs: list[tuple[str, str]] = []
        for kind, refs in (objects or {}).items():
            if kind not in OBJECT_KINDS:
                raise ValidationError(f"objects are {', '.join(OBJECT_KINDS)}", field="objects")
            objs.extend((kind, str(ref)) for ref in refs)
        async with self._db.transaction() as tx:
            clash = await tx.fetchone(
                "SELECT id FROM resource_sets WHERE name = ? AND id IS NOT ?", (name, set_id)
            )
            if clash:
                raise ValidationError(f"there is already a set {name!r}", field="name")
            values = [checked.get(r) for r in RESOURCES]
            if set_id is None:
                set_id = await tx.insert(
                    "INSERT INTO resource_sets (name, cpus, memory, disk, disks, vms, "
                    "count_snapshots, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, *values, int(count_snapshots), time.time()),
                )
            elif not await tx.execute(
                "UPDATE resource_sets SET name = ?, cpus = ?, memory = ?, disk = ?, disks = ?, "
                "vms = ?, count_snapshots = ? WHERE id = ?",
                (name, *values, int(count_snapshots), set_id),
            ):
                raise NotFoundError(f"there is no resource set {set_id}")
            await tx.execute("DELETE FROM resource_set_subjects WHERE set_id = ?", (set_id,))
            await tx.execute("DELETE FROM resource_set_objects WHERE set_id = ?", (set_id,))
            await tx.executemany(
                "INSERT OR IGNORE INTO resource_set_subjects VALUES (?, ?, ?)",
                [(set_id, k, i) for k, i in subs],
            )
            await tx.executemany(
                "INSERT OR IGNORE INTO resource_set_objects VALUES (?, ?, ?)",
                [(set_id, k, r) for k, r in objs],
            )
        return await self.get(set_id)

    async def delete(self, set_id: int) -> None:
        async with self._db.transaction() as tx:
            if await tx.fetchone("SELECT 1 FROM resource_allocations WHERE set_id = ?", (set_id,)):
                raise ConflictError("the set still has VMs charged to it; delete them first")
            if not await tx.execute("DELETE FROM resource_sets WHERE id = ?", (set_id,)):
                raise NotFoundError(f"there is no resource set {set_id}")

    async def get(self, set_id: int) -> ResourceSet:
        found = await self._load("WHERE id = ?", (set_id,))
        if not found:
            raise NotFoundError(f"there is no resource set {set_id}")
        return found[0]

    async def all(self) -> list[ResourceSet]:
        return await self._load("", ())

    async def of_user(self, user_id: int) -> list[ResourceSet]:
        """The sets a user is a subject of, directly or through a group."""
        return await self._load(
            "WHERE id IN (SELECT set_id FROM resource_set_subjects WHERE "
            "(subject_kind = 'user' AND subject_id = ?) OR (subject_kind = 'group' AND "
            "subject_id IN (SELECT group_id FROM group_members WHERE user_id = ?)))",
            (user_id, user_id),
        )

    async def _load(self, where: str, params: tuple[Any, ...]) -> list[ResourceSet]:
        rows = await self._db.fetchall(f"SELECT * FROM resource_sets {where} ORDER BY name", params)  # noqa: S608 - fixed clauses
        out = []
        for row in rows:
            subs = await self._db.fetchall(
                "SELECT subject_kind, subject_id FROM resource_set_subjects WHERE set_id = ? "
                "ORDER BY 1, 2",
                (row["id"],),
            )
            objs = await self._db.fetchall(
                "SELECT object_kind, object_ref FROM resource_set_objects WHERE set_id = ? "
                "ORDER BY 1, 2",
                (row["id"],),
            )
            objects: dict[str, list[str]] = {k: [] for k in OBJECT_KINDS}
            for o in objs:
                objects[o["object_kind"]].append(o["object_ref"])
            out.append(
                ResourceSet(
                    id=row["id"],
                    name=row["name"],
                    limits={r: row[r] for r in RESOURCES if row[r] is not None},
                    count_snapshots=bool(row["count_snapshots"]),
                    subjects=tuple(f"{s['subject_kind']}:{s['subject_id']}" for s in subs),
                    objects={k: tuple(v) for k, v in objects.items()},
                )
            )
        return out

    # ----------------------------------------------------------------- usage

    async def usage(self, set_id: int) -> Amounts:
        """What the set's VMs take now: live records where the pool has the VM,
        the charge otherwise (a creation under way, a pool away)."""
        rows = await self._db.fetchall(
            "SELECT a.*, s.count_snapshots FROM resource_allocations a JOIN resource_sets s "
            "ON s.id = a.set_id WHERE a.set_id = ?",
            (set_id,),
        )
        total = Amounts()
        for row in rows:
            live = (
                self._live(row["pool_id"], row["vm_uuid"], bool(row["count_snapshots"]))
                if self._live and row["vm_uuid"]
                else None
            )
            total = total + (live or _charged(row))
        return total

    async def reserve(
        self, set_id: int, *, user_id: int, pool_id: int, name: str, need: Amounts
    ) -> int:
        """Charge ``need`` to the set if it fits; the charge's id, or
        QuotaExceededError naming each limit passed, with the numbers."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone("SELECT * FROM resource_sets WHERE id = ?", (set_id,))
            if row is None:
                raise NotFoundError(f"there is no resource set {set_id}")
            limits = {r: row[r] for r in RESOURCES if row[r] is not None}
            rows = await tx.fetchall(
                "SELECT a.*, s.count_snapshots FROM resource_allocations a JOIN resource_sets s "
                "ON s.id = a.set_id WHERE a.set_id = ?",
                (set_id,),
            )
            used = Amounts()
            for r in rows:
                live = (
                    self._live(r["pool_id"], r["vm_uuid"], bool(r["count_snapshots"]))
                    if self._live and r["vm_uuid"]
                    else None
                )
                used = used + (live or _charged(r))
            passed = over(limits, used, need)
            if passed:
                raise QuotaExceededError(
                    f"resource set {row['name']!r} would pass its limits: " + "; ".join(passed)
                )
            return await tx.insert(
                "INSERT INTO resource_allocations (set_id, user_id, pool_id, name, cpus, memory, "
                "disk, disks, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'reserved', ?)",
                (
                    set_id,
                    user_id,
                    pool_id,
                    name,
                    need.cpus,
                    need.memory,
                    need.disk,
                    need.disks,
                    time.time(),
                ),
            )

    async def activate(self, allocation_id: int, vm_uuid: str) -> None:
        """The VM exists: the charge is now its."""
        await self._db.execute(
            "UPDATE resource_allocations SET vm_uuid = ?, state = 'active' WHERE id = ?",
            (vm_uuid, allocation_id),
        )

    async def release(self, allocation_id: int) -> None:
        await self._db.execute("DELETE FROM resource_allocations WHERE id = ?", (allocation_id,))

    async def release_vm(self, vm_uuid: str) -> None:
        await self._db.execute("DELETE FROM resource_allocations WHERE vm_uuid = ?", (vm_uuid,))

    async def vms_of(self, user_id: int | None) -> list[dict[str, Any]]:
        """The members' VMs (of one user, or all), as charged."""
        rows = await self._db.fetchall(
            "SELECT a.*, s.name AS set_name FROM resource_allocations a JOIN resource_sets s "
            "ON s.id = a.set_id WHERE (? IS NULL OR a.user_id = ?) ORDER BY a.id",
            (user_id, user_id),
        )
        return [dict(r) for r in rows]

    async def allocation_of(self, vm_uuid: str) -> dict[str, Any] | None:
        row = await self._db.fetchone(
            "SELECT * FROM resource_allocations WHERE vm_uuid = ?", (vm_uuid,)
        )
        return dict(row) if row else None


def _charged(row: Any) -> Amounts:
    return Amounts(row["cpus"], row["memory"], row["disk"], row["disks"], 1)


def amounts_json(a: Amounts) -> dict[str, int]:
    return asdict(a)
