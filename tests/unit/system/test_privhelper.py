"""The privileged helper: a closed set of validated operations on a unix socket."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import pytest

from tests.support.privhelper import serving
from tests.unit.system.lsblk_samples import OLD_UUID, ROOT_UUID, btrfs_root, xen_appliance_json
from xenkeep.privhelper.applier import Applier
from xenkeep.privhelper.request import parse_request
from xenkeep.privhelper.server import Server
from xenkeep.system.blockdev import LSBLK_ARGV
from xenkeep.system.firstboot import first_boot
from xenkeep.system.helper import call
from xenkeep.system.helper_protocol import DAEMON_OPERATIONS, OPERATIONS, RequestError
from xenkeep.system.vmdata import FwCfgSource


class Recorder:
    """Collects the commands the applier would run on the appliance."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []

    async def __call__(
        self, argv: list[str], stdin: bytes | None = None, *, timeout: float = 60.0
    ) -> str:
        self.calls.append((argv, stdin))
        return ""


def req(op: str, **args: object) -> bytes:
    return json.dumps({"op": op, "args": args}).encode()


@pytest.mark.parametrize(
    ("line", "message", "field"),
    [
        (b"not json", "not JSON", ""),
        (b"[1, 2]", "must be", ""),
        (req("shell", cmd="id"), "unknown operation", "op"),
        (json.dumps({"op": "ping", "extra": 1}).encode(), "must be", ""),
        (req("ping", x=1), "unexpected argument 'x'", "x"),
        (req("network.static"), "address is required", "address"),
        (req("network.static", address="192.0.2.10"), "prefix length", "address"),
        (req("network.static", address="192.0.2.10/24", gateway=5), "must be a string", "gateway"),
        (req("network.static", address="192.0.2.10/24", dns="1.1.1.1"), "list of strings", "dns"),
        (req("network.static", address="192.0.2.10/24", gateway="10.0.0.1"), "outside", "gateway"),
        (req("network.static", address="127.0.0.1/8"), "cannot be", "address"),
        (req("ntp.set", servers=["ok.example.org", "-bad-"]), "neither", "ntp"),
        # No operation on accounts: the daemon's uid is the console account.
        (req("account.password", password="x"), "unknown operation", "op"),
        (req("account.lock"), "unknown operation", "op"),
        (b"{" + b" " * 20000 + b"}", "too large", ""),
        (req("storage.disks", device="xvdb"), "unexpected argument 'device'", "device"),
        (req("storage.format", device="xvdb"), "type the disk name xvdb", "confirm"),
        (req("storage.format", device="xvdb", confirm="xvdc"), "to confirm", "confirm"),
        (req("storage.format", device="xvdb", confirm="XVDB"), "to confirm", "confirm"),
        (req("storage.format", device="/dev/xvdb", confirm="/dev/xvdb"), "not a disk", "device"),
        (req("storage.format", device="../sda", confirm="../sda"), "not a disk", "device"),
        (req("storage.format", device="xvdb", confirm="xvdb", force=True), "unexpected", "force"),
        (req("storage.format", confirm="xvdb"), "device is required", "device"),
        (req("storage.attach", device="xvdb", confirm="xvdb"), "unexpected", "confirm"),
        (req("storage.attach", device=["xvdb"]), "must be a string", "device"),
        (req("storage.attach", device="xvdb1 "), "not a disk", "device"),
        (req("storage.detach", device="xvdb"), "unexpected argument", "device"),
    ],
)
def test_refused_requests(line: bytes, message: str, field: str) -> None:
    with pytest.raises(RequestError, match=message) as info:
        parse_request(line)
    assert info.value.field == field


async def test_static_then_dhcp(tmp_path: Path) -> None:
    rec = Recorder()
    applier = Applier(tmp_path, rec, live=False)
    request = parse_request(
        req("network.static", address="192.0.2.10/24", gateway="192.0.2.1", dns=["192.0.2.53"])
    )
    pending = (await applier.apply(request))["pending"]
    text = (tmp_path / "etc/systemd/network/10-xenkeep.network").read_text()
    assert "Address=192.0.2.10/24\n" in text
    assert "Gateway=192.0.2.1\n" in text
    assert "DNS=192.0.2.53\n" in text
    assert pending["summary"] == "network: DHCP -> 192.0.2.10/24 via 192.0.2.1, DNS 192.0.2.53"
    # One change at a time: the next waits until this one is kept or reverted.
    with pytest.raises(RequestError, match="another change waits") as info:
        await applier.apply(parse_request(req("network.dhcp")))
    assert info.value.kind == "conflict"
    await applier.apply(parse_request(req("network.confirm", checkpoint=pending["id"])))
    await applier.apply(parse_request(req("network.dhcp")))
    assert not (tmp_path / "etc/systemd/network/10-xenkeep.network").exists()
    await applier.close(revert_pending=False)
    assert rec.calls == []


