"""The NoCloud seed texts: host names, merged custom config, network-config."""

from __future__ import annotations

import pytest
import yaml

from xenkeep.formats.cloudinit import (
    StaticAddress,
    hostname_of,
    meta_data,
    network_config,
    parse_custom,
    user_data,
)
from xenkeep.formats.errors import CloudConfigError


def test_hostname_from_vm_name() -> None:
    assert hostname_of("Dev Box_01") == "dev-box-01"
    with pytest.raises(CloudConfigError):
        hostname_of("!!!")


def test_user_data_keys_hostname_growpart_and_custom_merged() -> None:
    text = user_data(
        "web1", ["ssh-ed25519 AAAA a"], "#cloud-config\npackages: [htop]\nhostname: other\n"
    )
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["hostname"] == "web1"
    assert doc["ssh_authorized_keys"] == ["ssh-ed25519 AAAA a"]
    assert doc["packages"] == ["htop"]
    assert doc["growpart"]["devices"] == ["/"] and doc["resize_rootfs"] is True


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("packages: [a]", "must start with"),
        ("#cloud-config\n: : [", "not valid YAML"),
        ("#cloud-config\n- a\n- b\n", "mapping"),
        ("#cloud-config\npackages: htop\n", "wrong type"),
    ],
)
def test_bad_custom_config_refused(text: str, words: str) -> None:
    with pytest.raises(CloudConfigError, match=words):
        parse_custom(text)


def test_meta_data() -> None:
    assert yaml.safe_load(meta_data("i-1", "web1")) == {
        "instance-id": "i-1",
        "local-hostname": "web1",
    }


def test_network_config_v1_v2_dhcp_static() -> None:
    assert yaml.safe_load(network_config(None))["ethernets"]["eth0"]["dhcp4"] is True
    static = StaticAddress("192.0.2.10/24", "192.0.2.1", ("192.0.2.53",))
    v2 = yaml.safe_load(network_config(static))
    assert v2["ethernets"]["eth0"]["addresses"] == ["192.0.2.10/24"]
    v1 = yaml.safe_load(network_config(static, version=1))
    assert v1["config"][0]["subnets"][0] == {
        "type": "static",
        "address": "192.0.2.10/24",
        "gateway": "192.0.2.1",
        "dns_nameservers": ["192.0.2.53"],
    }
    with pytest.raises(CloudConfigError, match="outside"):
        network_config(StaticAddress("192.0.2.10/24", "198.51.100.1"))
