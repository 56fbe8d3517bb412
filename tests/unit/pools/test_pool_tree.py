"""Where pool objects sit in the permission tree, read from an object cache
fed XAPI events; the dashboard entry cut to what may be seen; the paths
requests name through Places."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xenkeep.auth.const import Role
from xenkeep.auth.permissions import (
    APPLIANCE,
    EVERYTHING,
    Action,
    ObjectKind,
    ObjectRef,
    ObjectRole,
    Path,
    Principal,
)
from xenkeep.auth.places import JobFacts, Places, Via
from xenkeep.pools.tree import object_path, pool_path, visible_entry
from xenkeep.xapi.events import ObjectCache

NULL = "OpaqueRef:NULL"


def cache_of(*records: tuple[str, str, dict[str, Any]]) -> ObjectCache:
    cache = ObjectCache()
    cache.replace(
        [{"class": c, "ref": r, "operation": "add", "snapshot": s} for c, r, s in records],
        ["pool", "host", "SR", "network", "VM"],
    )
    return cache


def vm(
    uuid: str, *, on: str = NULL, affinity: str = NULL, template: bool = False
) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "name_label": f"name-{uuid}",
        "resident_on": on,
        "affinity": affinity,
        "is_a_template": template,
        "is_a_snapshot": False,
        "is_control_domain": False,
        "power_state": "Running" if on != NULL else "Halted",
    }


CACHE = cache_of(
    ("pool", "P", {"uuid": "pool-1", "name_label": "prod"}),
    ("host", "H1", {"uuid": "host-1", "name_label": "h1"}),
    ("host", "H2", {"uuid": "host-2", "name_label": "h2"}),
    ("SR", "S", {"uuid": "sr-1", "name_label": "nfs"}),
    ("network", "N", {"uuid": "net-1", "name_label": "lan"}),
    ("VM", "V1", vm("vm-1", on="H1", affinity="H2")),
    ("VM", "V2", vm("vm-2", affinity="H2")),
    ("VM", "V3", vm("vm-3")),
    ("VM", "T", vm("tpl-1", template=True)),
)
TOP = pool_path("pool-1")


def ref(kind: ObjectKind, uuid: str) -> ObjectRef:
    return ObjectRef(kind, uuid)


def test_a_running_vm_sits_under_its_host_a_halted_one_under_its_affinity() -> None:
    host1, host2 = ref(ObjectKind.HOST, "host-1"), ref(ObjectKind.HOST, "host-2")
    assert object_path("pool-1", CACHE, ref(ObjectKind.VM, "vm-1")) == (
        *TOP,
        host1,
        ref(ObjectKind.VM, "vm-1"),
    )
    assert object_path("pool-1", CACHE, ref(ObjectKind.VM, "vm-2"))[-2] == host2  # type: ignore[index]
    assert object_path("pool-1", CACHE, ref(ObjectKind.VM, "vm-3")) == (
        *TOP,
        ref(ObjectKind.VM, "vm-3"),
    )


def test_pool_level_objects_sit_under_the_pool() -> None:
    for kind, uuid in (
        (ObjectKind.HOST, "host-1"),
        (ObjectKind.SR, "sr-1"),
        (ObjectKind.NETWORK, "net-1"),
        (ObjectKind.TEMPLATE, "tpl-1"),
    ):
        assert object_path("pool-1", CACHE, ref(kind, uuid)) == (*TOP, ref(kind, uuid))
    assert object_path("pool-1", CACHE, ref(ObjectKind.POOL, "pool-1")) == TOP


def test_a_kind_that_does_not_match_the_object_finds_nothing() -> None:
    assert object_path("pool-1", CACHE, ref(ObjectKind.TEMPLATE, "vm-1")) is None
    assert object_path("pool-1", CACHE, ref(ObjectKind.VM, "tpl-1")) is None
    assert object_path("pool-1", CACHE, ref(ObjectKind.VM, "absent")) is None
    assert object_path("pool-1", CACHE, ref(ObjectKind.POOL, "pool-2")) is None


def test_the_uuid_index_follows_events() -> None:
    cache = cache_of(("VM", "V1", vm("vm-1")))
    cache.apply({"class": "VM", "ref": "V1", "operation": "del"})
    assert cache.ref_of("vm", "vm-1") is None
    cache.apply({"class": "VM", "ref": "V9", "operation": "add", "snapshot": vm("vm-9")})
    assert cache.ref_of("vm", "vm-9") == "V9"


def entry() -> dict[str, Any]:
    return {
        "id": 1,
        "name": "prod",
        "url": "https://master",
        "status": {},
        "hosts": [{"uuid": "host-1"}, {"uuid": "host-2"}],
        "srs": [{"uuid": "sr-1"}],
        "vms": [
            {"uuid": "vm-1", "power_state": "Running"},
            {"uuid": "vm-2", "power_state": "Halted"},
        ],
        "running": 1,
    }


def test_a_pool_seen_in_part_shows_only_those_parts_and_not_its_url() -> None:
    viewer = Principal(1, "v", Role.USER, {ref(ObjectKind.VM, "vm-2"): ObjectRole.VIEWER})
    shown = visible_entry(entry(), "pool-1", CACHE, lambda p: viewer.may(Action.VIEW, p))
    assert shown is not None
    assert [v["uuid"] for v in shown["vms"]] == ["vm-2"]
    assert shown["hosts"] == [] and shown["srs"] == [] and shown["url"] == ""
    assert shown["running"] == 0


def test_a_host_grant_shows_the_host_and_the_vms_on_it() -> None:
    viewer = Principal(1, "v", Role.USER, {ref(ObjectKind.HOST, "host-1"): ObjectRole.VIEWER})
    shown = visible_entry(entry(), "pool-1", CACHE, lambda p: viewer.may(Action.VIEW, p))
    assert shown is not None
    assert [h["uuid"] for h in shown["hosts"]] == ["host-1"]
    assert [v["uuid"] for v in shown["vms"]] == ["vm-1"]


def test_a_pool_seen_whole_or_not_at_all() -> None:
    whole = visible_entry(entry(), "pool-1", CACHE, lambda p: True)
    assert whole == entry()
    assert visible_entry(entry(), "pool-1", CACHE, lambda p: False) is None


class FakePools:
    """The PoolPlaces contract over the cache above (pool registration 1)."""

    def path_of(self, obj: ObjectRef) -> Path | None:
        return (EVERYTHING,) if obj.kind is ObjectKind.ALL else object_path("pool-1", CACHE, obj)

    async def pool_path(self, pool_id: int) -> Path | None:
        return TOP if pool_id == 1 else None

    def name_of(self, obj: ObjectRef) -> str | None:
        return "x" if self.path_of(obj) else None

    def refs(self) -> list[ObjectRef]:
        return [ref(ObjectKind.VM, u) for u in ("vm-1", "vm-2", "vm-3")]


def places(targets: Mapping[int, str]) -> Places:
    async def jobs() -> dict[ObjectRef, JobFacts]:
        return {
            ref(ObjectKind.BACKUP_JOB, "7"): JobFacts("nightly", "1"),
            ref(ObjectKind.BACKUP_JOB, "8"): JobFacts("elsewhere", "2"),
        }

    async def target(op_id: int) -> str | None:
        return targets.get(op_id)

    return Places(FakePools(), jobs, target)


async def test_requests_name_objects_their_own_way() -> None:
    p = places({1: "backup-job:7", 2: "vm:vm-1", 3: "datastore"})
    job = ref(ObjectKind.BACKUP_JOB, "7")
    assert await p.path(ObjectKind.BACKUP_JOB, "7") == (*TOP, job)
    assert await p.path(Via.POOL_ID, "1") == TOP
    assert await p.path(Via.OPERATION, "1") == (*TOP, job)
    assert (await p.path(Via.OPERATION, "2"))[-1] == ref(ObjectKind.VM, "vm-1")
    assert await p.path(Via.OPERATION, "3") == APPLIANCE


async def test_what_cannot_be_found_is_reached_only_from_the_top() -> None:
    p = places({})
    gone = ref(ObjectKind.VM, "gone")
    assert await p.path(ObjectKind.VM, "gone") == (EVERYTHING, gone)
    # A job whose pool is not registered, an unknown registration or
    # operation: paths no grant on a pool reaches.
    assert await p.path(ObjectKind.BACKUP_JOB, "8") == (
        EVERYTHING,
        ref(ObjectKind.BACKUP_JOB, "8"),
    )
    for named, text in ((Via.POOL_ID, "9"), (Via.OPERATION, "5"), (Via.POOL_ID, "x")):
        assert await p.path(named, text) == (EVERYTHING, ref(ObjectKind.POOL, ""))
    assert await p.path(Via.POOL_ID, str(2**80)) == (EVERYTHING, ref(ObjectKind.POOL, ""))


async def test_the_operations_a_principal_may_see() -> None:
    view = await places({}).view()
    vm_viewer = Principal(1, "v", Role.USER, {ref(ObjectKind.HOST, "host-1"): ObjectRole.VIEWER})
    only = view.operation_filter(vm_viewer, Action.VIEW)
    # Every object seen: any of them may be an operation's target.
    assert only is not None and only.targets == {"vm:vm-1", "host:host-1"} and not only.kinds
    pool_viewer = Principal(1, "v", Role.USER, {ref(ObjectKind.POOL, "pool-1"): ObjectRole.VIEWER})
    only = view.operation_filter(pool_viewer, Action.VIEW)
    assert only is not None and only.targets == {
        "pool:pool-1",
        "vm:vm-1",
        "vm:vm-2",
        "vm:vm-3",
        "backup-job:7",
    }
    assert view.operation_filter(pool_viewer, Action.RUN) == type(only)()
    everything = Principal(1, "v", Role.USER, {EVERYTHING: ObjectRole.VIEWER})
    only = view.operation_filter(everything, Action.VIEW)
    assert only is not None and "vm" in only.kinds and "backup-job" in only.kinds
    assert view.operation_filter(Principal(1, "a", Role.ADMIN), Action.VIEW) is None
