"""The NoCloud seed files: meta-data, user-data and network-config (pure).

cloud-init's NoCloud datasource reads ``meta-data`` (YAML: ``instance-id``,
``local-hostname``), ``user-data`` (here a ``#cloud-config`` document) and an
optional ``network-config`` (network config version 1 or 2) from a volume
labelled ``cidata``. This module only renders and checks the texts; the
volume is built by :mod:`xenkeep.cloudinit.drive`.

A custom ``#cloud-config`` is parsed as YAML and checked against
cloud-init's own JSON schema (``schema-cloud-config-v1.json``, as the guest's
``cloud-init schema`` would check it; :mod:`xenkeep.cloudinit.schema` finds
the file) before anything is created; without the schema only the keys
XenKeep merges are checked for their types. XenKeep's own keys win over the
custom ones where they overlap (the keys, the hostname, growing the root
filesystem).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import jsonschema
import yaml

from .errors import CloudConfigError

CLOUD_CONFIG_HEADER: Final = "#cloud-config"
#: RFC 1123 host label, as cloud-init's ``set_hostname`` writes it.
_HOSTNAME: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
#: At most this many schema errors are named in one message.
_SHOWN_ERRORS: Final = 3
#: Keys of cloud-init's schema and the type their value must have (the
#: check when cloud-init's schema file is not at hand).
_TYPED_KEYS: Final[Mapping[str, type | tuple[type, ...]]] = {
    "ssh_authorized_keys": list,
    "packages": list,
    "runcmd": list,
    "bootcmd": list,
    "write_files": list,
    "users": (list, str),
    "groups": (list, str, dict),
    "hostname": str,
    "fqdn": str,
    "timezone": str,
    "package_update": bool,
    "package_upgrade": bool,
    "resize_rootfs": (bool, str),
    "growpart": dict,
    "ssh_pwauth": (bool, str),
    "disable_root": bool,
    "chpasswd": dict,
    "final_message": str,
}


def hostname_of(name: str) -> str:
    """A VM's name as a host name: lower case, other characters as '-'."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.strip().lower()).strip("-")[:63].strip("-")
    if not _HOSTNAME.match(text):
        raise CloudConfigError(f"{name!r} gives no usable host name")
    return text


def schema_checker(schema: Mapping[str, Any]) -> SchemaChecker:
    """A checker of cloud-init's JSON schema, made once (jsonschema reads its
    own meta-schemas the first time: do it outside the event loop)."""
    return SchemaChecker(jsonschema.validators.validator_for(schema)(schema))


@dataclass(frozen=True)
class SchemaChecker:
    """cloud-init's schema, ready to check documents against."""

    validator: Any

    def errors(self, data: Mapping[str, Any]) -> list[str]:
        """What in a ``#cloud-config`` mapping breaks the schema, each as
        ``where: why`` (the path of keys and indexes, then jsonschema's words)."""
        found: list[str] = []
        for error in sorted(
            self.validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]
        ):
            # A oneOf/anyOf failure says "is not valid under any of the given
            # schemas"; its closest sub-error names what is wrong.
            cause = jsonschema.exceptions.best_match([error, *error.context]) or error
            where = ".".join(str(p) for p in cause.absolute_path) or "the document"
            message = f"{where}: {cause.message}"[:300]
            if message not in found:
                found.append(message)
        return found


def parse_custom(text: str, schema: SchemaChecker | None = None) -> dict[str, Any]:
    """A custom ``#cloud-config``: its mapping, or CloudConfigError saying why not.

    With ``schema`` (cloud-init's JSON schema), the whole document is
    checked against it.
    """
    stripped = text.strip()
    if not stripped:
        return {}
    if not stripped.startswith(CLOUD_CONFIG_HEADER):
        raise CloudConfigError("custom user-data must start with '#cloud-config'")
    try:
        data = yaml.safe_load(stripped)
    except yaml.YAMLError as exc:
        raise CloudConfigError(f"custom #cloud-config is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CloudConfigError("custom #cloud-config must be a mapping of keys")
    for key, value in data.items():
        if not isinstance(key, str):
            raise CloudConfigError(f"custom #cloud-config key {key!r} is not a string")
        wanted = _TYPED_KEYS.get(key) if schema is None else None
        if wanted is not None and not isinstance(value, wanted):
            raise CloudConfigError(
                f"custom #cloud-config: {key!r} has the wrong type ({type(value).__name__})"
            )
    if schema is not None:
        errors = schema.errors(data)
        if errors:
            more = len(errors) - _SHOWN_ERRORS
            raise CloudConfigError(
                "custom #cloud-config does not follow cloud-init's schema: "
                + "; ".join(errors[:_SHOWN_ERRORS])
                + (f"; and {more} more" if more > 0 else "")
            )
    return data


def user_data(hostname: str, ssh_keys: Sequence[str], custom: str = "") -> str:
    """The ``#cloud-config`` user-data: the keys, the host name, the root grown."""
    config = parse_custom(custom)
    keys = [k for k in config.get("ssh_authorized_keys", []) if isinstance(k, str)]
    config.update(
        {
            "hostname": hostname,
            "preserve_hostname": False,
            "manage_etc_hosts": True,
            "ssh_authorized_keys": [*ssh_keys, *[k for k in keys if k not in ssh_keys]],
            "growpart": {"mode": "auto", "devices": ["/"]},
            "resize_rootfs": True,
        }
    )
    return CLOUD_CONFIG_HEADER + "\n" + str(yaml.safe_dump(config, sort_keys=True))


def meta_data(instance_id: str, hostname: str) -> str:
    """The NoCloud meta-data."""
    return str(
        yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname}, sort_keys=True)
    )


@dataclass(frozen=True)
class StaticAddress:
    """A static address of the VM's one interface."""

    address: str  # "192.0.2.10/24"
    gateway: str = ""
    dns: tuple[str, ...] = field(default_factory=tuple)


def network_config(static: StaticAddress | None, *, version: int = 2) -> str:
    """A network-config (v1 or v2) for the first interface: DHCP or static."""
    if version not in (1, 2):
        raise CloudConfigError("network-config version must be 1 or 2")
    if static is not None:
        try:
            iface = ipaddress.ip_interface(static.address)
            gateway = ipaddress.ip_address(static.gateway) if static.gateway else None
            dns = [str(ipaddress.ip_address(d)) for d in static.dns]
        except ValueError as exc:
            raise CloudConfigError(f"static network: {exc}") from None
        if gateway is not None and gateway not in iface.network:
            raise CloudConfigError(f"gateway {gateway} is outside {iface.network}")
    if version == 1:
        subnet: dict[str, Any] = {"type": "dhcp"}
        if static is not None:
            subnet = {"type": "static", "address": str(iface)}
            if gateway is not None:
                subnet["gateway"] = str(gateway)
            if dns:
                subnet["dns_nameservers"] = dns
        doc: dict[str, Any] = {
            "version": 1,
            "config": [{"type": "physical", "name": "eth0", "subnets": [subnet]}],
        }
    else:
        eth: dict[str, Any] = {"match": {"name": "e*"}, "dhcp4": True}
        if static is not None:
            eth = {"match": {"name": "e*"}, "addresses": [str(iface)], "dhcp4": False}
            if gateway is not None:
                eth["routes"] = [{"to": "default", "via": str(gateway)}]
            if dns:
                eth["nameservers"] = {"addresses": dns}
        doc = {"version": 2, "ethernets": {"eth0": eth}}
    return str(yaml.safe_dump(doc, sort_keys=True))
