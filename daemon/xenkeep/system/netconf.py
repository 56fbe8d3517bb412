"""Network and time settings of the appliance, as systemd reads them.

Pure functions: validate what an administrator typed (web UI, vm-data keys)
and render the files ``systemd-networkd`` and ``systemd-timesyncd`` read.
Writing them and reloading the services is the privileged helper's job
(:mod:`xenkeep.privhelper`).

Files:
- ``/etc/systemd/network/10-xenkeep.network``: a static configuration. It
  sorts before the image's ``/usr/lib/systemd/network/90-xenkeep-dhcp.network``
  and networkd uses the first file that matches, so removing it means DHCP.
- ``/etc/systemd/timesyncd.conf.d/50-xenkeep.conf``: NTP servers.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

NETWORK_FILE = PurePosixPath("/etc/systemd/network/10-xenkeep.network")
TIMESYNCD_FILE = PurePosixPath("/etc/systemd/timesyncd.conf.d/50-xenkeep.conf")
#: The appliance has one NIC (the XVA has one VIF): enX0 under XenServer,
#: enp0s* under QEMU, eth* on old kernels.
MATCH_NAMES = "en* eth*"
MAX_DNS = 3
MAX_NTP = 5
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class NetconfError(ValueError):
    """A network or time setting is not valid; ``field`` names which one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class StaticNetwork:
    """One address with its prefix, an optional gateway, DNS servers."""

    address: IPInterface
    gateway: IPAddress | None
    dns: tuple[IPAddress, ...]


def _split_list(text: str) -> list[str]:
    return [item for item in re.split(r"[\s,;]+", text.strip()) if item]


def _parse_ip(field: str, text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise NetconfError(field, f"{text!r} is not an IP address") from None


def _prefix_length(netmask: str, version: int) -> int:
    text = netmask.strip().lstrip("/")
    if text.isdigit():
        prefix = int(text)
        if not 0 < prefix <= (32 if version == 4 else 128):
            raise NetconfError("netmask", f"prefix length {prefix} is out of range")
        return prefix
    if version != 4:
        raise NetconfError("netmask", "an IPv6 address takes a prefix length, e.g. 64")
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        raise NetconfError("netmask", f"{netmask!r} is not a netmask") from None


def parse_static_network(
    ip: str, netmask: str, gateway: str | None = None, dns: str | list[str] = ""
) -> StaticNetwork:
    """Validate a static configuration given as text; raise NetconfError.

    ``netmask`` is dotted (255.255.255.0) or a prefix length (24, /24). The
    gateway must be inside the network; DNS is a list or text separated by
    commas or spaces, at most three servers.
    """
    address = _parse_ip("ip", ip)
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise NetconfError("ip", f"{address} cannot be the appliance's address")
    prefix = _prefix_length(netmask, address.version)
    interface = ipaddress.ip_interface(f"{address}/{prefix}")
    if (
        address.version == 4
        and prefix < 31
        and address
        in (
            interface.network.network_address,
            interface.network.broadcast_address,
        )
    ):
        raise NetconfError("ip", f"{address} is the network or broadcast address of /{prefix}")
    gw: IPAddress | None = None
    if gateway is not None and gateway.strip():
        gw = _parse_ip("gateway", gateway)
        if gw.version != address.version:
            raise NetconfError("gateway", "the gateway and the address are not the same IP version")
        if gw not in interface.network and not gw.is_link_local:
            raise NetconfError("gateway", f"{gw} is outside {interface.network}")
        if gw == address:
            raise NetconfError("gateway", "the gateway is the appliance's own address")
    servers = _split_list(dns) if isinstance(dns, str) else [d.strip() for d in dns]
    if len(servers) > MAX_DNS:
        raise NetconfError("dns", f"at most {MAX_DNS} DNS servers")
    dns_ips = tuple(_parse_ip("dns", s) for s in servers)
    return StaticNetwork(address=interface, gateway=gw, dns=dns_ips)


def parse_ntp_servers(servers: str | list[str]) -> tuple[str, ...]:
    """Validate NTP servers (host names or IP addresses); empty means the defaults."""
    items = _split_list(servers) if isinstance(servers, str) else [s.strip() for s in servers]
    if len(items) > MAX_NTP:
        raise NetconfError("ntp", f"at most {MAX_NTP} NTP servers")
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_address(item)))
            continue
        except ValueError:
            pass
        if not _HOSTNAME.match(item) or item.replace(".", "").isdigit():
            raise NetconfError("ntp", f"{item!r} is neither a host name nor an IP address")
        out.append(item.lower())
    return tuple(out)


def render_network(config: StaticNetwork) -> str:
    """The ``.network`` file of a static configuration."""
    lines = [
        "# Written by XenKeep (web UI or vm-data at first boot). Remove for DHCP.",
        "[Match]",
        f"Name={MATCH_NAMES}",
        "",
        "[Network]",
        f"Address={config.address.with_prefixlen}",
    ]
    if config.gateway is not None:
        lines.append(f"Gateway={config.gateway}")
    lines.extend(f"DNS={server}" for server in config.dns)
    # Router advertisements could add a second, unexpected IPv6 address.
    lines.append("IPv6AcceptRA=no")
    lines.append("LinkLocalAddressing=ipv6")
    return "\n".join(lines) + "\n"


def render_timesyncd(servers: tuple[str, ...]) -> str:
    """The timesyncd drop-in naming ``servers`` (non-empty)."""
    if not servers:
        raise NetconfError("ntp", "no NTP server given")
    return (
        "# Written by XenKeep (web UI or vm-data/ntp at first boot).\n"
        "[Time]\n"
        f"NTP={' '.join(servers)}\n"
    )
