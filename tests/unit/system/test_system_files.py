"""Nothing a caller types can add a line, a section or a directive to a system file.

Every field that reaches a file the helper writes (networkd's ``.network``,
timesyncd's drop-in, the backup disk's mount unit, chpasswd's input) is sent
with control characters and IPv6 zone ids in it: over the helper's real
socket, and as vm-data at first boot. Each is refused with a clear error
naming the field, and nothing is written or run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.privhelper import CommandRecorder, change_and_keep, serving
from xenkeep.privhelper.applier import Applier
from xenkeep.privhelper.server import Server
from xenkeep.system.blockdev import BlockDevError, render_mount_unit
from xenkeep.system.firstboot import first_boot
from xenkeep.system.helper import call
from xenkeep.system.helper_protocol import OPERATIONS, RequestError
from xenkeep.system.netconf import UnrepresentableError, render_systemd_file
from xenkeep.system.vmdata import FwCfgSource

#: What an attacker appends: a new section, a directive, a NUL, an escape, a
#: C1 control (NEL), a line continuation.
INJECTIONS = [
    "\n[Route]\nGateway=192.0.2.66",
    "\r\nDNS=192.0.2.66",
    "\x00",
    "\x1b[2J",
    "\x85",
    "\t",
    "\\",
]
#: IPv6 zone ids: Python's ipaddress keeps anything after the "%".
ZONES = [
    "fe80::1%x\n[Route]\nGateway=192.0.2.66",
    "fe80::1%eth0",
    "fe80::53%1",
]
GOOD_STATIC = {"address": "192.0.2.10/24", "gateway": "192.0.2.1", "dns": ["192.0.2.53"]}


def _bad_requests() -> list[tuple[str, dict[str, object], str]]:
    cases: list[tuple[str, dict[str, object], str]] = []
    for bad in INJECTIONS:
        cases += [
            ("network.static", {**GOOD_STATIC, "address": "192.0.2.10" + bad + "/24"}, "address"),
            ("network.static", {**GOOD_STATIC, "address": "192.0.2.10/24" + bad}, "address"),
            ("network.static", {**GOOD_STATIC, "address": bad + "192.0.2.10/24"}, "address"),
            ("network.static", {**GOOD_STATIC, "gateway": "192.0.2.1" + bad}, "gateway"),
            ("network.static", {**GOOD_STATIC, "dns": ["192.0.2.53" + bad]}, "dns"),
            ("network.static", {**GOOD_STATIC, "dns": [bad + "192.0.2.53"]}, "dns"),
            ("ntp.set", {"servers": ["ntp.example.org" + bad]}, "ntp"),
            ("ntp.set", {"servers": [bad + "ntp.example.org"]}, "ntp"),
            ("ntp.set", {"servers": ["192.0.2.123" + bad]}, "ntp"),
        ]
    for zone in ZONES:
        v6 = {"address": "2001:db8::10/64", "gateway": "fe80::1", "dns": ["2001:db8::53"]}
        cases += [
            ("network.static", {**v6, "address": zone + "/64"}, "address"),
            ("network.static", {**v6, "gateway": zone}, "gateway"),
            ("network.static", {**v6, "dns": [zone]}, "dns"),
            ("ntp.set", {"servers": [zone]}, "ntp"),
        ]
    for bad in INJECTIONS:
        cases.append(("storage.attach", {"device": "xvdb" + bad}, "device"))
    return cases


@pytest.fixture
async def as_root(tmp_path: Path) -> AsyncIterator[tuple[Path, CommandRecorder, Path]]:
    rec = CommandRecorder()
    root = tmp_path / "root"
    server = Server(Applier(root, rec, live=True), {os.getuid(): frozenset(OPERATIONS)})
    async with serving(server, tmp_path / "helper.sock") as path:
        yield path, rec, root


@pytest.mark.parametrize(("op", "args", "field"), _bad_requests(), ids=repr)
async def test_every_field_over_the_socket(
    as_root: tuple[Path, CommandRecorder, Path], op: str, args: dict[str, object], field: str
) -> None:
    path, rec, root = as_root
    with pytest.raises(RequestError) as info:
        await call(op, args, path=path)
    assert info.value.field == field, info.value
    message = str(info.value)
    # Clear: the refusal shows the value escaped, so the console stays readable.
    assert "\n" not in message and "\r" not in message and "\x1b" not in message, message
    assert not root.exists()
    assert rec.calls == []


async def test_good_values_still_pass(as_root: tuple[Path, CommandRecorder, Path]) -> None:
    path, _rec, root = as_root
    await change_and_keep("network.static", {**GOOD_STATIC, "dns": [" 192.0.2.53 "]}, path=path)
    text = (root / "etc/systemd/network/10-xenkeep.network").read_text()
    assert "DNS=192.0.2.53\n" in text
    await change_and_keep(
        "network.static",
        {"address": "2001:db8::10/64", "gateway": "fe80::1", "dns": ["2001:db8::53"]},
        path=path,
    )
    text = (root / "etc/systemd/network/10-xenkeep.network").read_text()
    assert "Gateway=fe80::1\n" in text and "DNS=2001:db8::53\n" in text
    await change_and_keep("ntp.set", {"servers": ["ntp.example.org", "2001:db8::123"]}, path=path)
    conf = (root / "etc/systemd/timesyncd.conf.d/50-xenkeep.conf").read_text()
    assert "NTP=ntp.example.org 2001:db8::123\n" in conf


def _seeds() -> list[dict[str, str]]:
    good = {"ip": "10.0.2.50", "netmask": "24", "gateway": "10.0.2.2", "dns": "10.0.2.3"}
    seeds = []
    for bad in INJECTIONS:
        # In the middle: whitespace around a whole value is framing, stripped.
        inner = bad
        for key in ("ip", "netmask", "gateway", "dns"):
            seeds.append({**good, key: good[key] + inner + "1"})
        seeds.append({**good, "ntp": "ntp.example.org" + inner + "x"})
        if bad != "\\":  # a backslash is a fine character in a password
            seeds.append({**good, "system-account-xenkeep-password": "pw" + inner + "x"})
    for zone in ZONES:
        v6 = {"ip": "2001:db8::10", "netmask": "64", "gateway": "fe80::1", "dns": "2001:db8::53"}
        for key in ("ip", "gateway", "dns"):
            seeds.append({**v6, key: zone})
        seeds.append({"ntp": zone})
    return seeds


@pytest.mark.parametrize("seed", _seeds(), ids=repr)
async def test_every_vm_data_key_at_first_boot(tmp_path: Path, seed: dict[str, str]) -> None:
    base = tmp_path / "fw"
    for key, value in seed.items():
        (base / key).mkdir(parents=True)
        (base / key / "raw").write_text(value)
    rec = CommandRecorder()
    root = tmp_path / "root"
    assert await first_boot([FwCfgSource(base)], Applier(root, rec, live=False)) == 1
    assert not root.exists()
    assert rec.calls == []


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ([("Network", [("DNS", "192.0.2.53\n[Route]")])], "control character"),
        ([("Network", [("DNS", "192.0.2.53\r")])], "control character"),
        ([("Network", [("DNS", "a\x00b")])], "control character"),
        ([("Network", [("DNS", "a\x85b")])], "control character"),
        ([("Network", [("DNS", "a\u2028b")])], "line separator"),
        ([("Network", [("DNS", "192.0.2.53\\")])], "backslash"),
        ([("Network", [("DNS", " 192.0.2.53")])], "space"),
        ([("Network", [("DNS=x\nA", "b")])], "key"),
        ([("Network]\n[Route", [("A", "b")])], "section"),
        ([("Network", [("#", "a comment\nDNS=192.0.2.66")])], "control character"),
    ],
)
def test_the_serializer_refuses_what_it_cannot_represent(
    sections: list[tuple[str, list[tuple[str, str]]]], message: str
) -> None:
    with pytest.raises(UnrepresentableError, match=message):
        render_systemd_file(["header"], sections)


def test_the_serializer_writes_plain_values() -> None:
    text = render_systemd_file(
        ["Written by a test."], [("Time", [("#", "why"), ("NTP", "a.example b.example")])]
    )
    assert text == "# Written by a test.\n[Time]\n# why\nNTP=a.example b.example\n"


@pytest.mark.parametrize("uuid", ["0b1c\n", "0b1c\nOptions=exec", "0b1c%x"])
def test_the_mount_unit_refuses_a_crafted_uuid(tmp_path: Path, uuid: str) -> None:
    # The UUID comes from the disk itself: whoever attached it chose it.
    with pytest.raises((BlockDevError, UnrepresentableError)):
        render_mount_unit(uuid, "xfs", "/srv/xenkeep")
