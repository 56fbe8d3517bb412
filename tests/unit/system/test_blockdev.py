"""Block devices: lsblk/wipefs/mountinfo parsers and the backup mount unit."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.unit.system.lsblk_samples import (
    OLD_UUID,
    ROOT_UUID,
    XEN_APPLIANCE,
    GiB,
    btrfs_root,
    dev,
    xen_appliance_json,
)
from xenkeep.system.blockdev import (
    BlockDevError,
    Signature,
    find_mount,
    mount_unit_name,
    mounted_uuids,
    parse_lsblk,
    parse_wipefs,
    render_mount_unit,
    with_signature,
)


def test_xen_appliance_disks() -> None:
    disks = {d.name: d for d in parse_lsblk(xen_appliance_json())}
    # The CD drive is not a disk; partitions are not listed on their own.
    assert sorted(disks) == ["xvda", "xvdb", "xvdc", "xvde"]
    assert disks["xvda"].in_use == "holds the root filesystem"
    assert disks["xvda"].partitions == ("xvda1", "xvda2")
    assert disks["xvdb"].in_use == ""
    assert disks["xvdb"].size == 100 * GiB
    assert disks["xvdb"].fstype is None and disks["xvdb"].mountpoints == ()
    assert disks["xvdc"].in_use == ""
    assert (disks["xvdc"].fstype, disks["xvdc"].label, disks["xvdc"].uuid) == (
        "xfs",
        "xenkeep-bak",
        OLD_UUID,
    )
    assert disks["xvde"].in_use == "is swap"
    assert disks["xvde"].mountpoints == ("[SWAP]",)
    assert disks["xvdb"].to_json() == {
        "name": "xvdb",
        "path": "/dev/xvdb",
        "size": 100 * GiB,
        "model": None,
        "serial": None,
        "fstype": None,
        "label": None,
        "uuid": None,
        "mountpoints": [],
        "partitions": [],
        "in_use": "",
    }
    # The JSON form is what goes over the helper's socket.
    assert json.loads(json.dumps(disks["xvda"].to_json()))["partitions"] == ["xvda1", "xvda2"]


@pytest.mark.parametrize(
    ("changes", "in_use"),
    [
        ({"mountpoints": ["/mnt/old"]}, "is mounted at /mnt/old"),
        ({"mountpoints": ["/a", "/b"]}, "is mounted at /a; is mounted at /b"),
        ({"ro": True}, "read-only"),
        ({"rm": True, "ro": True}, "read-only; removable"),
        ({"size": 0}, "has no medium (size 0)"),
        ({"fstype": "swap", "mountpoints": [None]}, "is swap"),
        (
            {"children": [dev("xvdb1", GiB, "part", mountpoints=["/data"], pkname="xvdb")]},
            "partition xvdb1 is mounted at /data",
        ),
        (
            {"children": [dev("xvdb1", GiB, "part", fstype="swap", pkname="xvdb")]},
            "partition xvdb1 is swap",
        ),
        (
            # An unmounted partition leaves the disk free (format erases it).
            {"children": [dev("xvdb1", GiB, "part", fstype="ext4", pkname="xvdb")]},
            "",
        ),
        (
            {"children": [dev("vg-data", GiB, "lvm", pkname="xvdb")]},
            "LVM volume vg-data is active",
        ),
        (
            {"children": [dev("md0", GiB, "raid1", mountpoints=["/srv"], pkname="xvdb")]},
            "RAID array md0 is mounted at /srv",
        ),
        # util-linux before 2.37 printed flags and sizes as strings.
        ({"ro": "1", "size": "107374182400"}, "read-only"),
    ],
)
def test_in_use_reasons(changes: dict[str, object], in_use: str) -> None:
    disks = {d.name: d for d in parse_lsblk(xen_appliance_json(xvdb=changes))}
    assert disks["xvdb"].in_use == in_use


def test_root_through_lvm_is_never_a_candidate() -> None:
    root_lv = dev("vg-root", 7 * GiB, "lvm", fstype="xfs", mountpoints=["/"], pkname="xvda2")
    sample = {
        "blockdevices": [
            dev(
                "xvda",
                8 * GiB,
                children=[
                    dev("xvda1", GiB, "part", pkname="xvda"),
                    dev(
                        "xvda2",
                        7 * GiB,
                        "part",
                        fstype="LVM2_member",
                        pkname="xvda",
                        children=[root_lv],
                    ),
                ],
            )
        ]
    }
    (disk,) = parse_lsblk(json.dumps(sample))
    assert disk.in_use == "holds the root filesystem"


def test_flat_list_output_links_partitions_by_pkname() -> None:
    # lsblk --list prints every device at the top level; PKNAME links them.
    flat = [
        dev("xvda", 8 * GiB),
        dev("xvda1", GiB, "part", pkname="xvda"),
        dev("xvda2", 7 * GiB, "part", mountpoints=["/"], pkname="xvda"),
        dev("xvdb", 8 * GiB),
    ]
    disks = {d.name: d for d in parse_lsblk(json.dumps({"blockdevices": flat}))}
    assert disks["xvda"].in_use == "holds the root filesystem"
    assert disks["xvda"].partitions == ("xvda1", "xvda2")
    assert disks["xvdb"].in_use == ""


def test_loop_devices_only_when_asked() -> None:
    sample = {"blockdevices": [*XEN_APPLIANCE["blockdevices"], dev("loop0", 300 << 20, "loop")]}
    text = json.dumps(sample)
    assert "loop0" not in [d.name for d in parse_lsblk(text)]
    loop = [d for d in parse_lsblk(text, include_loop=True) if d.name == "loop0"]
    assert loop and loop[0].in_use == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not JSON"),
        ("lsblk: unknown column: MOUNTPOINTS", "not JSON"),
        ("[]", 'no "blockdevices"'),
        ('{"blockdevices": {}}', "not a list"),
        ('{"blockdevices": [42]}', "device #1 is not an object"),
        ('{"blockdevices": [{"type": "disk", "size": 1}]}', "device #1 has no name"),
        ('{"blockdevices": [{"name": "xvdb", "size": 1}]}', "'xvdb' has no type"),
        (
            '{"blockdevices": [{"name": "xvdb", "type": "disk", "size": "100G"}]}',
            "size is not a number of bytes",
        ),
        (
            '{"blockdevices": [{"name": "xvdb", "type": "disk", "size": 1, "ro": "yes"}]}',
            "ro is not a boolean",
        ),
        (
            '{"blockdevices": [{"name": "xvdb", "type": "disk", "size": 1, "mountpoints": "/"}]}',
            "mountpoints is not a list",
        ),
        (
            '{"blockdevices": [{"name": "xvdb", "type": "disk", "size": 1, "children": 3}]}',
            "children is not a list",
        ),
        (
            '{"blockdevices": [{"name": "xvdb", "type": "disk", "size": 1, "children": [{}]}]}',
            "a child of 'xvdb' has no name",
        ),
        (
            '{"blockdevices": [{"name": "xvdb", "type": "disk", "size": 1, "model": 7}]}',
            "model is not a string",
        ),
    ],
)
def test_malformed_lsblk(text: str, message: str) -> None:
    with pytest.raises(BlockDevError, match=message):
        parse_lsblk(text)


def test_wipefs_signatures() -> None:
    assert parse_wipefs('{\n   "signatures": [\n\n   ]\n}\n') == []
    assert parse_wipefs("") == []
    sigs = parse_wipefs(
        json.dumps(
            {
                "signatures": [
                    {"device": "xvdb", "offset": "0x0", "type": "xfs", "uuid": "u-1", "label": ""},
                    {"device": "xvdb", "offset": "0x1fe", "type": "PMBR"},
                ]
            }
        )
    )
    assert [(s.type, s.offset, s.uuid, s.label) for s in sigs] == [
        ("xfs", 0, "u-1", None),
        ("PMBR", 0x1FE, None, None),
    ]
    for bad, message in [
        ("nope", "not JSON"),
        ("{}", 'no "signatures"'),
        ('{"signatures": [{"offset": "0x0"}]}', "has no type"),
        ('{"signatures": [{"type": "xfs", "offset": "zz"}]}', "bad offset"),
    ]:
        with pytest.raises(BlockDevError, match=message):
            parse_wipefs(bad)


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 202:2 / / rw,relatime - ext4 /dev/xvda2 rw
40 27 202:16 / /srv/xenkeep rw,noatime - xfs /dev/xvdb rw,attr2
41 27 7:0 / /tmp/a\\040b rw - xfs /dev/loop0 rw
"""


