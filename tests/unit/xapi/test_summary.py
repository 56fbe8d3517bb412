"""The dashboard's view of a pool, computed from synthetic cache contents."""

from __future__ import annotations

from typing import Any

from xenkeep.xapi.events import ObjectCache
from xenkeep.xapi.summary import pool_summary

GiB = 1 << 30


def ev(cls: str, ref: str, **record: Any) -> dict[str, Any]:
    return {"class": cls, "ref": ref, "operation": "add", "snapshot": record}


def cache() -> ObjectCache:
    c = ObjectCache()
    c.replace(
        [
            ev("pool", "p", name_label="Lab", master="h1"),
            ev("host", "h1", uuid="u-h1", name_label="xen1", address="10.0.0.1", enabled=True),
            ev("host", "h2", uuid="u-h2", name_label="xen2", address="10.0.0.2", enabled=False),
            ev(
                "sr",
                "sr1",
                uuid="u-sr1",
                name_label="Local",
                type="ext",
                shared=False,
                physical_size=str(100 * GiB),
                physical_utilisation=str(25 * GiB),
                virtual_allocation=str(300 * GiB),
            ),
            ev(
                "sr",
                "iso",
                uuid="u-iso",
                name_label="ISOs",
                type="iso",
                shared=True,
                physical_size="0",
                physical_utilisation="0",
                virtual_allocation="0",
            ),
            ev("pbd", "pb1", SR="sr1", host="h2"),
            ev("pbd", "pb-iso1", SR="iso", host="h1"),
            ev("pbd", "pb-iso2", SR="iso", host="h2"),
            ev("vdi", "d1", virtual_size=str(10 * GiB), physical_utilisation=str(2 * GiB)),
            ev("vdi", "d2", virtual_size=str(30 * GiB), physical_utilisation=str(3 * GiB)),
            ev("vdi", "cd", virtual_size=str(GiB), physical_utilisation=str(GiB)),
            ev("vbd", "b1", type="Disk", VDI="d1"),
            ev("vbd", "b2", type="Disk", VDI="d2"),
            ev("vbd", "b3", type="CD", VDI="cd"),
            ev(
                "vm",
                "web",
                uuid="u-web",
                name_label="web",
                power_state="Running",
                resident_on="h2",
                VCPUs_at_startup="2",
                memory_dynamic_max=str(4 * GiB),
                VBDs=["b1", "b2", "b3"],
                is_a_template=False,
                is_a_snapshot=False,
                is_control_domain=False,
            ),
            ev(
                "vm",
                "db",
                uuid="u-db",
                name_label="DB",
                power_state="Halted",
                resident_on="OpaqueRef:NULL",
                VCPUs_at_startup="1",
                memory_static_max="1024",
                VBDs=["missing"],
                is_a_template=False,
                is_a_snapshot=False,
                is_control_domain=False,
            ),
            ev("vm", "t", name_label="Debian template", is_a_template=True),
            ev("vm", "s", name_label="web snap", is_a_snapshot=True),
            ev("vm", "dom0", name_label="Control domain", is_control_domain=True),
        ],
        ["pool", "host", "SR", "PBD", "VDI", "VBD", "VM"],
    )
    return c


def test_summary() -> None:
    s = pool_summary(cache())
    assert s["name"] == "Lab"
    assert [(h["name"], h["master"], h["enabled"]) for h in s["hosts"]] == [
        ("xen1", True, True),
        ("xen2", False, False),
    ]
    local = next(sr for sr in s["srs"] if sr["name"] == "Local")
    assert local["used_percent"] == 25.0 and local["allocated"] == 300 * GiB
    iso = next(sr for sr in s["srs"] if sr["name"] == "ISOs")
    assert iso["used_percent"] is None
    # A local SR says which host it is on; a shared one is on all of them.
    assert local["host"] == "xen2" and iso["host"] == ""
    assert [v["name"] for v in s["vms"]] == ["DB", "web"]
    web = s["vms"][1]
    assert web["host"] == "xen2" and web["vcpus"] == 2 and web["memory"] == 4 * GiB
    assert web["disks"] == 2 and web["disk_size"] == 40 * GiB and web["disk_used"] == 5 * GiB
    assert web["disk_used_percent"] == 12.5
    db = s["vms"][0]
    assert db["host"] == "" and db["disks"] == 0 and db["disk_used_percent"] is None
    assert s["running"] == 1


def test_cache_applies_events() -> None:
    c = cache()
    change = c.apply(
        {
            "class": "vm",
            "ref": "db",
            "operation": "mod",
            "snapshot": {**c.get("VM", "db"), "power_state": "Running"},
        }
    )  # type: ignore[dict-item]
    assert change is not None and change.operation == "mod"
    assert pool_summary(c)["running"] == 2
    assert c.apply({"class": "vm", "ref": "db", "operation": "del"}) is not None
    assert c.get("vm", "db") is None and c.count("VM") == 4
    assert c.apply({"class": "vm", "ref": "x", "operation": "mod"}) is None  # no snapshot
    assert c.apply({"operation": "add"}) is None
