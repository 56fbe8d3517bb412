"""Network and time settings of the appliance, as systemd reads them.

Pure functions: validate what an administrator typed (web UI, vm-data keys)
and render the files ``systemd-networkd`` and ``systemd-timesyncd`` read.
Writing them and reloading the services is the privileged helper's job
(:mod:`xenkeep.privhelper`).

Two fences keep a value from adding a line or a section to those files:

- a strict grammar on input: an IP address is digits, hex, dots and colons
  only (Python's ``ipaddress`` accepts an IPv6 zone id, ``fe80::1%<any text,
  newlines included>``, which means nothing in these files), a host name is
  RFC 1123 labels, and no value holds a control character anywhere;
- one serializer for every systemd-style file the helper writes
  (:func:`render_systemd_file`: these and the backup disk's mount unit),
  which refuses what it cannot write as one ``Key=value`` line instead of
  writing it.

Files:
- ``/etc/systemd/network/10-xenkeep.network``: a static configuration. It
  sorts before the image's ``/usr/lib/systemd/network/90-xenkeep-dhcp.network``
  and networkd uses the first file that matches, so removing it means DHCP.
- ``/etc/systemd/timesyncd.conf.d/50-xenkeep.conf``: NTP servers.

What those files say, read back (:func:`read_network_file`,
:func:`read_timesyncd_file`), is a :class:`NetworkSettings`: the one
description of the appliance's network and time settings that the helper,
the daemon and the console show and change.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Sequence
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
# Used with fullmatch only: "$" alone would also match before a final newline.
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
#: What an IP address is written with: no zone id ("%..."), no scope, no space.
_IP_TEXT = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_SECTION = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
_KEY = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")


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


class UnrepresentableError(ValueError):
    """A value the systemd-file serializer refuses to write (it would not be one line)."""


def control_character(text: str) -> str | None:
    """The first control or line-breaking character in ``text``, or None."""
    for ch in text:
        # Cc: C0, DEL and C1 (NEL); Zl/Zp: U+2028/U+2029, line breaks to some readers.
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return ch
    return None


def check_text(field: str, text: str) -> str:
    """``text`` if it holds no control character; else NetconfError naming ``field``."""
    ch = control_character(text)
    if ch is not None:
        raise NetconfError(field, f"{text!r} contains a control character ({ch!r})")
    return text


def _split_list(field: str, text: str) -> list[str]:
    # Spaces separate items too, but nothing else that is blank: a newline
    # inside a value is refused, not taken as a separator.
    return [item for item in re.split(r"[ ,;]+", check_text(field, text).strip()) if item]


def _items(field: str, values: str | list[str]) -> list[str]:
    if isinstance(values, str):
        return _split_list(field, values)
    return [check_text(field, v).strip() for v in values]


def _parse_ip(field: str, text: str) -> IPAddress:
    value = check_text(field, text).strip()
    if "%" in value:
        raise NetconfError(field, f"{text!r}: an IPv6 zone id (%...) has no meaning here")
    if not _IP_TEXT.fullmatch(value):
        raise NetconfError(field, f"{text!r} is not an IP address")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise NetconfError(field, f"{text!r} is not an IP address") from None


def _prefix_length(netmask: str, version: int) -> int:
    text = check_text("netmask", netmask).strip().lstrip("/")
    if text.isascii() and text.isdigit():
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
    ip: str,
    netmask: str,
    gateway: str | None = None,
    dns: str | list[str] = "",
    *,
    dns_required: bool = False,
) -> StaticNetwork:
    """Validate a static configuration given as text; raise NetconfError.

    ``netmask`` is dotted (255.255.255.0) or a prefix length (24, /24). The
    gateway must be inside the network; DNS is a list or text separated by
    commas or spaces, at most three servers, at least one when
    ``dns_required`` (a change made from the web UI or the console: without
    a resolver the appliance reaches no NTP or mail server by name; vm-data
    seeds keep the old leniency, deploy scripts omit the key).
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
    if gateway is not None and check_text("gateway", gateway).strip():
        gw = _parse_ip("gateway", gateway)
        if gw.version != address.version:
            raise NetconfError("gateway", "the gateway and the address are not the same IP version")
        if gw not in interface.network and not gw.is_link_local:
            raise NetconfError("gateway", f"{gw} is outside {interface.network}")
        if gw == address:
            raise NetconfError("gateway", "the gateway is the appliance's own address")
    servers = _items("dns", dns)
    if dns_required and not servers:
        raise NetconfError("dns", "a static configuration needs at least one DNS server")
    if len(servers) > MAX_DNS:
        raise NetconfError("dns", f"at most {MAX_DNS} DNS servers")
    dns_ips = tuple(_parse_ip("dns", s) for s in servers)
    return StaticNetwork(address=interface, gateway=gw, dns=dns_ips)


