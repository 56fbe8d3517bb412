"""Run reports of every job kind and their e-mail. Building is pure; sending
is :mod:`xenkeep.mail`'s.

A backup run and a replication run report the same way: per VM, status,
what was transferred (full or delta per disk, and why), bytes, duration,
speed, the point made, what the kind adds (merge time, phases), and the
error with its cause. One format, so one mail reads like the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xenkeep.mail import SmtpSettings, send_mail
from xenkeep.ops.const import OpStatus as RunStatus
from xenkeep.units import human_bytes

#: A VM in one of these states has its new point.
BACKED_UP = frozenset({RunStatus.SUCCESS.value, RunStatus.WARNING.value})


def overall_status(
    vms: Sequence[Mapping[str, Any]], *, cancelled: bool, warnings: Sequence[str] = ()
) -> RunStatus:
    """A run succeeds only if every VM did; it ends with a warning when every
    VM was copied but something needs a look (a VM's snapshot left in the
    pool, or the run's own ``warnings``)."""
    if cancelled:
        return RunStatus.CANCELLED
    if any(v.get("status") not in BACKED_UP for v in vms):
        return RunStatus.FAILED
    if warnings or any(v.get("status") == RunStatus.WARNING.value for v in vms):
        return RunStatus.WARNING
    return RunStatus.SUCCESS


def run_warnings(vms: Sequence[Mapping[str, Any]], own: Sequence[str] = ()) -> list[str]:
    """Every warning of a run: its own, then each VM's, named."""
    out = list(own)
    for v in vms:
        name = v.get("vm_name") or v.get("vm_uuid") or "a VM"
        out.extend(f"{name}: {w}" for w in v.get("warnings") or ())
    return out


#: VMs named in a failed run's summary; the report lists every one.
SUMMARY_VMS = 3


def failure_summary(vms: Sequence[Mapping[str, Any]]) -> str:
    """``2 of 3 VMs failed: web-01: <why>; db-01: <why>``: a failed run's error."""
    failed = [v for v in vms if v.get("status") not in BACKED_UP]
    if not failed:
        return ""
    parts = [
        f"{v.get('vm_name') or v.get('vm_uuid') or 'a VM'}: {v.get('error') or v.get('status')}"
        for v in failed[:SUMMARY_VMS]
    ]
    more = len(failed) - SUMMARY_VMS
    tail = f"; and {more} more" if more > 0 else ""
    return f"{len(failed)} of {len(vms)} VMs failed: {'; '.join(parts)}{tail}"


def build_report(
    *,
    run_id: int,
    job_name: str,
    pool_name: str,
    appliance: str,
    started: float,
    finished: float,
    vms: Sequence[Mapping[str, Any]],
    status: RunStatus,
    kind: str = "backup",
    target: str = "",
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The report stored with a run and sent by mail.

    ``kind`` names the job kind (``backup``, ``replication``); ``target``
    says where the copies went, when that is not the job's pool.
    """
    total = sum(int(v.get("bytes") or 0) for v in vms)
    seconds = max(0.0, finished - started)
    return {
        "run_id": run_id,
        "kind": kind,
        "job": job_name,
        "pool": pool_name,
        "target": target,
        "appliance": appliance,
        "status": status.value,
        "started": started,
        "finished": finished,
        "seconds": round(seconds, 3),
        "bytes": total,
        "speed": round(total / seconds, 1) if seconds > 0 else 0.0,
        "vms": [dict(v) for v in vms],
        "succeeded": sum(1 for v in vms if v.get("status") in BACKED_UP),
        "failed": sum(1 for v in vms if v.get("status") not in BACKED_UP),
        "warnings": list(warnings),
    }


def mail_subject(report: Mapping[str, Any]) -> str:
    """``[XenKeep appliance] Backup "job" on pool: success (3/3 VMs)``."""
    kind = str(report.get("kind") or "backup").capitalize()
    return (
        f'[XenKeep {report["appliance"]}] {kind} "{report["job"]}" on {report["pool"]}: '
        f"{report['status']} ({report['succeeded']}/{len(report['vms'])} VMs)"
    )


def mail_body(report: Mapping[str, Any]) -> str:
    """A plain-text report."""
    target = f"    To: {report['target']}" if report.get("target") else ""
    lines = [
        f"Job: {report['job']}    Pool: {report['pool']}{target}    "
        f"Appliance: {report['appliance']}",
        f"Status: {report['status']}    Duration: {report['seconds']:.1f} s    "
        f"Transferred: {human_bytes(report['bytes'])} at {human_bytes(report['speed'])}/s",
        "",
    ]
    if report.get("warnings"):
        lines.append("Warnings:")
        lines.extend(f"  ! {w}" for w in report["warnings"])
        lines.append("")
    for v in report["vms"]:
        lines.append(f"* {v.get('vm_name')} ({v.get('vm_uuid')}): {v.get('status')}")
        for key, kind in sorted((v.get("transfers") or {}).items()):
            lines.append(f"    disk {key}: {kind} — {(v.get('reasons') or {}).get(key, '')}")
        lines.append(
            f"    {human_bytes(v.get('bytes') or 0)} in {v.get('seconds', 0):.1f} s "
            f"({human_bytes(v.get('speed') or 0)}/s)"
            + (f", merge {v['merge_seconds']:.2f} s" if v.get("merge_seconds") is not None else "")
        )
        if v.get("phases"):
            phases = ", ".join(f"{k} {float(t):.2f} s" for k, t in v["phases"].items())
            lines.append(f"    phases: {phases}")
        if v.get("point_id"):
            lines.append(f"    {v.get('point_label') or 'restore point'} {v['point_id']}")
        if v.get("error"):
            lines.append(f"    error: {v['error']}")
    return "\n".join(lines) + "\n"


async def send_report(
    settings: SmtpSettings,
    report: Mapping[str, Any],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> str:
    """Mail a run report; the server's answer. Raises OSError/smtplib errors
    for the caller to log."""
    return await send_mail(
        settings,
        mail_subject(report),
        mail_body(report),
        (f"xenkeep-run-{report['run_id']}.json", report),
        timeout=timeout,
    )
