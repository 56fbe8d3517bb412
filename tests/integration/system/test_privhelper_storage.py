"""The privileged helper's backup storage operations on real disks.

Real loop devices stand in for the appliance's extra virtual disks; a real
helper :class:`Server` on a unix socket is talked to with :func:`call`; every
command runs for real (lsblk, wipefs, mkfs.xfs, blkid, chown) except
``systemctl``: this machine runs no systemd, so :class:`SystemctlMountMock`
does what systemd would do with the mount unit the helper wrote. The mount
point lives under tmp_path; the host's /srv/xenkeep is never touched.
"""

from __future__ import annotations

import asyncio
import configparser
import fcntl
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from xenkeep.system.blockdev import find_mount, mount_unit_name
from xenkeep.system.privhelper import Applier, RequestError, Server, call, run_command, serve

pytestmark = pytest.mark.root

DISK_SIZE = 300 * 1024 * 1024
#: linux/fs.h: _IOW(0x94, 9, int)
FICLONE = 0x40049409
OWNER = "nobody"


class SystemctlMountMock:
    """Runs every command for real, except ``systemctl``, which it plays.

    What systemd would do for ``daemon-reload``, ``enable --now``, ``stop``
    and ``disable`` of a mount unit: read What/Where/Type/Options from the
    unit file under ``root``, check the unit is named after Where= (systemd
    refuses it otherwise), resolve What=/dev/disk/by-uuid/... as udev's link
    would (``blkid -U``; no udev here), then ``mount``/``umount``, and add or
    remove the multi-user.target.wants link. Where= must lie under ``jail``.
    ``fail_start`` makes the next start fail after enabling, as a mount that
    times out waiting for its device would.
    """

    def __init__(self, root: Path, jail: Path) -> None:
        self.root = root
        self.jail = jail
        self.systemctl: list[list[str]] = []
        self.commands: list[str] = []
        self.fail_start = False

    async def __call__(
        self, argv: list[str], stdin: bytes | None = None, *, timeout: float = 60.0
    ) -> str:
        self.commands.append(argv[0])
        if argv[0] != "systemctl":
            return await run_command(argv, stdin, timeout=timeout)
        self.systemctl.append(argv[1:])
        if argv[1:] == ["daemon-reload"]:
            return ""
        verb, name = argv[1], argv[-1]
        assert name.endswith(".mount") and argv[1:] in (
            ["enable", "--now", name],
            ["stop", name],
            ["disable", name],
        ), argv
        unit_dir = self.root / "etc/systemd/system"
        wants = unit_dir / "multi-user.target.wants" / name
        if verb == "disable":
            wants.unlink(missing_ok=True)
            return ""
        mount = self._load(unit_dir / name)
        where = Path(mount["Where"])
        if verb == "stop":
            if is_mounted(where):
                await run_command(["umount", str(where)])
            return ""
        wants.parent.mkdir(exist_ok=True)
        wants.symlink_to(unit_dir / name)
        if self.fail_start:
            self.fail_start = False
            raise RuntimeError(f"systemctl failed: Job for {name} failed (mock)")
        uuid = mount["What"].removeprefix("/dev/disk/by-uuid/")
        device = (await run_command(["blkid", "-U", uuid])).strip()
        await run_command(
            ["mount", "-t", mount["Type"], "-o", mount["Options"], device, str(where)]
        )
        return ""

    def _load(self, path: Path) -> configparser.SectionProxy:
        unit = configparser.ConfigParser(interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read_string(path.read_text())
        mount = unit["Mount"]
        where = Path(mount["Where"])
        assert where.is_relative_to(self.jail), f"refusing to mount outside tmp: {where}"
        if path.name != mount_unit_name(where):
            raise RuntimeError(f"systemctl failed: {path.name} does not match Where={where}")
        assert unit["Install"]["WantedBy"] == "multi-user.target"
        return mount


def is_mounted(path: Path) -> bool:
    return find_mount(Path("/proc/self/mountinfo").read_text(), path) is not None


@dataclass
class Appliance:
    """A helper serving loop disks, and where its pieces are."""

    socket: Path
    root: Path
    mountpoint: Path
    systemd: SystemctlMountMock
    new_disk: Callable[[], str]

    @property
    def unit(self) -> Path:
        return self.root / "etc/systemd/system" / mount_unit_name(self.mountpoint)

    async def call(self, op: str, **args: object) -> dict[str, object]:
        result: dict[str, object] = await call(op, args, path=self.socket)
        return result


@pytest.fixture
def loop_disks(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Make blank 300 MiB loop disks; detach them, unmounting first, whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("loop devices and mounts need root")
    for tool in ("losetup", "mkfs.xfs", "wipefs", "blkid", "lsblk", "xfs_info"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    made: list[str] = []

    def new_disk() -> str:
        img = tmp_path / f"disk{len(made)}.img"
        with img.open("wb") as f:
            f.truncate(DISK_SIZE)
        dev = subprocess.run(
            ["losetup", "--find", "--show", str(img)], check=True, capture_output=True, text=True
        ).stdout.strip()
        made.append(dev)
        return dev.removeprefix("/dev/")

    try:
        yield new_disk
    finally:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        for line in reversed(mounts):
            target = line.split()[4]
            if target.startswith(str(tmp_path)):
                subprocess.run(["umount", "-l", target], check=False)
        for dev in made:
            subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
async def appliance(tmp_path: Path, loop_disks: Callable[[], str]) -> AsyncIterator[Appliance]:
    root = tmp_path / "root"
    mountpoint = tmp_path / "srv-xenkeep"
    # What tmpfiles.d/xenkeep.conf makes on the appliance.
    mountpoint.mkdir(mode=0o755)
    systemd = SystemctlMountMock(root, tmp_path)
    applier = Applier(
        root,
        systemd,
        live=True,
        include_loop=True,
        mountpoint=PurePosixPath(mountpoint),
        owner=OWNER,
    )
    path = tmp_path / "helper.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    task = asyncio.create_task(serve(sock, Server(applier, {os.getuid()})))
    try:
        yield Appliance(path, root, mountpoint, systemd, loop_disks)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def probe(dev: str, tag: str) -> str | None:
    """What blkid reads on the disk itself (None: no filesystem)."""
    out = subprocess.run(
        ["blkid", "-p", "-s", tag, "-o", "value", f"/dev/{dev}"], capture_output=True, text=True
    )
    if out.returncode == 2:
        return None
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def disk_entry(listing: dict[str, object], name: str) -> dict[str, object]:
    disks = listing["disks"]
    assert isinstance(disks, list)
    (entry,) = [d for d in disks if d["name"] == name]
    assert isinstance(entry, dict)
    return entry


async def test_format_detach_attach(appliance: Appliance) -> None:
    disk = appliance.new_disk()
    mnt = appliance.mountpoint
    nobody = pwd.getpwnam(OWNER)

    listing = await appliance.call("storage.disks")
    assert listing["mounted"] is None and listing["configured"] is None
    assert listing["mountpoint"] == str(mnt)
    assert disk_entry(listing, disk)["in_use"] == ""
    assert disk_entry(listing, disk)["size"] == DISK_SIZE

    result = await appliance.call("storage.format", device=disk, confirm=disk)
    uuid = probe(disk, "UUID")
    assert uuid
    assert result == {"device": disk, "uuid": uuid, "fstype": "xfs", "mountpoint": str(mnt)}
    assert probe(disk, "TYPE") == "xfs"
    assert probe(disk, "LABEL") == "xenkeep-bak"

    # Mounted from that disk, with reflink, as the unit says.
    entry = find_mount(Path("/proc/self/mountinfo").read_text(), mnt)
    assert entry is not None and entry.source == f"/dev/{disk}" and entry.fstype == "xfs"
    info = subprocess.run(["xfs_info", str(mnt)], check=True, capture_output=True, text=True)
    assert "reflink=1" in info.stdout
    unit = appliance.unit.read_text()
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
    assert wants.is_symlink()
    assert {"lsblk", "wipefs", "mkfs.xfs", "blkid"} <= set(appliance.systemd.commands)

    # The filesystem root is the daemon user's, closed to others.
    st = mnt.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (nobody.pw_uid, nobody.pw_gid, 0o750)

    # Extents can be shared: what merges rely on.
    src = mnt / "a.vhd"
    src.write_bytes(os.urandom(1 << 20))
    with src.open("rb") as a, (mnt / "b.vhd").open("wb") as b:
        fcntl.ioctl(b.fileno(), FICLONE, a.fileno())
    assert (mnt / "b.vhd").read_bytes() == src.read_bytes()

    listing = await appliance.call("storage.disks")
    assert listing["mounted"] == {"device": disk, "uuid": uuid, "fstype": "xfs"}
    assert listing["configured"] == {"uuid": uuid, "fstype": "xfs"}
    assert disk_entry(listing, disk)["in_use"] == f"is mounted at {mnt}"

    # Nothing is formatted while backup storage is mounted, not even another disk.
    other = appliance.new_disk()
    for dev in (disk, other):
        with pytest.raises(RequestError, match="already mounted") as refused:
            await appliance.call("storage.format", device=dev, confirm=dev)
        assert refused.value.field == "device"
    assert probe(other, "TYPE") is None
    assert (mnt / "b.vhd").exists()

    # Simulate a disk from another appliance whose xenkeep had uid 4242.
    keep = mnt / "chain" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("a restore point\n")
    for path in (mnt, keep.parent, keep):
        os.chown(path, 4242, 4242)

    # A busy filesystem does not unmount; the disk stays set up as it was.
    with keep.open(), pytest.raises(RequestError, match="busy"):
        await appliance.call("storage.detach")
    assert is_mounted(mnt) and appliance.unit.exists() and wants.is_symlink()

    result = await appliance.call("storage.detach")
    assert result == {"device": disk, "mountpoint": str(mnt)}
    assert not is_mounted(mnt)
    assert not appliance.unit.exists()
    assert not wants.exists()
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
    assert not appliance.unit.exists()
    assert not wants.exists()
    assert not is_mounted(mnt)
    assert (await appliance.call("storage.disks"))["configured"] is None

    # Attach mounts what is there: same filesystem, files kept, owners fixed.
    commands_before = len(appliance.systemd.commands)
    result = await appliance.call("storage.attach", device=disk)
    assert result == {"device": disk, "uuid": uuid, "fstype": "xfs", "mountpoint": str(mnt)}
    assert "mkfs.xfs" not in appliance.systemd.commands[commands_before:]
    assert "wipefs" in appliance.systemd.commands[commands_before:]  # listing only
    assert keep.read_text() == "a restore point\n"
    assert probe(disk, "UUID") == uuid
    for path in (mnt, keep.parent, keep):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
    assert mnt.stat().st_mode & 0o7777 == 0o750

    await appliance.call("storage.detach")
    assert not is_mounted(mnt)


async def test_refusals_change_nothing(appliance: Appliance) -> None:
    blank = appliance.new_disk()

    with pytest.raises(RequestError, match=f"type the disk name {blank}") as refused:
        await appliance.call("storage.format", device=blank, confirm=blank + "x")
    assert refused.value.field == "confirm"
    assert probe(blank, "TYPE") is None

    with pytest.raises(RequestError, match=f"{blank} has no filesystem: format it") as refused:
        await appliance.call("storage.attach", device=blank)
    assert refused.value.field == "device"

    # A filesystem XenKeep does not use is refused by name.
    subprocess.run(["mkfs.ext2", "-q", "-F", f"/dev/{blank}"], check=True, capture_output=True)
    with pytest.raises(RequestError, match=f"{blank} holds ext2; XenKeep attaches only xfs"):
        await appliance.call("storage.attach", device=blank)
    listing = await appliance.call("storage.disks")
    assert disk_entry(listing, blank)["fstype"] == "ext2"
    assert disk_entry(listing, blank)["in_use"] == ""

    # Swap is never taken, not even to format it.
    subprocess.run(["mkswap", f"/dev/{blank}"], check=True, capture_output=True)
    with pytest.raises(RequestError, match=f"{blank} cannot be used: it is swap"):
        await appliance.call("storage.format", device=blank, confirm=blank)
    with pytest.raises(RequestError, match=f"{blank} cannot be used: it is swap"):
        await appliance.call("storage.attach", device=blank)

    with pytest.raises(RequestError, match="there is no disk loop999"):
        await appliance.call("storage.format", device="loop999", confirm="loop999")
    with pytest.raises(RequestError, match="not a disk name"):
        await appliance.call("storage.attach", device=f"../{blank}")

    assert not is_mounted(appliance.mountpoint)
    assert not appliance.unit.exists()
    assert appliance.systemd.systemctl == []
    assert "mkfs.xfs" not in appliance.systemd.commands
