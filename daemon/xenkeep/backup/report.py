"""Run reports and their e-mail. Building is pure; sending uses smtplib in a thread.

A report says, per VM: status, what was transferred (full or delta per disk,
and why), bytes, duration, speed, merge time, and the error with its cause.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from xenkeep.errors import ValidationError
from xenkeep.units import human_bytes

from .const import RunStatus


def overall_status(vms: Sequence[Mapping[str, Any]], *, cancelled: bool) -> RunStatus:
    """A run succeeds only if every VM did."""
    if cancelled:
        return RunStatus.CANCELLED
    if any(v.get("status") != RunStatus.SUCCESS.value for v in vms):
        return RunStatus.FAILED
    return RunStatus.SUCCESS


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
) -> dict[str, Any]:
    """The report stored with a run and sent by mail."""
    total = sum(int(v.get("bytes") or 0) for v in vms)
    seconds = max(0.0, finished - started)
    return {
        "run_id": run_id,
        "job": job_name,
        "pool": pool_name,
        "appliance": appliance,
        "status": status.value,
        "started": started,
        "finished": finished,
        "seconds": round(seconds, 3),
        "bytes": total,
        "speed": round(total / seconds, 1) if seconds > 0 else 0.0,
        "vms": [dict(v) for v in vms],
        "succeeded": sum(1 for v in vms if v.get("status") == RunStatus.SUCCESS.value),
        "failed": sum(1 for v in vms if v.get("status") != RunStatus.SUCCESS.value),
    }


def mail_subject(report: Mapping[str, Any]) -> str:
    """``[XenKeep appliance] Backup "job" on pool: success (3/3 VMs)``."""
    return (
        f'[XenKeep {report["appliance"]}] Backup "{report["job"]}" on {report["pool"]}: '
        f"{report['status']} ({report['succeeded']}/{len(report['vms'])} VMs)"
    )


def mail_body(report: Mapping[str, Any]) -> str:
    """A plain-text report."""
    lines = [
        f"Job: {report['job']}    Pool: {report['pool']}    Appliance: {report['appliance']}",
        f"Status: {report['status']}    Duration: {report['seconds']:.1f} s    "
        f"Transferred: {human_bytes(report['bytes'])} at {human_bytes(report['speed'])}/s",
        "",
    ]
    for v in report["vms"]:
        lines.append(f"* {v.get('vm_name')} ({v.get('vm_uuid')}): {v.get('status')}")
        for key, kind in sorted((v.get("transfers") or {}).items()):
            lines.append(f"    disk {key}: {kind} — {(v.get('reasons') or {}).get(key, '')}")
        lines.append(
            f"    {human_bytes(v.get('bytes') or 0)} in {v.get('seconds', 0):.1f} s "
            f"({human_bytes(v.get('speed') or 0)}/s)"
            + (f", merge {v['merge_seconds']:.2f} s" if v.get("merge_seconds") is not None else "")
        )
        if v.get("point_id"):
            lines.append(f"    restore point {v['point_id']}")
        if v.get("error"):
            lines.append(f"    error: {v['error']}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SmtpSettings:
    """Where reports go. ``starttls`` upgrades the connection before login."""

    host: str
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = ""
    sender: str = ""
    recipients: tuple[str, ...] = ()
    #: Only for tests and private relays with self-signed certificates.
    verify_tls: bool = True

    @classmethod
    def from_input(cls, data: Mapping[str, Any]) -> SmtpSettings:
        """Validate user input."""
        host = str(data.get("host", "")).strip()
        if not host:
            raise ValidationError("the SMTP server is required", field="host")
        try:
            port = int(str(data.get("port") or 587))
        except ValueError:
            raise ValidationError("the port must be a number", field="port") from None
        if not 0 < port < 65536:
            raise ValidationError("the port must be between 1 and 65535", field="port")
        raw = data.get("recipients", "")
        items = raw if isinstance(raw, list) else str(raw).replace(";", ",").split(",")
        recipients = tuple(r.strip() for r in items if str(r).strip())
        if not recipients or any("@" not in r for r in recipients):
            raise ValidationError("give one or more e-mail addresses", field="recipients")
        sender = str(data.get("sender", "")).strip()
        if "@" not in sender:
            raise ValidationError("the sender must be an e-mail address", field="sender")

        def flag(name: str, default: bool) -> bool:
            v = data.get(name, default)
            return v.lower() in ("1", "on", "true", "yes") if isinstance(v, str) else bool(v)

        return cls(
            host=host,
            port=port,
            starttls=flag("starttls", True),
            username=str(data.get("username", "")),
            password=str(data.get("password", "")),
            sender=sender,
            recipients=recipients,
            verify_tls=flag("verify_tls", True),
        )

    def to_json(self) -> str:
        """Stored form."""
        d = dict(self.__dict__)
        d["recipients"] = list(self.recipients)
        return json.dumps(d)


def _send_sync(settings: SmtpSettings, msg: EmailMessage, timeout: float) -> None:
    with smtplib.SMTP(settings.host, settings.port, timeout=timeout) as smtp:
        smtp.ehlo()
        if settings.starttls:
            ctx = ssl.create_default_context()
            if not settings.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            smtp.starttls(context=ctx)
            smtp.ehlo()
        if settings.username:
            smtp.login(settings.username, settings.password)
        smtp.send_message(msg)


async def send_mail(
    settings: SmtpSettings,
    subject: str,
    body: str,
    attachment: tuple[str, Mapping[str, Any]] | None = None,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> None:
    """Mail a plain-text message, optionally with a JSON attachment ``(filename, data)``.

    Raises OSError/smtplib errors for the caller to log.
    """
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.recipients)
    msg.set_content(body)
    if attachment is not None:
        filename, data = attachment
        msg.add_attachment(
            json.dumps(data, indent=1).encode(),
            maintype="application",
            subtype="json",
            filename=filename,
        )
    await asyncio.to_thread(_send_sync, settings, msg, timeout)


async def send_report(
    settings: SmtpSettings,
    report: Mapping[str, Any],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> None:
    """Mail a run report; raises OSError/smtplib errors for the caller to log."""
    await send_mail(
        settings,
        mail_subject(report),
        mail_body(report),
        (f"xenkeep-run-{report['run_id']}.json", report),
        timeout=timeout,
    )


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