async def test_ntp(tmp_path: Path) -> None:
    rec = Recorder()
    applier = Applier(tmp_path, rec, live=True, read_live=no_live)
    pending = await applier.apply(parse_request(req("ntp.set", servers=["ntp.example.org"])))
    conf = tmp_path / "etc/systemd/timesyncd.conf.d/50-xenkeep.conf"
    assert "NTP=ntp.example.org\n" in conf.read_text()
    await applier.apply(parse_request(req("network.confirm", checkpoint=pending["pending"]["id"])))
    await applier.apply(parse_request(req("ntp.set", servers=[])))
    assert not conf.exists()
    await applier.close(revert_pending=False)
    assert rec.calls == [(["systemctl", "try-restart", "systemd-timesyncd.service"], None)] * 2


async def no_live() -> dict[str, object]:
    """The live state where the test has no interface of its own to show."""
    return {"interfaces": [], "gateways": [], "dns": []}


async def test_console_password_only_in_process(tmp_path: Path) -> None:
    rec = Recorder()
    applier = Applier(tmp_path, rec, live=False)
    await applier.set_console_password("pa:ss word")
    with pytest.raises(ValueError, match="control characters"):
        await applier.set_console_password("x\nroot:owned")
    assert rec.calls == [(["chpasswd"], b"xenkeep:pa:ss word\n")]


@pytest.fixture
async def helper(tmp_path: Path) -> AsyncIterator[tuple[Path, Recorder, Path]]:
    """The helper with this test's uid as root (every operation)."""
    rec = Recorder()
    root = tmp_path / "root"
    server = Server(Applier(root, rec, live=False), {os.getuid(): frozenset(OPERATIONS)})
    async with serving(server, tmp_path / "helper.sock") as path:
        yield path, rec, root


async def test_over_the_socket(helper: tuple[Path, Recorder, Path]) -> None:
    path, rec, root = helper
    assert (await call("ping", path=path))["version"]
    await call(
        "network.static",
        {"address": "10.0.2.50/24", "gateway": "10.0.2.2", "dns": ["10.0.2.3"]},
        path=path,
    )
    assert (root / "etc/systemd/network/10-xenkeep.network").exists()
    with pytest.raises(RequestError, match="unknown operation") as info:
        await call("reboot", path=path)
    assert info.value.field == "op"
    assert rec.calls == []


async def test_refuses_other_users(tmp_path: Path) -> None:
    rec = Recorder()
    server = Server(Applier(tmp_path, rec, live=False), {os.getuid() + 12345: DAEMON_OPERATIONS})
    async with serving(server, tmp_path / "helper.sock") as path:
        with pytest.raises(RequestError, match="permission denied"):
            await call("ping", path=path)
    assert rec.calls == []


async def test_the_daemon_uid_gets_only_its_own_operations(tmp_path: Path) -> None:
    """A compromised daemon, over the real socket: no account, fenced disks,
    network changes only as checkpoints."""
    applier, fake = storage_applier(tmp_path, xen_appliance_json())
    root = tmp_path / "root"
    daemon = {os.getuid(): DAEMON_OPERATIONS}
    async with serving(Server(applier, daemon), tmp_path / "helper.sock") as path:
        # The way to root: set the console account's password, SSH in, sudo.
        for op, args in [
            ("account.password", {"password": "owned"}),
            ("account.lock", {}),
        ]:
            with pytest.raises(RequestError, match="unknown operation") as info:
                await call(op, args, path=path)
            assert info.value.field == "op"
        # What it may call, it may call only on what holds no mounted filesystem.
        assert (await call("ping", path=path))["version"]
        for op, args, message in [
            ("storage.format", {"device": "xvda", "confirm": "xvda"}, "holds the root"),
            ("storage.attach", {"device": "xvda"}, "holds the root"),
            ("storage.format", {"device": "xvde", "confirm": "xvde"}, "is swap"),
            ("storage.format", {"device": "xvdb"}, "to confirm"),
            ("storage.format", {"device": "../xvda", "confirm": "../xvda"}, "not a disk"),
            ("storage.attach", {"device": "/dev/xvda"}, "not a disk"),
            ("storage.attach", {"device": "xvdb", "path": "/etc"}, "unexpected argument"),
            ("storage.detach", {"device": "xvda"}, "unexpected argument"),
            ("network.static", {"nonsense": 1}, "unexpected argument"),
            ("network.dhcp", {"timeout": 100000}, "between 5 and 600"),
            ("network.confirm", {"checkpoint": "../../etc"}, "not a checkpoint id"),
        ]:
            with pytest.raises(RequestError, match=message):
                await call(op, args, path=path)
        assert [d["name"] for d in (await call("storage.disks", path=path))["disks"]]
    # Nothing but listings ran, nothing was written.
    assert {argv[0] for argv in fake.calls} <= {"lsblk", "wipefs"}
    assert all(argv[:2] == ["wipefs", "--json"] for argv in fake.calls if argv[0] == "wipefs")
    assert not root.exists()


