"""The privileged helper's backup storage operations on real disks.

Real loop devices stand in for the appliance's extra virtual disks; a real
helper :class:`Server` on a unix socket is talked to with :func:`call`; every
command runs for real (lsblk, wipefs, mkfs.xfs, blkid, chown) except
``systemctl``: this machine runs no systemd, so :class:`SystemctlMountMock`
does what systemd would do with the mount unit the helper wrote. The mount
point lives under tmp_path; the host's /srv/xenkeep is never touched. The
test looks at the disks and files from worker threads: the helper under test
shares its event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from tests.support.privhelper import DISK_SIZE, OWNER, Appliance, is_mounted, probe
from xenkeep.system.blockdev import find_mount
from xenkeep.system.helper_protocol import RequestError

pytestmark = pytest.mark.root

#: linux/fs.h: _IOW(0x94, 9, int)
FICLONE = 0x40049409


def disk_entry(listing: dict[str, object], name: str) -> dict[str, object]:
    disks = listing["disks"]
    assert isinstance(disks, list)
    (entry,) = [d for d in disks if d["name"] == name]
    assert isinstance(entry, dict)
    return entry


def clone_works(mnt: Path) -> bool:
    """Extents can be shared on ``mnt``: what merges rely on."""
    src = mnt / "a.vhd"
    src.write_bytes(os.urandom(1 << 20))
    with src.open("rb") as a, (mnt / "b.vhd").open("wb") as b:
        fcntl.ioctl(b.fileno(), FICLONE, a.fileno())
    return (mnt / "b.vhd").read_bytes() == src.read_bytes()


def owners(*paths: Path) -> list[tuple[int, int, int]]:
    """uid, gid and permission bits of each path."""
    return [(st.st_uid, st.st_gid, st.st_mode & 0o7777) for st in (p.stat() for p in paths)]


def plant_foreign_files(mnt: Path) -> Path:
    """Files of another appliance whose xenkeep had uid 4242."""
    keep = mnt / "chain" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("a restore point\n")
    for path in (mnt, keep.parent, keep):
        os.chown(path, 4242, 4242)
    return keep


async def test_format_detach_attach(appliance: Appliance) -> None:
    disk = await asyncio.to_thread(appliance.new_disk)
    mnt = appliance.mountpoint
    nobody = pwd.getpwnam(OWNER)

    listing = await appliance.call("storage.disks")
    assert listing["mounted"] is None and listing["configured"] is None
    assert listing["mountpoint"] == str(mnt)
    assert disk_entry(listing, disk)["in_use"] == ""
    assert disk_entry(listing, disk)["size"] == DISK_SIZE

    result = await appliance.call("storage.format", device=disk, confirm=disk)
    uuid = await probe(disk, "UUID")
    assert uuid
    assert result == {"device": disk, "uuid": uuid, "fstype": "xfs", "mountpoint": str(mnt)}
    assert await probe(disk, "TYPE") == "xfs"
    assert await probe(disk, "LABEL") == "xenkeep-bak"

    # Mounted from that disk, with reflink, as the unit says.
    mountinfo = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
    entry = find_mount(mountinfo, mnt)
    assert entry is not None and entry.source == f"/dev/{disk}" and entry.fstype == "xfs"
    info = await asyncio.to_thread(
        subprocess.run, ["xfs_info", str(mnt)], check=True, capture_output=True, text=True
    )
    assert "reflink=1" in info.stdout
    unit = await asyncio.to_thread(appliance.unit.read_text)
    assert f"\nWhat=/dev/disk/by-uuid/{uuid}\n" in unit
    assert f"\nWhere={mnt}\n" in unit
    assert "\nType=xfs\n" in unit
    assert "\nOptions=noatime,nodev,nosuid,noexec,nofail\n" in unit
    assert "\nBefore=xenkeepd.service\n" in unit
    assert "\nWantedBy=multi-user.target\n" in unit
    assert "local-fs.target\n" not in unit.replace("# ", "")
    assert appliance.systemd.systemctl == [
        ["daemon-reload"],
        ["enable", "--now", appliance.unit.name],
    ]
    wants = appliance.root / "etc/systemd/system/multi-user.target.wants" / appliance.unit.name
    assert await asyncio.to_thread(wants.is_symlink)
    assert {"lsblk", "wipefs", "mkfs.xfs", "blkid"} <= set(appliance.systemd.commands)

    # The filesystem root is the daemon user's, closed to others.
    assert await asyncio.to_thread(owners, mnt) == [(nobody.pw_uid, nobody.pw_gid, 0o750)]
    assert await asyncio.to_thread(clone_works, mnt)

    listing = await appliance.call("storage.disks")
    assert listing["mounted"] == {"device": disk, "uuid": uuid, "fstype": "xfs"}
    assert listing["configured"] == {"uuid": uuid, "fstype": "xfs"}
    assert disk_entry(listing, disk)["in_use"] == f"is mounted at {mnt}"

    # Nothing is formatted while backup storage is mounted, not even another disk.
    other = await asyncio.to_thread(appliance.new_disk)
    for dev in (disk, other):
        with pytest.raises(RequestError, match="already mounted") as refused:
            await appliance.call("storage.format", device=dev, confirm=dev)
        assert refused.value.field == "device"
    assert await probe(other, "TYPE") is None
    assert await asyncio.to_thread((mnt / "b.vhd").exists)

    # Simulate a disk from another appliance whose xenkeep had uid 4242.
    keep = await asyncio.to_thread(plant_foreign_files, mnt)

    # A busy filesystem does not unmount; the disk stays set up as it was.
    busy = await asyncio.to_thread(keep.open)
    with busy, pytest.raises(RequestError, match="busy"):
        await appliance.call("storage.detach")
    assert await is_mounted(mnt)
    assert await asyncio.to_thread(appliance.unit.exists)
    assert await asyncio.to_thread(wants.is_symlink)

    result = await appliance.call("storage.detach")
    assert result == {"device": disk, "mountpoint": str(mnt)}
    assert not await is_mounted(mnt)
    assert not await asyncio.to_thread(appliance.unit.exists)
    assert not await asyncio.to_thread(wants.exists)
    assert appliance.systemd.systemctl[-3:] == [
        ["stop", appliance.unit.name],
        ["disable", appliance.unit.name],
        ["daemon-reload"],
    ]
    with pytest.raises(RequestError, match="no backup disk is attached"):
        await appliance.call("storage.detach")

    # A start that fails leaves no unit behind to fail again at every boot.
    appliance.systemd.fail_start = True
    with pytest.raises(RequestError, match=r"Job for .* failed"):
        await appliance.call("storage.attach", device=disk)
    assert not await asyncio.to_thread(appliance.unit.exists)
    assert not await asyncio.to_thread(wants.exists)
    assert not await is_mounted(mnt)
    assert (await appliance.call("storage.disks"))["configured"] is None

    # Attach mounts what is there: same filesystem, files kept, owners fixed.
    commands_before = len(appliance.systemd.commands)
    result = await appliance.call("storage.attach", device=disk)
    assert result == {"device": disk, "uuid": uuid, "fstype": "xfs", "mountpoint": str(mnt)}
    assert "mkfs.xfs" not in appliance.systemd.commands[commands_before:]
    assert "wipefs" in appliance.systemd.commands[commands_before:]  # listing only
    assert await asyncio.to_thread(keep.read_text) == "a restore point\n"
    assert await probe(disk, "UUID") == uuid
    modes = await asyncio.to_thread(owners, mnt, keep.parent, keep)
    assert [m[:2] for m in modes] == [(nobody.pw_uid, nobody.pw_gid)] * 3
    assert modes[0][2] == 0o750

    await appliance.call("storage.detach")
    assert not await is_mounted(mnt)


async def test_refusals_change_nothing(appliance: Appliance) -> None:
    blank = await asyncio.to_thread(appliance.new_disk)

    with pytest.raises(RequestError, match=f"type the disk name {blank}") as refused:
        await appliance.call("storage.format", device=blank, confirm=blank + "x")
    assert refused.value.field == "confirm"
    assert await probe(blank, "TYPE") is None

    with pytest.raises(RequestError, match=f"{blank} has no filesystem: format it") as refused:
        await appliance.call("storage.attach", device=blank)
    assert refused.value.field == "device"

    # A filesystem XenKeep does not use is refused by name.
    await asyncio.to_thread(
        subprocess.run, ["mkfs.ext2", "-q", "-F", f"/dev/{blank}"], check=True, capture_output=True
    )
    with pytest.raises(RequestError, match=f"{blank} holds ext2; XenKeep attaches only xfs"):
        await appliance.call("storage.attach", device=blank)
    listing = await appliance.call("storage.disks")
    assert disk_entry(listing, blank)["fstype"] == "ext2"
    assert disk_entry(listing, blank)["in_use"] == ""

    # Swap is never taken, not even to format it.
    await asyncio.to_thread(
        subprocess.run, ["mkswap", f"/dev/{blank}"], check=True, capture_output=True
    )
    with pytest.raises(RequestError, match=f"{blank} cannot be used: it is swap"):
        await appliance.call("storage.format", device=blank, confirm=blank)
    with pytest.raises(RequestError, match=f"{blank} cannot be used: it is swap"):
        await appliance.call("storage.attach", device=blank)

    with pytest.raises(RequestError, match="there is no disk loop999"):
        await appliance.call("storage.format", device="loop999", confirm="loop999")
    with pytest.raises(RequestError, match="not a disk name"):
        await appliance.call("storage.attach", device=f"../{blank}")

    assert not await is_mounted(appliance.mountpoint)
    assert not await asyncio.to_thread(appliance.unit.exists)
    assert appliance.systemd.systemctl == []
    assert "mkfs.xfs" not in appliance.systemd.commands
