"""The privileged helper: a closed set of validated operations on a unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xenkeep.system.firstboot import first_boot
from xenkeep.system.privhelper import (
    Applier,
    RequestError,
    Server,
    call,
    parse_request,
    serve,
)
from xenkeep.system.vmdata import FwCfgSource


class Recorder:
    """Collects the commands the applier would run on the appliance."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []

    async def __call__(self, argv: list[str], stdin: bytes | None) -> None:
        self.calls.append((argv, stdin))


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
        (req("account.password", password=""), "empty", "password"),
        (req("account.password", password="a\nb"), "control", "password"),
        (req("account.password", password="x", user="root"), "unexpected argument", "user"),
        (b"{" + b" " * 20000 + b"}", "too large", ""),
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
    await applier.apply(request)
    text = (tmp_path / "etc/systemd/network/10-xenkeep.network").read_text()
    assert "Address=192.0.2.10/24\n" in text
    assert "Gateway=192.0.2.1\n" in text
    assert "DNS=192.0.2.53\n" in text
    await applier.apply(parse_request(req("network.dhcp")))
    assert not (tmp_path / "etc/systemd/network/10-xenkeep.network").exists()
    assert rec.calls == []


async def test_ntp_and_account(tmp_path: Path) -> None:
    rec = Recorder()
    applier = Applier(tmp_path, rec, live=True)
    await applier.apply(parse_request(req("ntp.set", servers=["ntp.example.org"])))
    conf = tmp_path / "etc/systemd/timesyncd.conf.d/50-xenkeep.conf"
    assert "NTP=ntp.example.org\n" in conf.read_text()
    await applier.apply(parse_request(req("ntp.set", servers=[])))
    assert not conf.exists()
    await applier.apply(parse_request(req("account.password", password="pa:ss word")))
    await applier.apply(parse_request(req("account.lock")))
    assert rec.calls[-2:] == [
        (["chpasswd"], b"xenkeep:pa:ss word\n"),
        (["usermod", "--lock", "xenkeep"], None),
    ]


@pytest.fixture
async def helper(tmp_path: Path) -> AsyncIterator[tuple[Path, Recorder, Path]]:
    rec = Recorder()
    root = tmp_path / "root"
    path = tmp_path / "helper.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    task = asyncio.create_task(serve(sock, Server(Applier(root, rec, live=False), {os.getuid()})))
    yield path, rec, root
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_over_the_socket(helper: tuple[Path, Recorder, Path]) -> None:
    path, rec, root = helper
    assert (await call("ping", path=path))["version"]
    await call("network.static", {"address": "10.0.2.50/24", "gateway": "10.0.2.2"}, path=path)
    assert (root / "etc/systemd/network/10-xenkeep.network").exists()
    with pytest.raises(RequestError, match="unknown operation") as info:
        await call("reboot", path=path)
    assert info.value.field == "op"
    await call("account.password", {"password": "hunter2!"}, path=path)
    assert rec.calls == [(["chpasswd"], b"xenkeep:hunter2!\n")]


async def test_refuses_other_users(tmp_path: Path) -> None:
    path = tmp_path / "helper.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    rec = Recorder()
    server = Server(Applier(tmp_path, rec, live=False), {os.getuid() + 12345})
    task = asyncio.create_task(serve(sock, server))
    try:
        with pytest.raises(RequestError, match="permission denied"):
            await call("account.password", {"password": "x"}, path=path)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert rec.calls == []


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
