"""vm-data seeds: both sources read the same keys, one parser validates them."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from xenkeep.system.netconf import NetconfError, parse_ntp_servers, parse_static_network
from xenkeep.system.run import Completed
from xenkeep.system.vmdata import (
    FwCfgSource,
    VmDataError,
    VmDataSource,
    XenstoreSource,
    parse_vm_data,
)
from xenkeep.system.vmdata import read_raw as read_raw_async


def read_raw(sources: list[VmDataSource]) -> tuple[str, dict[str, str]]:
    """The sources are read by the first boot's event loop; here, one of its own.

    The tests stay synchronous so that laying out the fake sources' files
    happens outside any event loop.
    """
    return asyncio.run(read_raw_async(sources))


def fw_cfg_tree(root: Path, values: dict[str, str | bytes]) -> Path:
    """Lay out keys the way the kernel's qemu_fw_cfg driver shows them."""
    base = root / "by_name/opt/xenkeep/vm-data"
    for key, value in values.items():
        (base / key).mkdir(parents=True)
        data = value if isinstance(value, bytes) else value.encode()
        (base / key / "raw").write_bytes(data)
    return base


def test_fw_cfg_source_reads_keys(tmp_path: Path) -> None:
    base = fw_cfg_tree(tmp_path, {"ip": "10.0.2.50", "netmask": "255.255.255.0"})
    name, raw = read_raw([FwCfgSource(base)])
    assert name == "fw_cfg"
    assert raw == {"ip": "10.0.2.50", "netmask": "255.255.255.0"}


def test_fw_cfg_absent_means_no_source(tmp_path: Path) -> None:
    assert read_raw([FwCfgSource(tmp_path / "missing")]) == ("none", {})


def test_fw_cfg_rejects_non_utf8(tmp_path: Path) -> None:
    base = fw_cfg_tree(tmp_path, {"ip": b"\xff\xfe"})
    with pytest.raises(VmDataError, match="vm-data/ip: is not UTF-8"):
        read_raw([FwCfgSource(base)])


def test_fw_cfg_rejects_huge_value(tmp_path: Path) -> None:
    base = fw_cfg_tree(tmp_path, {"dns": "1" * 5000})
    with pytest.raises(VmDataError, match="longer than"):
        read_raw([FwCfgSource(base)])


def _xenstore(tmp_path: Path, store: dict[str, str]) -> XenstoreSource:
    tmp_path.mkdir(parents=True, exist_ok=True)
    hv = tmp_path / "hypervisor_type"
    hv.write_text("xen\n")
    # A real executable standing in for xenstore-read, reading a real file.
    tool = tmp_path / "xenstore-read"
    db = tmp_path / "store"
    db.mkdir()
    for key, value in store.items():
        (db / key.replace("/", "_")).write_text(value + "\n")
    tool.write_text(
        "#!/bin/sh\n"
        f'f="{db}/$(echo "$1" | tr / _)"\n'
        '[ -f "$f" ] || { echo "could not read path $1" >&2; exit 1; }\n'
        'cat "$f"\n'
    )
    tool.chmod(0o755)
    return XenstoreSource(hypervisor_type=hv, tool=str(tool))


def test_xenstore_and_fw_cfg_give_the_same_result(tmp_path: Path) -> None:
    keys = {
        "ip": "192.0.2.10",
        "netmask": "24",
        "gateway": "192.0.2.1",
        "dns": "192.0.2.53, 192.0.2.54",
        "ntp": "ntp.example.org",
        "system-account-xoa-password": "s3cret pass",
    }
    xs = _xenstore(tmp_path / "xs", {f"vm-data/{k}": v for k, v in keys.items()})
    fw = FwCfgSource(fw_cfg_tree(tmp_path / "fw", dict(keys)))
    a = parse_vm_data(read_raw([xs, fw])[1])
    b = parse_vm_data(read_raw([fw])[1])
    assert a == b
    assert a.network is not None
    assert a.network.address == ipaddress.ip_interface("192.0.2.10/24")
    assert [str(d) for d in a.network.dns] == ["192.0.2.53", "192.0.2.54"]
    assert a.ntp == ("ntp.example.org",)
    assert a.password == "s3cret pass"


def test_xenstore_needs_xen(tmp_path: Path) -> None:
    src = _xenstore(tmp_path, {})
    assert src.available()
    (tmp_path / "hypervisor_type").write_text("kvm\n")
    assert not src.available()


def test_xenstore_runner_missing_key(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    async def runner(argv: list[str]) -> Completed:
        calls.append(argv)
        return Completed(tuple(argv), 1, b"", b"could not read")

    src = XenstoreSource(hypervisor_type=tmp_path / "none", runner=runner)
    assert asyncio.run(src.read("ip")) is None
    assert calls == [["xenstore-read", "vm-data/ip"]]


def test_no_keys_means_dhcp_and_locked() -> None:
    data = parse_vm_data({})
    assert data.network is None and data.ntp == () and data.password is None


def test_xenkeep_password_wins_over_xoa() -> None:
    data = parse_vm_data(
        {"system-account-xenkeep-password": "mine", "system-account-xoa-password": "theirs"}
    )
    assert data.password == "mine"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"ip": "192.0.2.10"}, "netmask"),
        ({"netmask": "24"}, "ip"),
        ({"gateway": "192.0.2.1"}, "gateway"),
        ({"dns": "192.0.2.53"}, "dns"),
        ({"ip": "192.0.2.300", "netmask": "24"}, "ip"),
        ({"ip": "192.0.2.10", "netmask": "255.0.255.0"}, "netmask"),
        ({"ip": "192.0.2.10", "netmask": "33"}, "netmask"),
        ({"ip": "192.0.2.10", "netmask": "24", "gateway": "198.51.100.1"}, "gateway"),
        ({"ip": "192.0.2.10", "netmask": "24", "dns": "a.b.c.d"}, "dns"),
        ({"ip": "192.0.2.0", "netmask": "24"}, "ip"),
        ({"ntp": "bad_host!"}, "ntp"),
        ({"system-account-xenkeep-password": "a\nroot::0:0"}, "system-account-xenkeep-password"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, str], key: str) -> None:
    with pytest.raises(VmDataError) as info:
        parse_vm_data(raw)
    assert info.value.key == key
    assert str(info.value).startswith(f"vm-data/{key}: ")


def test_static_network_forms() -> None:
    net = parse_static_network("2001:db8::10", "/64", "fe80::1", ["2001:db8::53"])
    assert str(net.address) == "2001:db8::10/64"
    assert str(net.gateway) == "fe80::1"
    with pytest.raises(NetconfError, match="prefix length"):
        parse_static_network("2001:db8::10", "255.255.255.0")
    with pytest.raises(NetconfError, match="at most 3"):
        parse_static_network("192.0.2.10", "24", None, "1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4")


def test_ntp_servers() -> None:
    assert parse_ntp_servers("Pool.NTP.org, 192.0.2.1") == ("pool.ntp.org", "192.0.2.1")
    assert parse_ntp_servers("") == ()
    with pytest.raises(NetconfError):
        parse_ntp_servers("1.2.3")
    with pytest.raises(NetconfError, match="at most"):
        parse_ntp_servers(" ".join(f"ntp{i}.example.org" for i in range(6)))
