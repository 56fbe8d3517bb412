"""Name resolution: the pools' host names (and any other configured) resolve."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Final

from xenkeep.diagnostics.check import Check, Finding, failure, ok, warning
from xenkeep.diagnostics.sources import Sources

from .pools import host_port

#: The resolver tries each server in turn; a dead one costs its timeout.
RESOLVE_TIMEOUT: Final = 10.0


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def nameservers(resolv_conf: str) -> list[str]:
    """The ``nameserver`` lines of a resolv.conf."""
    out = []
    for line in resolv_conf.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            out.append(fields[1])
    return out


async def resolve(name: str) -> str:
    """The addresses ``name`` resolves to, in words; OSError or TimeoutError."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
    )
    return ", ".join(sorted({str(i[4][0]) for i in infos}))


async def dns(s: Sources) -> list[Finding]:
    names = [host_port(p.url)[0] for p in await s.pools.pools()]
    names = sorted({n for n in [*names, *s.dns_names] if n and not _is_address(n)})
    try:
        servers = nameservers(await asyncio.to_thread(s.resolv_conf.read_text))
    except OSError:
        servers = []
    via = f" via {', '.join(servers)}" if servers else ""
    if not names:
        if not servers:
            return [
                warning(
                    "no DNS server is configured",
                    "Set DNS servers (`xenkeep network`, or DHCP): pools named by host name "
                    "and mail servers need them.",
                )
            ]
        return [ok(f"nothing to resolve (pools are addressed by IP){via}")]
    resolved, broken = [], []
    for name in names:
        try:
            resolved.append(f"{name} → {await resolve(name)}")
        except (OSError, TimeoutError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or "no answer in time"
            broken.append(f"{name}: {reason}")
    if broken:
        return [
            failure(
                "cannot resolve " + "; ".join(broken) + via,
                "Check the appliance's DNS servers (`xenkeep network show`) and that they "
                "answer from here; a pool can also be registered by its IP address.",
            )
        ]
    return [ok("; ".join(resolved) + via)]


CHECKS: Final = (Check("dns", "DNS resolution", dns),)
