"""What a started VM's guest says about itself: the one sign that it booted.

XAPI fills ``VM_guest_metrics`` from the guest agent once the guest's OS is
up (its name, the PV drivers). Health checks wait for it before calling a
restored VM healthy; self-service creation waits for it before removing the
config drive that the first boot read.
"""

from __future__ import annotations

from typing import Final

from .client import XapiClient
from .errors import XapiFailure

NULL_REF: Final = "OpaqueRef:NULL"


async def guest_report(client: XapiClient, vm: str) -> str | None:
    """What the guest of a started VM says about itself ("Debian GNU/Linux
    12, PV drivers 7.30"), or None while it says nothing."""
    metrics = await client.call("VM.get_guest_metrics", vm)
    if metrics in (None, "", NULL_REF):
        return None
    try:
        rec = await client.call("VM_guest_metrics.get_record", metrics)
    except XapiFailure:
        return None  # replaced meanwhile: look again
    os_name = str((rec.get("os_version") or {}).get("name") or "")
    drivers = rec.get("PV_drivers_version") or {}
    up = bool(rec.get("PV_drivers_detected")) or bool(drivers)
    if not (up or os_name):
        return None
    version = ".".join(str(drivers[k]) for k in ("major", "minor") if k in drivers)
    parts = [os_name or "the guest agent answered"]
    if up:
        parts.append(f"PV drivers {version}".strip())
    parts.append(f"last report {rec.get('last_updated')}")
    return ", ".join(parts)
