"""Run by Debian's python3 with cloud-init's modules on the path: read a seed
directory (the drive's files, as a mount would show them) through
DataSourceNoCloud's own code, check the user-data against cloud-init's
schema, and print what it read as JSON."""

import json
import sys

from cloudinit import util
from cloudinit.config.schema import get_schema, validate_cloudconfig_schema
from cloudinit.sources import DataSourceNoCloud as nocloud

seed_dir, label = sys.argv[1], sys.argv[2]
devices = []


def find_devs_with(criteria=None, **_kw):
    # What blkid would report of the one device: a FAT volume with the drive's label.
    return ["/dev/xvdd"] if criteria in (f"LABEL={label}", "TYPE=vfat") else []


def mount_cb(device, callback, data=None, **_kw):
    devices.append(device)
    return callback(seed_dir, data)


util.find_devs_with = find_devs_with
util.mount_cb = mount_cb
found = nocloud.DataSourceNoCloud._get_devices(None, "cidata")
seeded = util.mount_cb(
    found[0],
    lambda mp, data: util.pathprefix2dict(mp, **data),
    {"required": ["user-data", "meta-data"], "optional": ["vendor-data", "network-config"]},
)
merged = nocloud._merge_new_seed({"meta-data": {}}, seeded)
user = util.load_yaml(merged["user-data"])
validate_cloudconfig_schema(user, get_schema(), strict=True)
print(
    json.dumps(
        {
            "devices": devices,
            "meta-data": merged["meta-data"],
            "user-data": (
                merged["user-data"].decode()
                if isinstance(merged["user-data"], bytes)
                else merged["user-data"]
            ),
            "network-config": merged.get("network-config"),
        }
    )
)
