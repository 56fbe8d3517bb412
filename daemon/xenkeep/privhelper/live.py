"""What the appliance's network is doing right now, as opposed to what its files say.

Addresses, links and default routes come from the kernel over netlink with
``pyroute2`` (Debian's python3-pyroute2): structured answers, no ``ip``
output to parse, no process per look. The DNS servers in use come from
networkd's state of each link (``/run/systemd/netif/links/<index>``, the
``DNS=`` line, which holds DHCP's servers too). Blocking calls: the helper
runs :func:`read_live` in a thread.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Final

from pyroute2 import IPRoute

from xenkeep.privhelper.netfiles import NIC_PREFIXES

NETIF_LINKS: Final = Path("/run/systemd/netif/links")
#: rtnetlink's RT_SCOPE_UNIVERSE and RT_TABLE_MAIN.
_SCOPE_GLOBAL: Final = 0
_MAIN_TABLE: Final = 254
#: net/if.h IFF_UP.
_IFF_UP: Final = 1


def read_live(netif_links: Path = NETIF_LINKS) -> dict[str, Any]:
    """``{"interfaces": [{name, up, addresses: ["ip/prefix"]}], "gateways": [ip], "dns": [ip]}``.

    Only the Ethernet interfaces networkd configures; addresses of global
    scope (a link-local address says nothing about where the appliance
    answers).
    """
    interfaces = []
    dns: list[str] = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = str(link.get_attr("IFLA_IFNAME") or "")
            if not name.startswith(NIC_PREFIXES):
                continue
            index = int(link["index"])
            addresses = [
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=index)
                if a["scope"] == _SCOPE_GLOBAL
            ]
            interfaces.append(
                {"name": name, "up": bool(link["flags"] & _IFF_UP), "addresses": addresses}
            )
            dns += [d for d in _networkd_dns(netif_links / str(index)) if d not in dns]
        gateways = sorted(
            {
                str(route.get_attr("RTA_GATEWAY"))
                for route in ipr.get_default_routes(table=_MAIN_TABLE)
                if route.get_attr("RTA_GATEWAY")
            }
        )
    return {"interfaces": interfaces, "gateways": gateways, "dns": dns}


def _networkd_dns(state: Path) -> list[str]:
    try:
        text = state.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        if line.startswith("DNS="):
            for item in line[4:].split():
                # Shown to people: only what reads as an address.
                try:
                    out.append(str(ipaddress.ip_address(item.split("%")[0].split("#")[0])))
                except ValueError:
                    continue
    return out
