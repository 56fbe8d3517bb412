"""Where each pool object sits in the permission tree, read from the live caches.

A VM sits under the host it runs on (``resident_on``) or, halted, the host
it prefers (``affinity``); hosts, SRs, networks and templates sit under
their pool; pools under everything (see :mod:`xenkeep.auth.permissions`).
The caches are the pools' XAPI event caches, so the tree follows the pools
as VMs move, start and stop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xenkeep.auth.permissions import EVERYTHING, ObjectKind, ObjectRef, Path
from xenkeep.xapi.events import ObjectCache, Record

if TYPE_CHECKING:
    from xenkeep.pools.manager import PoolManager

NULL_REF = "OpaqueRef:NULL"

#: The XAPI class of each kind that lives in a pool.
XAPI_CLASS = {
    ObjectKind.POOL: "pool",
    ObjectKind.HOST: "host",
    ObjectKind.SR: "sr",
    ObjectKind.NETWORK: "network",
    ObjectKind.VM: "vm",
    ObjectKind.TEMPLATE: "vm",
}


def live_pool_uuid(cache: ObjectCache) -> str:
    """The uuid of the pool a cache holds ("" before its first sync)."""
    pools = list(cache.all("pool").values())
    return str(pools[0].get("uuid", "")) if pools else ""


def pool_path(pool_uuid: str) -> Path:
    """The path of a pool. A pool whose uuid is not known yet is named with
    an empty uuid, which no grant names: only a grant on everything reaches it."""
    return (EVERYTHING, ObjectRef(ObjectKind.POOL, pool_uuid))


def is_plain_vm(record: Record) -> bool:
    """A VM people run (not a template, a snapshot or a control domain)."""
    return not (
        record.get("is_a_template")
        or record.get("is_a_snapshot")
        or record.get("is_control_domain")
    )


def _vm_host(cache: ObjectCache, record: Record) -> Record | None:
    for field in ("resident_on", "affinity"):
        ref = str(record.get(field) or NULL_REF)
        host = cache.get("host", ref) if ref != NULL_REF else None
        if host is not None:
            return host
    return None


def object_path(pool_uuid: str, cache: ObjectCache, obj: ObjectRef) -> Path | None:
    """Where ``obj`` sits if this pool has it; None if it does not."""
    top = pool_path(pool_uuid)
    if obj.kind is ObjectKind.POOL:
        return top if obj.ref and obj.ref == pool_uuid else None
    cls = XAPI_CLASS.get(obj.kind)
    if cls is None:
        return None
    ref = cache.ref_of(cls, obj.ref)
    record = cache.get(cls, ref) if ref else None
    if record is None:
        return None
    if cls != "vm":
        return (*top, obj)
    if bool(record.get("is_a_template")) != (obj.kind is ObjectKind.TEMPLATE):
        return None
    if obj.kind is ObjectKind.VM:
        host = _vm_host(cache, record)
        if host is not None:
            return (*top, ObjectRef(ObjectKind.HOST, str(host.get("uuid", ""))), obj)
    return (*top, obj)


def visible_entry(
    entry: dict[str, Any],
    pool_uuid: str,
    cache: ObjectCache | None,
    visible: Callable[[Path], bool],
) -> dict[str, Any] | None:
    """A dashboard entry of one pool (see ``PoolManager.overview``) cut to
    what ``visible`` allows; None when nothing of the pool may be seen.

    Seen in part, a pool keeps its id, name and state (the frame the visible
    objects are shown in) but not its URL, and lists only the hosts, SRs and
    VMs that may be seen.
    """
    top = pool_path(pool_uuid)
    if visible(top):
        return entry

    def vm_path(uuid: str) -> Path:
        found = object_path(pool_uuid, cache, ObjectRef(ObjectKind.VM, uuid)) if cache else None
        return found or (*top, ObjectRef(ObjectKind.VM, uuid))

    hosts = [h for h in entry["hosts"] if visible((*top, ObjectRef(ObjectKind.HOST, h["uuid"])))]
    srs = [s for s in entry["srs"] if visible((*top, ObjectRef(ObjectKind.SR, s["uuid"])))]
    vms = [v for v in entry["vms"] if visible(vm_path(v["uuid"]))]
    if not (hosts or srs or vms):
        return None
    return {
        **entry,
        "url": "",
        "hosts": hosts,
        "srs": srs,
        "vms": vms,
        "running": sum(1 for v in vms if v["power_state"] == "Running"),
    }


@dataclass(frozen=True, slots=True)
class PoolObject:
    """An object a grant can name, as the object picker shows it."""

    ref: ObjectRef
    name: str
    pool_id: int
    pool_name: str


class PoolTree:
    """The paths and names of the objects of every connected pool."""

    def __init__(self, manager: PoolManager) -> None:
        self._manager = manager

    def _pools(self) -> list[tuple[int, str, str, ObjectCache]]:
        """(id, uuid, name, cache) of each connected pool."""
        out = []
        for conn in self._manager.connections():
            cache = conn.watcher.cache
            uuid = live_pool_uuid(cache) or conn.pool.uuid
            out.append((conn.pool.id, uuid, conn.pool.name, cache))
        return out

    def path_of(self, obj: ObjectRef) -> Path | None:
        """Where a pool object sits; None when no connected pool has it."""
        if obj.kind is ObjectKind.ALL:
            return (EVERYTHING,)
        for _id, uuid, _name, cache in self._pools():
            found = object_path(uuid, cache, obj)
            if found is not None:
                return found
        return None

    async def pool_path(self, pool_id: int) -> Path | None:
        """The path of a registered pool by its registration id; None if unknown."""
        for pid, uuid, _name, _cache in self._pools():
            if pid == pool_id and uuid:
                return pool_path(uuid)
        pools = {p.id: p for p in await self._manager.pools()}
        pool = pools.get(pool_id)
        return None if pool is None else pool_path(pool.uuid)

    def name_of(self, obj: ObjectRef) -> str | None:
        """The name people know an object by; None when no connected pool has it."""
        for _id, uuid, name, cache in self._pools():
            if obj.kind is ObjectKind.POOL and obj.ref == uuid:
                return name
            cls = XAPI_CLASS.get(obj.kind)
            ref = cache.ref_of(cls, obj.ref) if cls else None
            record = cache.get(cls, ref) if cls and ref else None
            if record is not None and object_path(uuid, cache, obj) is not None:
                return str(record.get("name_label", ""))
        return None

    def refs(self) -> list[ObjectRef]:
        """Every object a grant can name in the connected pools."""
        return [o.ref for o in self.objects()]

    def objects(self) -> list[PoolObject]:
        """Every object a grant can name in the connected pools, pool by pool."""
        out: list[PoolObject] = []
        for pid, uuid, name, cache in self._pools():
            if uuid:
                out.append(PoolObject(ObjectRef(ObjectKind.POOL, uuid), name, pid, name))
            kinds = (ObjectKind.HOST, ObjectKind.SR, ObjectKind.NETWORK)
            for kind in kinds:
                for record in cache.all(XAPI_CLASS[kind]).values():
                    out.append(_picked(kind, record, pid, name))
            for record in cache.all("vm").values():
                if record.get("is_a_snapshot") or record.get("is_control_domain"):
                    continue
                kind = ObjectKind.TEMPLATE if record.get("is_a_template") else ObjectKind.VM
                out.append(_picked(kind, record, pid, name))
        order = list(ObjectKind)
        out.sort(key=lambda o: (o.pool_name.lower(), o.pool_id, order.index(o.ref.kind), o.name))
        return out


def _picked(kind: ObjectKind, record: Record, pool_id: int, pool_name: str) -> PoolObject:
    ref = ObjectRef(kind, str(record.get("uuid", "")))
    return PoolObject(ref, str(record.get("name_label", "")), pool_id, pool_name)
