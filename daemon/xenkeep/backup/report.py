"""Texts of the backup domain's other reports: verify mails and restore log lines.

Run reports (backups and replications alike) are :mod:`xenkeep.jobs.report`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xenkeep.units import human_bytes


def verify_subject(appliance: str, result: Mapping[str, Any]) -> str:
    """``[XenKeep appliance] Verify: 2 damaged restore points``."""
    damaged = len(result.get("damaged") or [])
    if result.get("status") == "damaged":
        return f"[XenKeep {appliance}] Verify: {damaged} damaged restore point(s)"
    return f"[XenKeep {appliance}] Verify: {result.get('status')}"


def verify_body(result: Mapping[str, Any]) -> str:
    """A plain-text verify report naming each damaged point and its blocks."""
    lines = [
        f"Status: {result.get('status')}",
        f"Restore points read: {result.get('points', 0)}    Blocks: {result.get('blocks', 0)}",
    ]
    if result.get("error"):
        lines.append(f"Error: {result['error']}")
    for d in result.get("damaged") or []:
        blocks = ", ".join(str(b) for b in d.get("blocks") or []) or "-"
        lines.append(
            f"* VM {d.get('vm_uuid')} restore point {d.get('point_id')} disk {d.get('disk')}: "
            f"{d.get('reason')}; blocks {blocks}"
        )
    return "\n".join(lines) + "\n"


def restore_log_line(report: Mapping[str, Any]) -> str:
    """One log line for a finished restore: what was restored, into what, how fast."""
    disks = len(report.get("new_vdi_uuids") or [])
    into = (
        f"new VM {report.get('new_vm_uuid')}"
        if report.get("new_vm_uuid")
        else "new VDI " + ", ".join(report.get("new_vdi_uuids") or [])
    )
    return (
        f"restore finished: {report.get('vm_name')} at restore point {report.get('point_id')} "
        f"into {into} ({disks} disk{'s' if disks != 1 else ''}), "
        f"{human_bytes(report.get('bytes') or 0)} in {report.get('seconds', 0):.1f} s "
        f"({human_bytes(report.get('speed') or 0)}/s)"
    )
