"""A real privileged helper serving real loop disks, for tests that need the
backup-storage operations: every command runs for real except ``systemctl``
(this machine runs no systemd), which :class:`SystemctlMountMock` plays. The
mount point lives under tmp_path; the host's /srv/xenkeep is never touched.
Import the fixtures ``loop_disks`` and ``appliance`` into a test module to use them.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from xenkeep.privhelper.applier import Applier
from xenkeep.privhelper.server import Server, serve
from xenkeep.system.blockdev import find_mount, mount_unit_name
from xenkeep.system.helper import call
from xenkeep.system.helper_protocol import DAEMON_OPERATIONS
from xenkeep.system.run import output

DISK_SIZE = 300 * 1024 * 1024
OWNER = "nobody"


class CommandRecorder:
    """Records the commands an Applier would run, and runs none (no appliance here).

    ``fail`` makes the commands starting with those words fail as a command
    that exits 1 does (RuntimeError).
    """

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail: tuple[str, ...] = ()

    async def __call__(
        self, argv: list[str], stdin: bytes | None = None, *, timeout: float = 60.0
    ) -> str:
        self.calls.append(argv)
        if self.fail and tuple(argv[: len(self.fail)]) == self.fail:
            raise RuntimeError(f"{argv[0]} failed: exit status 1 (recorded)")
        return ""


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
            return await output(argv, stdin, timeout=timeout)
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
        # Blocking file work off the event loop, as the helper's own.
        if verb == "disable":
            await asyncio.to_thread(wants.unlink, missing_ok=True)
            return ""
        mount = await asyncio.to_thread(self._load, unit_dir / name)
        where = Path(mount["Where"])
        if verb == "stop":
            if await is_mounted(where):
                await output(["umount", str(where)])
            return ""
        await asyncio.to_thread(self._enable, wants, unit_dir / name)
        if self.fail_start:
            self.fail_start = False
            raise RuntimeError(f"systemctl failed: Job for {name} failed (mock)")
        uuid = mount["What"].removeprefix("/dev/disk/by-uuid/")
        device = (await output(["blkid", "-U", uuid])).strip()
        await output(["mount", "-t", mount["Type"], "-o", mount["Options"], device, str(where)])
        return ""

    @staticmethod
    def _enable(wants: Path, unit: Path) -> None:
        wants.parent.mkdir(exist_ok=True)
        wants.symlink_to(unit)

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


async def probe(dev: str, tag: str) -> str | None:
    """What blkid reads on the disk itself (None: no filesystem)."""
    proc = await asyncio.create_subprocess_exec(
        *["blkid", "-p", "-s", tag, "-o", "value", f"/dev/{dev}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode == 2:
        return None
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


def mounted_at(path: Path) -> bool:
    return find_mount(Path("/proc/self/mountinfo").read_text(), path) is not None


async def is_mounted(path: Path) -> bool:
    """Whether something is mounted at ``path`` (read off the loop)."""
    return await asyncio.to_thread(mounted_at, path)


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
    await asyncio.to_thread(mountpoint.mkdir, mode=0o755)
    systemd = SystemctlMountMock(root, tmp_path)
    applier = Applier(
        root,
        systemd,
        live=True,
        include_loop=True,
        mountpoint=PurePosixPath(mountpoint),
        owner=OWNER,
    )
    # The storage operations as the daemon calls them: with the daemon's rights.
    callers = {os.getuid(): DAEMON_OPERATIONS}
    async with serving(Server(applier, callers), tmp_path / "helper.sock") as path:
        yield Appliance(path, root, mountpoint, systemd, loop_disks)


async def change_and_keep(op: str, args: dict[str, object], path: Path) -> dict[str, object]:
    """Make a network or NTP change over the helper's socket and confirm it at once."""
    pending = (await call(op, args, path=path))["pending"]
    result: dict[str, object] = await call(
        "network.confirm", {"checkpoint": pending["id"]}, path=path
    )
    return result


@contextlib.asynccontextmanager
async def serving(server: Server, path: Path) -> AsyncIterator[Path]:
    """``server`` answering on a unix socket at ``path`` until the block ends."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    task = asyncio.create_task(serve(sock, server))
    try:
        yield path
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
