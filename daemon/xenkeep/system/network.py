"""The appliance's network and NTP settings from the daemon's side (and the console's).

Changes are the privileged helper's, as checkpoints that undo themselves
unless confirmed in time (:mod:`xenkeep.privhelper.checkpoint`; the helper
owns the deadline, so nothing here has to survive for the old settings to
come back). This class checks what was typed with the same grammar the
helper applies again (:mod:`xenkeep.system.netconf`), so bad input gets a
clear error naming its field before anything is sent, then asks the helper
and records the change in the audit log when it has one (the web UI; the
console talks to the helper directly, so it works when the daemon does
not, and the helper's journal records those).

A change that can move the address (static, DHCP) is applied
:data:`ADDRESS_CHANGE_DELAY` seconds after the helper's answer when asked
from the web: the browser's answer must leave by the old address.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import AuditEvent
from xenkeep.errors import ValidationError
from xenkeep.system import helper
from xenkeep.system.helper import Call, HelperDoor
from xenkeep.system.helper_protocol import CONFIRM_SECONDS
from xenkeep.system.netconf import (
    NetconfError,
    parse_address,
    parse_ntp_servers,
    parse_static_network,
)

#: Seconds between the helper's answer and a web-asked address change.
ADDRESS_CHANGE_DELAY: Final = 2.0
#: The form's and the API's names of the fields (netconf's ``ip`` and
#: ``netmask`` are both in ``address``).
_FIELDS: Final = {"ip": "address", "netmask": "address"}


def _invalid(exc: NetconfError) -> ValidationError:
    return ValidationError(str(exc), field=_FIELDS.get(exc.field, exc.field))


class NetworkService:
    """Shows the network and NTP settings; changes, keeps and reverts them."""

    def __init__(
        self,
        socket: Path,
        call: Call = helper.call,
        *,
        audit: AuditLog | None = None,
        timeout: float | None = None,
    ) -> None:
        self._door = HelperDoor(
            socket,
            call,
            what="changing the network settings",
            hint="on a development machine the host's network is not the appliance's",
            timeout=timeout,
        )
        self._audit = audit

    async def is_available(self) -> bool:
        """Whether the privileged helper runs here (on the appliance it does)."""
        return await self._door.is_available()

    async def show(self) -> dict[str, Any]:
        """What the files say, what the interfaces have, the change waiting, the last one's end."""
        return await self._door.ask("network.show")

    async def set_static(
        self,
        address: str,
        gateway: str | None,
        dns: str | Sequence[str],
        *,
        confirm_within: float = CONFIRM_SECONDS,
        delay: float = 0.0,
        actor: str = "",
        ip: str = "",
    ) -> dict[str, Any]:
        """A static address ``ADDR/PREFIX``, an optional gateway, one to three DNS servers."""
        servers = _split(dns)
        try:
            addr, prefix = parse_address(address)
            parse_static_network(addr, prefix, gateway, servers, dns_required=True)
        except NetconfError as exc:
            raise _invalid(exc) from None
        args: dict[str, Any] = {"address": address.strip(), "dns": servers}
        if gateway is not None and gateway.strip():
            args["gateway"] = gateway.strip()
        return await self._change("network.static", args, confirm_within, delay, actor, ip)

    async def set_dhcp(
        self,
        *,
        confirm_within: float = CONFIRM_SECONDS,
        delay: float = 0.0,
        actor: str = "",
        ip: str = "",
    ) -> dict[str, Any]:
        """DHCP: the image's default configuration."""
        return await self._change("network.dhcp", {}, confirm_within, delay, actor, ip)

    async def set_ntp(
        self,
        servers: str | Sequence[str],
        *,
        confirm_within: float = CONFIRM_SECONDS,
        actor: str = "",
        ip: str = "",
    ) -> dict[str, Any]:
        """NTP servers (host names or addresses); none: the image's defaults."""
        try:
            names = list(parse_ntp_servers(_split(servers)))
        except NetconfError as exc:
            raise _invalid(exc) from None
        return await self._change("ntp.set", {"servers": names}, confirm_within, 0.0, actor, ip)

    async def keep(
        self, checkpoint: str, *, actor: str = "", ip: str = "", via: str = ""
    ) -> dict[str, Any]:
        """Confirm the change ``checkpoint``; ``via`` is the address it was confirmed at."""
        result = await self._door.ask("network.confirm", {"checkpoint": _checkpoint(checkpoint)})
        if self._audit is not None:
            await self._audit.record(
                AuditEvent.NETWORK_KEPT, username=actor, ip=ip, checkpoint=checkpoint, via=via
            )
        return result

    async def revert(self, checkpoint: str, *, actor: str = "", ip: str = "") -> dict[str, Any]:
        """Put the previous settings back now."""
        result = await self._door.ask("network.revert", {"checkpoint": _checkpoint(checkpoint)})
        if self._audit is not None:
            await self._audit.record(
                AuditEvent.NETWORK_REVERTED, username=actor, ip=ip, checkpoint=checkpoint
            )
        return result

    async def _change(
        self,
        op: str,
        args: dict[str, Any],
        confirm_within: float,
        delay: float,
        actor: str,
        ip: str,
    ) -> dict[str, Any]:
        result = await self._door.ask(op, {**args, "timeout": confirm_within, "delay": delay})
        pending = result.get("pending") or {}
        if self._audit is not None:
            await self._audit.record(
                AuditEvent.NETWORK_CHANGED,
                username=actor,
                ip=ip,
                change=str(pending.get("summary", "")),
                checkpoint=str(pending.get("id", "")),
                confirm_within=confirm_within,
            )
        return result


def _split(values: str | Sequence[str]) -> list[str]:
    """Servers typed in one field (spaces or commas between) or given as a list.

    Only spaces and commas separate: a newline or another control character
    stays inside its value, which the grammar then refuses by name.
    """
    items = re.split(r"[ ,]+", values) if isinstance(values, str) else list(values)
    return [v.strip(" ") for v in items if v.strip(" ")]


def _checkpoint(value: str) -> str:
    text = value.strip()
    if not text or len(text) > 64 or not text.isalnum():
        raise ValidationError("not a checkpoint id", field="checkpoint")
    return text
