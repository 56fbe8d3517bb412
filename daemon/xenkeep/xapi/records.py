"""The records XAPI's constructors take: which fields of a VM record
``VM.create`` copies, and the argument of ``VDI.create``, ``VBD.create`` and
``VIF.create`` for a disk or NIC XenKeep makes (a restore, a replica)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: Fields of a VM record that ``VM.create`` takes (the rest is runtime state).
VM_CREATE_FIELDS: Final = (
    "name_label",
    "name_description",
    "user_version",
    "affinity",
    "memory_target",
    "memory_static_max",
    "memory_dynamic_max",
    "memory_dynamic_min",
    "memory_static_min",
    "VCPUs_params",
    "VCPUs_max",
    "VCPUs_at_startup",
    "actions_after_shutdown",
    "actions_after_reboot",
    "actions_after_crash",
    "PV_bootloader",
    "PV_kernel",
    "PV_ramdisk",
    "PV_args",
    "PV_bootloader_args",
    "PV_legacy_args",
    "HVM_boot_policy",
    "HVM_boot_params",
    "HVM_shadow_multiplier",
    "platform",
    "PCI_bus",
    "other_config",
    "recommendations",
    "xenstore_data",
    "ha_always_run",
    "ha_restart_priority",
    "tags",
    "blocked_operations",
    "start_delay",
    "shutdown_delay",
    "order",
    "hardware_platform_version",
    "has_vendor_device",
    "reference_label",
    "domain_type",
    "NVRAM",
)


def vm_create_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a VM ``record`` (or snapshot) that ``VM.create`` takes."""
    return {k: record[k] for k in VM_CREATE_FIELDS if k in record}


def new_vdi(
    sr: str,
    virtual_size: int,
    *,
    name: str,
    description: str,
    other_config: Mapping[str, str],
) -> dict[str, Any]:
    """The ``VDI.create`` argument of an empty user disk on ``sr``."""
    return {
        "name_label": name,
        "name_description": description,
        "SR": sr,
        "virtual_size": virtual_size,
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": dict(other_config),
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    }


def disk_vbd(vm: str, vdi: str, userdevice: str, *, bootable: bool | None = None) -> dict[str, Any]:
    """The ``VBD.create`` argument attaching disk ``vdi`` to ``vm`` at ``userdevice``;
    the VM owns it (destroying the VM may destroy the disk)."""
    return {
        "VM": vm,
        "VDI": vdi,
        "userdevice": userdevice,
        "bootable": userdevice == "0" if bootable is None else bootable,
        "mode": "RW",
        "type": "Disk",
        "empty": False,
        "unpluggable": False,
        "other_config": {"owner": "true"},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


def new_vif(vm: str, network: str, device: str, mtu: int, mac: str = "") -> dict[str, Any]:
    """The ``VIF.create`` argument of a NIC of ``vm`` on ``network`` ("" MAC: the pool picks)."""
    return {
        "device": device,
        "network": network,
        "VM": vm,
        "MAC": mac,
        "MTU": mtu,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