def test_find_mount() -> None:
    entry = find_mount(MOUNTINFO, "/srv/xenkeep")
    assert entry is not None and (entry.source, entry.fstype) == ("/dev/xvdb", "xfs")
    assert find_mount(MOUNTINFO, "/srv/xenkeep/") == entry
    assert find_mount(MOUNTINFO, "/tmp/a b") is not None
    assert find_mount(MOUNTINFO, "/srv") is None
    stacked = MOUNTINFO + "42 40 8:16 / /srv/xenkeep rw - ext4 /dev/sdb rw\n"
    assert find_mount(stacked, "/srv/xenkeep") == type(entry)("/dev/sdb", "ext4")
    with pytest.raises(BlockDevError, match="cannot read line"):
        find_mount("garbage\n", "/srv/xenkeep")


@pytest.mark.parametrize(
    "path", ["/srv/xenkeep", "/", "/tmp/pytest-of-root/a b-c/x.y", "/mnt/.hidden", "/mnt/é"]
)
def test_mount_unit_name_matches_systemd_escape(path: str) -> None:
    expected = {"/srv/xenkeep": "srv-xenkeep.mount", "/": "-.mount"}
    if path in expected:
        assert mount_unit_name(path) == expected[path]
    escape = shutil.which("systemd-escape")
    if escape is None:
        pytest.skip("systemd-escape is not installed")
    out = subprocess.run(
        [escape, "--path", "--suffix=mount", path], check=True, capture_output=True, text=True
    )
    assert mount_unit_name(path) == out.stdout.strip()