def parse_address(address: str) -> tuple[str, str]:
    """``ADDR/PREFIX`` split in two; NetconfError (field ``address``) without the prefix."""
    ip, sep, prefix = check_text("address", address).strip().partition("/")
    if not sep:
        raise NetconfError("address", "the address needs a prefix length, e.g. 192.0.2.10/24")
    return ip, prefix


def parse_ntp_servers(servers: str | list[str]) -> tuple[str, ...]:
    """Validate NTP servers (host names or IP addresses); empty means the defaults."""
    items = _items("ntp", servers)
    if len(items) > MAX_NTP:
        raise NetconfError("ntp", f"at most {MAX_NTP} NTP servers")
    out = []
    for item in items:
        if ":" in item or "%" in item or item.replace(".", "").isdigit():
            # Only an address has a colon (IPv6), a zone id or nothing but
            # digits and dots (IPv4): it gets the strict address grammar.
            out.append(str(_parse_ip("ntp", item)))
            continue
        if not _HOSTNAME.fullmatch(item):
            raise NetconfError("ntp", f"{item!r} is neither a host name nor an IP address")
        out.append(item.lower())
    return tuple(out)


#: One line of a section: ``(key, value)``; the key ``"#"`` makes a comment line.
Entry = tuple[str, str]


def _line_value(what: str, value: str) -> str:
    ch = control_character(value)
    if ch is not None:
        kind = "a line separator" if unicodedata.category(ch) in ("Zl", "Zp") else None
        raise UnrepresentableError(
            f"{what}: {value!r} contains {kind or 'a control character'} ({ch!r})"
        )
    if value != value.strip():
        # systemd strips it: what it reads would not be what was checked.
        raise UnrepresentableError(f"{what}: {value!r} begins or ends with a space")
    if value.endswith("\\"):
        # A final backslash continues the line: the next one would join it.
        raise UnrepresentableError(f"{what}: {value!r} ends with a backslash")
    return value


def render_systemd_file(
    header: Sequence[str], sections: Sequence[tuple[str, Sequence[Entry]]]
) -> str:
    """A systemd-style file (unit, .network, drop-in): ``header`` comment lines, then sections.

    The one way the helper's files are written: each value must fit on its
    line as it is; anything else raises :class:`UnrepresentableError`
    rather than be escaped, since the readers' escaping rules differ.
    """
    lines = [f"# {_line_value('comment', line)}" if line else "#" for line in header]
    for i, (name, entries) in enumerate(sections):
        if not _SECTION.fullmatch(name):
            raise UnrepresentableError(f"{name!r} is not a section name")
        if i:
            lines.append("")
        lines.append(f"[{name}]")
        for key, value in entries:
            if key == "#":
                lines.append(f"# {_line_value('comment', value)}")
                continue
            if not _KEY.fullmatch(key):
                raise UnrepresentableError(f"{key!r} is not a key name")
            lines.append(f"{key}={_line_value(key, value)}")
    return "\n".join(lines) + "\n"


def render_network(config: StaticNetwork) -> str:
    """The ``.network`` file of a static configuration."""
    network: list[Entry] = [("Address", config.address.with_prefixlen)]
    if config.gateway is not None:
        network.append(("Gateway", str(config.gateway)))
    network.extend(("DNS", str(server)) for server in config.dns)
    network += [
        ("#", "Router advertisements could add a second, unexpected IPv6 address."),
        ("IPv6AcceptRA", "no"),
        ("LinkLocalAddressing", "ipv6"),
    ]
    return render_systemd_file(
        ["Written by XenKeep (web UI or vm-data at first boot). Remove for DHCP."],
        [("Match", [("Name", MATCH_NAMES)]), ("Network", network)],
    )


