"""The console banner and the addresses the pool sees.

``xenkeep-console.service`` runs this as root for the appliance's lifetime.
Every few seconds it gathers the appliance's addresses, the TLS certificate's
fingerprint and, while no administrator exists, the one-time setup token
(the daemon keeps it in ``<run_dir>/setup-token`` until the wizard has made
the first administrator). When anything changed it

- rewrites ``/etc/issue.d/50-xenkeep.issue``, which agetty prints above the
  login prompt on the VGA and serial consoles, and asks the gettys to redraw
  (``agetty --reload``);
- on Xen, writes the addresses where guest tools put them
  (``attr/vif/0/ipv4/0``, ``attr/vif/0/ipv6/0``, then ``data/updated``) so
  ``xe vm-list params=networks`` shows them.

Polling costs one ``ip address`` call every few seconds and keeps this free of
event plumbing between the daemon and root. Commands go through
:func:`xenkeep.system.run.run`, like every command the system package runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xenkeep import __version__
from xenkeep.config import load_settings
from xenkeep.system.run import CommandError, run
from xenkeep.system.tls import certificate_fingerprint

log = logging.getLogger(__name__)

ISSUE_FILE = Path("/etc/issue.d/50-xenkeep.issue")
POLL_SECONDS = 3.0
PRODUCT = "XenKeep"


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """Everything the banner shows."""

    addresses: tuple[str, ...]
    fingerprint: str | None
    setup_token: str | None
    https_port: int = 443


def url_for(address: str, port: int = 443) -> str:
    """``https://<address>/`` with brackets for IPv6 and the port when not 443."""
    ip = ipaddress.ip_address(address)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    suffix = "" if port == 443 else f":{port}"
    return f"https://{host}{suffix}/"


def _issue_escape(text: str) -> str:
    # agetty expands backslash sequences in issue files (\n, \4, ...).
    return text.replace("\\", "\\\\")


def render_banner(state: ConsoleState) -> str:
    """The issue file text: name, version, URLs, fingerprint, setup token."""
    lines = [
        f"{PRODUCT} {__version__} - backup and self-service appliance for XenServer / XCP-ng",
        "",
    ]
    if state.addresses:
        lines.append("  Open the web interface at:")
        lines.extend(f"    {url_for(a, state.https_port)}" for a in state.addresses)
    else:
        lines.append("  No network address yet (waiting for DHCP or vm-data/ip).")
    lines.append("")
    if state.fingerprint:
        lines.append("  TLS certificate SHA-256 fingerprint (check it in the browser):")
        lines.append(f"    {state.fingerprint}")
    else:
        lines.append("  TLS certificate: not created yet (the web service is starting).")
    if state.setup_token:
        lines.append("")
        lines.append("  No administrator exists yet. The setup wizard asks for this token:")
        lines.append(f"    Setup token: {state.setup_token}")
    lines.append("")
    return _issue_escape("\n".join(lines) + "\n")


def usable_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """Addresses worth showing: global ones, IPv4 first, sorted, no duplicates."""
    out: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            continue
        out.add(ip)
    return tuple(str(ip) for ip in sorted(out, key=lambda ip: (ip.version, ip)))


async def system_addresses() -> list[str]:
    """All addresses of the machine's interfaces, from ``ip -json address``."""
    out = (await run(["ip", "-json", "address", "show"], timeout=10)).stdout
    return [
        str(info["local"])
        for link in json.loads(out)
        for info in link.get("addr_info", [])
        if "local" in info
    ]


def read_token(path: Path) -> str | None:
    """The setup token, or None once the daemon removed it (an admin exists)."""
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def read_fingerprint(cert_path: Path) -> str | None:
    """The certificate's SHA-256 fingerprint, or None before the daemon made it."""
    try:
        return certificate_fingerprint(cert_path)
    except (OSError, ValueError):
        return None


Runner = Callable[[Sequence[str]], Awaitable[int]]


async def _status(argv: Sequence[str]) -> int:
    """The exit status of ``argv``; -1 when it could not run or timed out."""
    try:
        return (await run(argv, timeout=10, check=False)).returncode
    except CommandError:
        return -1


def xenstore_writes(addresses: Sequence[str]) -> list[tuple[str, str]]:
    """The (key, value) pairs guest tools write for the first VIF's addresses."""
    v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in addresses if ipaddress.ip_address(a).version == 6]
    pairs = [(f"attr/vif/0/ipv4/{i}", a) for i, a in enumerate(v4)]
    pairs += [(f"attr/vif/0/ipv6/{i}", a) for i, a in enumerate(v6)]
    # XAPI re-reads the guest's attributes when data/updated changes.
    pairs.append(("data/updated", "1"))
    return pairs


async def report_to_xenstore(addresses: Sequence[str], run: Runner = _status) -> bool:
    """Write the addresses into xenstore; False when not on Xen or it failed."""
    if await asyncio.to_thread(shutil.which, "xenstore-write") is None:
        return False
    await run(["xenstore-rm", "attr/vif/0"])
    argv = ["xenstore-write"]
    for key, value in xenstore_writes(addresses):
        argv += [key, value]
    return await run(argv) == 0


def on_xen(hypervisor_type: Path = Path("/sys/hypervisor/type")) -> bool:
    """True in a Xen guest."""
    try:
        return hypervisor_type.read_text().strip() == "xen"
    except OSError:
        return False


def write_issue(path: Path, text: str) -> bool:
    """Replace the issue file when its text changed; True when it did."""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)
    return True


async def run_forever(issue: Path, once: bool = False) -> None:
    """The service's loop: refresh the banner and xenstore on every change."""
    settings = await asyncio.to_thread(load_settings)
    xen = await asyncio.to_thread(on_xen)
    last: ConsoleState | None = None
    while True:
        try:
            addresses = usable_addresses(await system_addresses())
        except (CommandError, ValueError) as exc:
            log.warning("cannot list addresses: %s", exc)
            addresses = ()
        # Small files, but file work stays off the loop that runs the commands.
        fingerprint, token = await asyncio.to_thread(
            lambda: (
                read_fingerprint(settings.tls_dir / "cert.pem"),
                read_token(settings.setup_token_path),
            )
        )
        state = ConsoleState(
            addresses=addresses,
            fingerprint=fingerprint,
            setup_token=token,
            https_port=settings.https_port,
        )
        if state != last:
            if await asyncio.to_thread(write_issue, issue, render_banner(state)):
                # Running gettys redraw the prompt with the new banner.
                await _status(["agetty", "--reload"])
            if xen and (last is None or state.addresses != last.addresses):
                await report_to_xenstore(state.addresses)
            log.info("console banner: %s", ", ".join(state.addresses) or "no address")
            last = state
        if once:
            return
        await asyncio.sleep(POLL_SECONDS)


def main(argv: list[str] | None = None) -> int:
    """Entry point of xenkeep-console.service."""
    parser = argparse.ArgumentParser(description="Keep the console banner up to date.")
    parser.add_argument("--issue", type=Path, default=ISSUE_FILE)
    parser.add_argument("--once", action="store_true", help="refresh once and exit")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.umask(0o022)
    socket.setdefaulttimeout(10)
    asyncio.run(run_forever(ns.issue, once=ns.once))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