def test_mount_unit() -> None:
    text = render_mount_unit(OLD_UUID, "xfs", "/srv/xenkeep")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "[Unit]",
        "Description=XenKeep backup storage",
        "After=systemd-tmpfiles-setup.service",
        "Before=xenkeepd.service",
        "[Mount]",
        f"What=/dev/disk/by-uuid/{OLD_UUID}",
        "Where=/srv/xenkeep",
        "Type=xfs",
        "Options=noatime,nodev,nosuid,noexec,nofail",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    with pytest.raises(BlockDevError, match="not a filesystem UUID"):
        render_mount_unit("x\nExecStart=/bin/sh", "xfs", "/srv/xenkeep")
    with pytest.raises(BlockDevError, match="not a supported filesystem"):
        render_mount_unit(OLD_UUID, "vfat", "/srv/xenkeep")


def test_probed_signature_fills_in_what_lsblk_did_not_know() -> None:
    # Without (or before) udev, lsblk knows no filesystem; a probe of the disk does.
    (xvdb,) = [d for d in parse_lsblk(xen_appliance_json()) if d.name == "xvdb"]
    xfs = with_signature(xvdb, Signature("xfs", 0, OLD_UUID, "xenkeep-bak"))
    assert (xfs.fstype, xfs.uuid, xfs.label, xfs.in_use) == ("xfs", OLD_UUID, "xenkeep-bak", "")
    swap = with_signature(xvdb, Signature("swap", 0xFF6, None, None))
    assert swap.in_use == "is swap"


def test_the_second_device_of_a_btrfs_root_holds_the_root() -> None:
    # lsblk shows the mount only on the device the kernel names in mountinfo;
    # the other members carry nothing but the filesystem's UUID.
    disks = {d.name: d for d in parse_lsblk(btrfs_root())}
    assert disks["xvda"].in_use == "holds the root filesystem"
    assert disks["xvdb"].in_use == "holds the root filesystem"
    assert disks["xvdc"].in_use == ""
    # ... and as a partition of another disk.
    part = dev("xvdb1", GiB, "part", fstype="btrfs", uuid=ROOT_UUID, pkname="xvdb")
    disks = {d.name: d for d in parse_lsblk(btrfs_root(fstype=None, uuid=None, children=[part]))}
    assert disks["xvdb"].in_use == "holds the root filesystem"


def test_a_member_of_any_mounted_filesystem_is_in_use() -> None:
    data = "9a8b7c6d-1111-2222-3333-444455556666"
    sample = xen_appliance_json(
        xvdb={"fstype": "btrfs", "uuid": data},
        xvdc={"fstype": "btrfs", "uuid": data, "mountpoints": ["/data"]},
    )
    disks = {d.name: d for d in parse_lsblk(sample)}
    assert disks["xvdb"].in_use == "holds part of the btrfs filesystem at /data"
    assert disks["xvdc"].in_use == "is mounted at /data"
    assert mounted_uuids(sample)[data] == ("/data",)


def test_a_probe_finds_a_member_udev_did_not_know() -> None:
    sample = btrfs_root(fstype=None, uuid=None)
    (xvdb,) = [d for d in parse_lsblk(sample) if d.name == "xvdb"]
    assert xvdb.in_use == ""
    sig = Signature(type="btrfs", offset=65536, uuid=ROOT_UUID, label=None)
    probed = with_signature(xvdb, sig, mounted_uuids(sample))
    assert probed.in_use == "holds the root filesystem"
    assert with_signature(xvdb, sig).in_use == ""
