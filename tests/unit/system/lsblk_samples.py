"""``lsblk --json --bytes -o NAME,PATH,...,PKNAME`` output of a XenKeep
appliance under XenServer, written by hand in the shape util-linux 2.38
prints (a tree: partitions nested under their disk as ``children``).

- xvda: the system disk, xvda1 at /boot, xvda2 holding /
- xvdb: a blank extra disk
- xvdc: an extra disk with an old XenKeep XFS (whole disk, no partitions)
- xvdd: the VM's CD drive (type rom)
- xvde: a swap disk in use
"""

from __future__ import annotations

import json
from typing import Any

GiB = 1 << 30
OLD_UUID = "6f1e2c1a-7d1b-4c9e-8a55-0d2f3c4b5a69"
ROOT_UUID = "2d7c9f1e-5a4b-4c3d-8e9f-0a1b2c3d4e5f"


def dev(name: str, size: int, type_: str = "disk", **kw: Any) -> dict[str, Any]:
    """One lsblk JSON entry with the columns XenKeep asks for."""
    entry: dict[str, Any] = {
        "name": name,
        "path": f"/dev/{name}",
        "size": size,
        "type": type_,
        "ro": False,
        "rm": False,
        "fstype": None,
        "label": None,
        "uuid": None,
        "model": None,
        "serial": None,
        "mountpoints": [None],
        "pkname": None,
    }
    entry.update(kw)
    return entry


XEN_APPLIANCE: dict[str, Any] = {
    "blockdevices": [
        dev(
            "xvda",
            8 * GiB,
            children=[
                dev(
                    "xvda1", 512 << 20, "part", fstype="ext4", mountpoints=["/boot"], pkname="xvda"
                ),
                dev("xvda2", 7 * GiB, "part", fstype="ext4", mountpoints=["/"], pkname="xvda"),
            ],
        ),
        dev("xvdb", 100 * GiB),
        dev("xvdc", 50 * GiB, fstype="xfs", label="xenkeep-bak", uuid=OLD_UUID),
        dev("xvdd", 1 << 20, "rom", ro=True, rm=True, fstype="iso9660", label="XenServer Tools"),
        dev(
            "xvde",
            2 * GiB,
            fstype="swap",
            uuid="0b7a9f5e-2d0c-4e1b-9e3c-1f2a3b4c5d6e",
            mountpoints=["[SWAP]"],
        ),
    ]
}


def xen_appliance_json(**changes: dict[str, Any]) -> str:
    """XEN_APPLIANCE as lsblk prints it, top-level disks updated by name."""
    sample = json.loads(json.dumps(XEN_APPLIANCE))
    for d in sample["blockdevices"]:
        d.update(changes.get(d["name"], {}))
    return json.dumps(sample, indent=3)


def btrfs_root(**xvdb: Any) -> str:
    """XEN_APPLIANCE with a btrfs root on xvda2 that a second device, xvdb, joined.

    lsblk shows the mount only on the device mountinfo names; the other
    members of the filesystem carry its UUID and nothing else.
    """
    sample = json.loads(xen_appliance_json(xvdb={"fstype": "btrfs", "uuid": ROOT_UUID, **xvdb}))
    sample["blockdevices"][0]["children"][1].update(fstype="btrfs", uuid=ROOT_UUID)
    return json.dumps(sample)