async def test_first_boot_applies_fw_cfg_seed(tmp_path: Path) -> None:
    base = tmp_path / "fw/opt/xenkeep/vm-data"
    for key, value in {
        "ip": "10.0.2.50",
        "netmask": "255.255.255.0",
        "gateway": "10.0.2.2",
        "dns": "10.0.2.3",
        "ntp": "10.0.2.2",
        "system-account-xenkeep-password": "first-boot-pw",
    }.items():
        (base / key).mkdir(parents=True)
        (base / key / "raw").write_text(value)
    rec = Recorder()
    root = tmp_path / "root"
    assert await first_boot([FwCfgSource(base)], Applier(root, rec, live=False)) == 0
    network = (root / "etc/systemd/network/10-xenkeep.network").read_text()
    assert "Address=10.0.2.50/24" in network
    assert "NTP=10.0.2.2" in (root / "etc/systemd/timesyncd.conf.d/50-xenkeep.conf").read_text()
    # As root, in-process: the password never crosses the helper's socket.
    assert rec.calls == [(["chpasswd"], b"xenkeep:first-boot-pw\n")]


async def test_first_boot_bad_seed_applies_nothing(tmp_path: Path) -> None:
    base = tmp_path / "fw"
    for key, value in {"ip": "10.0.2.50", "netmask": "24", "gateway": "192.0.2.1"}.items():
        (base / key).mkdir(parents=True)
        (base / key / "raw").write_text(value)
    rec = Recorder()
    root = tmp_path / "root"
    assert await first_boot([FwCfgSource(base)], Applier(root, rec, live=False)) == 1
    assert not (root / "etc").exists()
    assert rec.calls == []


class FakeDisks:
    """The appliance of lsblk_samples: canned lsblk and wipefs output, nothing else.

    Any other command fails the test: a refused request must not get as far
    as wiping, formatting or mounting.
    """

    def __init__(self, lsblk: str, wipefs: str = '{"signatures": []}') -> None:
        self.lsblk = lsblk
        self.wipefs = wipefs
        self.calls: list[list[str]] = []

    async def __call__(
        self, argv: list[str], stdin: bytes | None = None, *, timeout: float = 60.0
    ) -> str:
        self.calls.append(argv)
        if argv[0] == "lsblk":
            return self.lsblk
        if argv[:2] == ["wipefs", "--json"]:
            return self.wipefs
        raise AssertionError(f"a refused request ran {argv}")


def storage_applier(
    tmp_path: Path, lsblk: str, mountinfo: str = "", owner: str = "nobody", wipefs: str = ""
) -> tuple[Applier, FakeDisks]:
    (tmp_path / "mountinfo").write_text(mountinfo)
    fake = FakeDisks(lsblk, wipefs or '{"signatures": []}')
    applier = Applier(
        tmp_path / "root",
        fake,
        live=True,
        mountpoint=PurePosixPath("/srv/xenkeep"),
        owner=owner,
        mountinfo=tmp_path / "mountinfo",
    )
    return applier, fake


@pytest.mark.parametrize(
    ("request_line", "message"),
    [
        (
            req("storage.format", device="xvdz", confirm="xvdz"),
            r"no disk xvdz \(free disks: xvdb, xvdc\)",
        ),
        (
            req("storage.format", device="xvda", confirm="xvda"),
            "xvda cannot be used: it holds the root",
        ),
        (req("storage.attach", device="xvda"), "holds the root filesystem"),
        (req("storage.format", device="xvde", confirm="xvde"), "xvde cannot be used: it is swap"),
        # The CD drive is not a disk at all.
        (req("storage.format", device="xvdd", confirm="xvdd"), "there is no disk xvdd"),
        (req("storage.attach", device="xvdb"), "xvdb has no filesystem: format it"),
    ],
)
async def test_storage_refused_by_the_system(
    tmp_path: Path, request_line: bytes, message: str
) -> None:
    applier, fake = storage_applier(tmp_path, xen_appliance_json())
    with pytest.raises(RequestError, match=message) as info:
        await applier.apply(parse_request(request_line))
    assert info.value.field == "device"
    assert fake.calls[0] == LSBLK_ARGV
    assert not (tmp_path / "root").exists()


