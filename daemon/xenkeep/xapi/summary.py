"""What the dashboard shows of a pool, computed from its object cache.

A pure function of the cached records: hosts, storage repositories with
their usage, and VMs (not templates, snapshots or control domains) with
their power state, where they run and how much disk they have and use.
"""

from __future__ import annotations

from typing import Any

from xenkeep.xapi.events import ObjectCache

NULL_REF = "OpaqueRef:NULL"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _percent(used: int, size: int) -> float | None:
    return round(100.0 * used / size, 1) if size > 0 else None


def pool_summary(cache: ObjectCache) -> dict[str, Any]:
    """Hosts, SRs and VMs of one pool, sorted by name."""
    pools = list(cache.all("pool").values())
    hosts_by_ref = cache.all("host")
    vdis = cache.all("VDI")
    vbds = cache.all("VBD")

    hosts = [
        {
            "uuid": h.get("uuid", ""),
            "name": h.get("name_label", ""),
            "address": h.get("address", ""),
            "enabled": bool(h.get("enabled", True)),
            "master": bool(pools) and pools[0].get("master") == ref,
        }
        for ref, h in hosts_by_ref.items()
    ]

    # A local SR is plugged into one host; pools name them all "Local storage".
    sr_hosts: dict[str, set[str]] = {}
    for pbd in cache.all("PBD").values():
        host = hosts_by_ref.get(str(pbd.get("host", "")))
        if host is not None:
            sr_hosts.setdefault(str(pbd.get("SR", "")), set()).add(host.get("name_label", ""))

    srs = []
    for sr_ref, sr in cache.all("SR").items():
        size = _int(sr.get("physical_size"))
        used = _int(sr.get("physical_utilisation"))
        shared = bool(sr.get("shared", False))
        on = sorted(sr_hosts.get(sr_ref, ()))
        srs.append(
            {
                "uuid": sr.get("uuid", ""),
                "name": sr.get("name_label", ""),
                "type": sr.get("type", ""),
                "shared": shared,
                "host": on[0] if not shared and len(on) == 1 else "",
                "size": size,
                "used": used,
                "allocated": _int(sr.get("virtual_allocation")),
                "used_percent": _percent(used, size),
            }
        )

    vms = []
    for vm in cache.all("VM").values():
        if vm.get("is_a_template") or vm.get("is_a_snapshot") or vm.get("is_control_domain"):
            continue
        disk_size = disk_used = disks = 0
        for vbd_ref in vm.get("VBDs") or []:
            vbd = vbds.get(vbd_ref)
            if vbd is None or vbd.get("type") != "Disk":
                continue
            vdi = vdis.get(str(vbd.get("VDI", NULL_REF)))
            if vdi is None:
                continue
            disks += 1
            disk_size += _int(vdi.get("virtual_size"))
            disk_used += _int(vdi.get("physical_utilisation"))
        host = hosts_by_ref.get(str(vm.get("resident_on", NULL_REF)))
        vms.append(
            {
                "uuid": vm.get("uuid", ""),
                "name": vm.get("name_label", ""),
                "power_state": vm.get("power_state", ""),
                "host": host.get("name_label", "") if host else "",
                "vcpus": _int(vm.get("VCPUs_at_startup")),
                "memory": _int(vm.get("memory_dynamic_max") or vm.get("memory_static_max")),
                "disks": disks,
                "disk_size": disk_size,
                "disk_used": disk_used,
                "disk_used_percent": _percent(disk_used, disk_size),
            }
        )

    def by_name(item: dict[str, Any]) -> tuple[str, str]:
        return (str(item["name"]).lower(), str(item["uuid"]))

    return {
        "name": pools[0].get("name_label", "") if pools else "",
        "hosts": sorted(hosts, key=by_name),
        "srs": sorted(srs, key=by_name),
        "vms": sorted(vms, key=by_name),
        "running": sum(1 for v in vms if v["power_state"] == "Running"),
    }
