"""The appliance's own XVA: the records of the XenKeep VM, packed by ``image/build.py``.

The archive format is :mod:`xenkeep.formats.xva`; this module only says what
the appliance VM is: a halted HVM (BIOS) VM with one bootable disk and one
VIF, six records in all (VM, VBD, VDI, VIF and placeholder SR and network),
with ids ``Ref:000`` to ``Ref:005`` and every UUID derived from one input, so
that two builds of the same commit give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from xenkeep.formats.xva import (
    ProgressFn,
    XvaObject,
    XvaVersion,
    XvaWriteStats,
    complete_record,
    write_xva,
)

GIB: Final = 1 << 30


@dataclass(frozen=True)
class ApplianceSpec:
    """A halted HVM (BIOS) VM with one bootable disk and one VIF.

    ``vm_uuid`` fixes every UUID of the archive: those not given are derived
    from it (UUIDv5), so a build passing the same values gets the same bytes.
    The SR and network records are placeholders: on import XAPI looks the SR
    up by UUID (absent, so the import's ``sr_id`` or the pool default is used)
    and the network by name label, then by bridge (``xenbr0`` is the first
    physical NIC's network on every XenServer/XCP-ng host).
    """

    name: str
    description: str
    disk_size: int
    vm_uuid: str
    vcpus: int = 2
    memory: int = 2 * GIB
    vdi_uuid: str | None = None
    vbd_uuid: str | None = None
    vif_uuid: str | None = None
    sr_uuid: str | None = None
    network_uuid: str | None = None
    vdi_name: str | None = None
    vdi_description: str = ""
    other_config: Mapping[str, str] = field(default_factory=dict)
    tags: Sequence[str] = ()
    platform: Mapping[str, str] = field(default_factory=dict)
    network_name: str = "Pool-wide network associated with eth0"
    network_bridge: str = "xenbr0"
    #: Disk first: the appliance boots from its disk; an ISO attached for
    #: rescue needs an explicit boot-order change.
    boot_order: str = "cd"
    product_version: str = "0"
    build_number: str = "0"
    hostname: str = "xenkeep-build"

    def uuid_for(self, role: str) -> str:
        """The UUID of the record playing ``role`` (vm, vdi, vbd, vif, sr, network)."""
        given = getattr(self, f"{role}_uuid")
        if given:
            return str(uuid.UUID(given))
        return str(uuid.uuid5(uuid.UUID(self.vm_uuid), f"xenkeep-xva-{role}"))


#: Platform keys XenServer's "Other install media" template sets for an HVM
#: guest; viridian off because the appliance runs Linux.
DEFAULT_PLATFORM: Final[Mapping[str, str]] = {
    "timeoffset": "0",
    "device-model": "qemu-upstream-compat",
    "viridian": "false",
    "acpi": "1",
    "apic": "true",
    "pae": "true",
    "nx": "true",
    "hpet": "true",
    "vga": "std",
    "videoram": "8",
    "secureboot": "false",
}

#: Ids of the appliance's records. Zero-padded so that lexicographic order
#: (the order XAPI streams VDIs in) equals numeric order.
VM_REF: Final = "Ref:000"
VBD_REF: Final = "Ref:001"
VDI_REF: Final = "Ref:002"
VIF_REF: Final = "Ref:003"
SR_REF: Final = "Ref:004"
NETWORK_REF: Final = "Ref:005"


def appliance_objects(spec: ApplianceSpec) -> list[XvaObject]:
    """The six complete records (VM, VBD, VDI, VIF, SR, network) of ``spec``."""
    if spec.disk_size <= 0:
        raise ValueError("disk_size must be positive")
    if spec.vcpus <= 0 or spec.memory <= 0:
        raise ValueError("vcpus and memory must be positive")
    vm = complete_record(
        "VM",
        {
            "uuid": spec.uuid_for("vm"),
            "name_label": spec.name,
            "name_description": spec.description,
            "memory_static_max": spec.memory,
            "memory_dynamic_max": spec.memory,
            "memory_dynamic_min": spec.memory,
            "memory_static_min": spec.memory,
            "VCPUs_max": spec.vcpus,
            "VCPUs_at_startup": spec.vcpus,
            "VBDs": [VBD_REF],
            "VIFs": [VIF_REF],
            "HVM_boot_policy": "BIOS order",
            "HVM_boot_params": {"order": spec.boot_order, "firmware": "bios"},
            "platform": {**DEFAULT_PLATFORM, **spec.platform},
            "other_config": dict(spec.other_config),
            "tags": list(spec.tags),
            "domain_type": "hvm",
        },
    )
    vbd = complete_record(
        "VBD",
        {
            "uuid": spec.uuid_for("vbd"),
            "VM": VM_REF,
            "VDI": VDI_REF,
            "device": "xvda",
            "userdevice": "0",
            "bootable": True,
            "mode": "RW",
            "type": "Disk",
        },
    )
    vdi = complete_record(
        "VDI",
        {
            "uuid": spec.uuid_for("vdi"),
            "name_label": spec.vdi_name or spec.name,
            "name_description": spec.vdi_description,
            "SR": SR_REF,
            "VBDs": [VBD_REF],
            "virtual_size": spec.disk_size,
            "physical_utilisation": spec.disk_size,
            "type": "user",
        },
    )
    # An empty MAC with MAC_autogenerated lets the importing host pick one
    # (XAPI blanks it anyway unless the import is a full restore).
    vif = complete_record(
        "VIF",
        {
            "uuid": spec.uuid_for("vif"),
            "device": "0",
            "network": NETWORK_REF,
            "VM": VM_REF,
            "MAC": "",
            "MAC_autogenerated": True,
            "MTU": 1500,
        },
    )
    sr = complete_record(
        "SR",
        {
            "uuid": spec.uuid_for("sr"),
            "name_label": "Local storage",
            "VDIs": [VDI_REF],
            "type": "ext",
            "content_type": "user",
        },
    )
    network = complete_record(
        "network",
        {
            "uuid": spec.uuid_for("network"),
            "name_label": spec.network_name,
            "VIFs": [VIF_REF],
            "bridge": spec.network_bridge,
            "MTU": 1500,
        },
    )
    return [
        XvaObject("VM", VM_REF, vm),
        XvaObject("VBD", VBD_REF, vbd),
        XvaObject("VDI", VDI_REF, vdi),
        XvaObject("VIF", VIF_REF, vif),
        XvaObject("SR", SR_REF, sr),
        XvaObject("network", NETWORK_REF, network),
    ]


def appliance_version(spec: ApplianceSpec, mtime: int) -> XvaVersion:
    """The version struct of an appliance XVA built at ``mtime``."""
    date = dt.datetime.fromtimestamp(mtime, dt.UTC).strftime("%Y-%m-%d")
    return XvaVersion(
        hostname=spec.hostname,
        date=date,
        product_version=spec.product_version,
        build_number=spec.build_number,
    )


def write_appliance_xva(
    out: BinaryIO,
    spec: ApplianceSpec,
    raw_disk_path: Path,
    *,
    mtime: int,
    progress: ProgressFn | None = None,
) -> XvaWriteStats:
    """Stream the appliance VM ``spec`` with the raw disk image at ``raw_disk_path``.

    The image may be smaller than ``spec.disk_size`` (the rest of the disk is
    zeros), never larger. ``mtime`` is the only timestamp in the archive
    (pass ``SOURCE_DATE_EPOCH``).
    """
    image_size = Path(raw_disk_path).stat().st_size
    if image_size > spec.disk_size:
        raise ValueError(f"raw image of {image_size} bytes exceeds disk_size {spec.disk_size}")
    return write_xva(
        out,
        appliance_version(spec, mtime),
        appliance_objects(spec),
        {VDI_REF: Path(raw_disk_path)},
        mtime=mtime,
        progress=progress,
    )