async def test_storage_refused_while_mounted_and_for_small_or_busy_disks(tmp_path: Path) -> None:
    mounted = "40 27 202:16 / /srv/xenkeep rw - xfs /dev/xvdc rw\n"
    applier, fake = storage_applier(tmp_path, xen_appliance_json(), mounted)
    with pytest.raises(RequestError, match="already mounted at /srv/xenkeep"):
        await applier.apply(parse_request(req("storage.format", device="xvdb", confirm="xvdb")))
    # The listing is not even read: the mount point decides first.
    assert fake.calls == []
    with pytest.raises(RequestError, match="XenKeep did not mount it"):
        await applier.apply(parse_request(req("storage.detach")))

    small = xen_appliance_json(xvdb={"size": 200 << 20})
    applier, fake = storage_applier(tmp_path, small)
    with pytest.raises(RequestError, match="too small"):
        await applier.apply(parse_request(req("storage.format", device="xvdb", confirm="xvdb")))
    with pytest.raises(RequestError, match="no backup disk is attached"):
        await applier.apply(parse_request(req("storage.detach")))

    busy = xen_appliance_json(xvdb={"mountpoints": ["/mnt/x"]})
    applier, fake = storage_applier(tmp_path, busy)
    with pytest.raises(RequestError, match="xvdb cannot be used: it is mounted at /mnt/x"):
        await applier.apply(parse_request(req("storage.attach", device="xvdb")))


async def test_storage_disks_listing(tmp_path: Path) -> None:
    mounted = "40 27 202:16 / /srv/xenkeep rw - xfs /dev/xvdc rw\n"
    applier, _ = storage_applier(
        tmp_path, xen_appliance_json(xvdc={"mountpoints": ["/srv/xenkeep"]}), mounted
    )
    result = await applier.apply(parse_request(req("storage.disks")))
    assert result["mountpoint"] == "/srv/xenkeep"
    assert result["mounted"] == {"device": "xvdc", "uuid": OLD_UUID, "fstype": "xfs"}
    assert result["configured"] is None
    disks = {d["name"]: d for d in result["disks"]}
    assert disks["xvdc"]["in_use"] == "is mounted at /srv/xenkeep"
    assert disks["xvdb"]["in_use"] == ""


async def test_storage_needs_live_and_the_owner(tmp_path: Path) -> None:
    fake = FakeDisks(xen_appliance_json())
    applier = Applier(tmp_path, fake, live=False)
    with pytest.raises(RuntimeError, match="live"):
        await applier.apply(parse_request(req("storage.detach")))
    applier, fake = storage_applier(tmp_path, xen_appliance_json(), owner="no-such-user-xk")
    with pytest.raises(RuntimeError, match="no user no-such-user-xk"):
        await applier.apply(parse_request(req("storage.format", device="xvdb", confirm="xvdb")))
    assert fake.calls == []


async def test_refusal_over_the_socket_names_the_field(tmp_path: Path) -> None:
    applier, _ = storage_applier(tmp_path, xen_appliance_json())
    async with serving(
        Server(applier, {os.getuid(): DAEMON_OPERATIONS}), tmp_path / "h.sock"
    ) as path:
        with pytest.raises(RequestError, match="holds the root filesystem") as info:
            await call("storage.format", {"device": "xvda", "confirm": "xvda"}, path=path)
        assert info.value.field == "device"
        # The connection survived the refusal: the next request is answered.
        disks = await call("storage.disks", path=path)
        assert [d["name"] for d in disks["disks"]] == ["xvda", "xvdb", "xvdc", "xvde"]


@pytest.mark.parametrize("udev_knows", [True, False], ids=["listed", "probed"])
async def test_storage_refuses_the_second_device_of_a_btrfs_root(
    tmp_path: Path, udev_knows: bool
) -> None:
    # Attached, it would mount the root filesystem again at the mount point
    # and give its top directory to the daemon; formatted, it would break /.
    lsblk = btrfs_root() if udev_knows else btrfs_root(fstype=None, uuid=None)
    probe = json.dumps({"signatures": [{"offset": "0x10040", "type": "btrfs", "uuid": ROOT_UUID}]})
    applier, fake = storage_applier(tmp_path, lsblk, owner="nobody", wipefs=probe)
    for line in (
        req("storage.attach", device="xvdb"),
        req("storage.format", device="xvdb", confirm="xvdb"),
    ):
        with pytest.raises(RequestError, match="xvdb cannot be used: it holds the root") as info:
            await applier.apply(parse_request(line))
        assert info.value.field == "device"
    disks = {
        d["name"]: d for d in (await applier.apply(parse_request(req("storage.disks"))))["disks"]
    }
    assert disks["xvdb"]["in_use"] == "holds the root filesystem"
    assert {argv[0] for argv in fake.calls} <= {"lsblk", "wipefs"}
    assert not (tmp_path / "root").exists()