def render_timesyncd(servers: tuple[str, ...]) -> str:
    """The timesyncd drop-in naming ``servers`` (non-empty)."""
    if not servers:
        raise NetconfError("ntp", "no NTP server given")
    return render_systemd_file(
        ["Written by XenKeep (web UI or vm-data/ntp at first boot)."],
        [("Time", [("NTP", " ".join(servers))])],
    )


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """The appliance's network and time settings, as its files say.

    ``static`` None means DHCP (no ``10-xenkeep.network``); ``ntp`` empty
    means the image's default servers (no timesyncd drop-in).
    """

    static: StaticNetwork | None = None
    ntp: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The settings as the helper's protocol and the API carry them."""
        net = self.static
        return {
            "mode": "dhcp" if net is None else "static",
            "address": None if net is None else net.address.with_prefixlen,
            "gateway": None if net is None or net.gateway is None else str(net.gateway),
            "dns": [] if net is None else [str(d) for d in net.dns],
            "ntp": list(self.ntp),
        }

    def describe_network(self) -> str:
        """One line for people: ``DHCP`` or ``192.0.2.10/24 via 192.0.2.1, DNS 192.0.2.53``."""
        net = self.static
        if net is None:
            return "DHCP"
        text = net.address.with_prefixlen
        if net.gateway is not None:
            text += f" via {net.gateway}"
        if net.dns:
            text += ", DNS " + " ".join(str(d) for d in net.dns)
        return text

    def describe_ntp(self) -> str:
        """One line for people: the servers, or that the defaults are in use."""
        return " ".join(self.ntp) if self.ntp else "the default servers"


def settings_from_json(data: object) -> NetworkSettings:
    """:meth:`NetworkSettings.to_json` back, validated again; NetconfError if it does not fit."""
    if not isinstance(data, dict):
        raise NetconfError("settings", "settings must be an object")
    ntp = parse_ntp_servers([str(s) for s in data.get("ntp") or []])
    if data.get("mode") == "dhcp":
        return NetworkSettings(None, ntp)
    ip, prefix = parse_address(str(data.get("address") or ""))
    gateway = data.get("gateway")
    static = parse_static_network(
        ip,
        prefix,
        None if gateway is None else str(gateway),
        [str(d) for d in data.get("dns") or []],
    )
    return NetworkSettings(static, ntp)


def parse_systemd_file(text: str) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` for each assignment of a systemd-style file.

    For reading back the files :func:`render_systemd_file` wrote: comments
    and blank lines are skipped; a line continuation, a key outside a
    section or a line that is no assignment raises NetconfError (such a file
    was edited by hand, and is shown as such rather than guessed at).
    """
    out: list[tuple[str, str, str]] = []
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep or not section or line.endswith("\\"):
            raise NetconfError("file", f"line {number} is not one of XenKeep's: {raw!r}")
        out.append((section, key.strip(), value.strip()))
    return out


def read_network_file(text: str) -> StaticNetwork:
    """The static configuration in a ``10-xenkeep.network`` (:func:`render_network`'s form).

    Every value is validated again as if typed; NetconfError otherwise.
    """
    entries = parse_systemd_file(text)
    values: dict[str, list[str]] = {}
    for section, key, value in entries:
        values.setdefault(f"{section}.{key}", []).append(value)
    addresses = values.get("Network.Address", [])
    gateways = values.get("Network.Gateway", [])
    if len(addresses) != 1 or len(gateways) > 1:
        raise NetconfError("file", "not one address and at most one gateway")
    ip, prefix = parse_address(addresses[0])
    dns = [server for line in values.get("Network.DNS", []) for server in line.split()]
    return parse_static_network(ip, prefix, gateways[0] if gateways else None, dns)


def read_timesyncd_file(text: str) -> tuple[str, ...]:
    """The NTP servers in a timesyncd drop-in (:func:`render_timesyncd`'s form)."""
    servers = [
        v for section, key, v in parse_systemd_file(text) if (section, key) == ("Time", "NTP")
    ]
    return parse_ntp_servers(" ".join(servers))
