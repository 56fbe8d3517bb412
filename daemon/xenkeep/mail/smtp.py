"""Sending mail: the SMTP settings and one way to send a message.

Reports of backups, and next of replication and diagnostics, all mail
through :func:`send_mail`; smtplib runs in a thread so the loop never waits
on the network.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from xenkeep.errors import UpstreamError, ValidationError


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
    #: Mail only reports that need a look (failed, warning, damage found),
    #: not every success.
    only_problems: bool = False

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
        recipients = tuple(
            _no_controls(str(r).strip(), "recipients", "an e-mail address")
            for r in items
            if str(r).strip()
        )
        if not recipients or any("@" not in r for r in recipients):
            raise ValidationError("give one or more e-mail addresses", field="recipients")
        sender = _no_controls(str(data.get("sender", "")).strip(), "sender", "the sender")
        if "@" not in sender:
            raise ValidationError("the sender must be an e-mail address", field="sender")
        _no_controls(host, "host", "the SMTP server")
        _no_controls(str(data.get("username", "")), "username", "the user name")

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
            only_problems=flag("only_problems", False),
        )

    def to_json(self) -> str:
        """Stored form."""
        d = dict(self.__dict__)
        d["recipients"] = list(self.recipients)
        return json.dumps(d)


def one_line(text: str) -> str:
    """``text`` with every control or separator character turned into a space."""
    return " ".join(
        "".join(
            " " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text
        ).split()
    )


def _no_controls(value: str, field: str, label: str) -> str:
    """Addresses and host names go into SMTP commands and headers: refuse
    what would break a line there."""
    if one_line(value) != value:
        raise ValidationError(f"{label} must not contain control characters", field=field)
    return value


class MailServerError(UpstreamError):
    """The mail server refused or could not be reached; the message says
    what it answered."""

    code = "mail_failed"


class _AnsweredSMTP(smtplib.SMTP):
    """An SMTP client that keeps the server's answer to the message itself
    (``250 2.0.0 Ok: queued as ...``), which smtplib otherwise drops."""

    answer: tuple[int, bytes] | None = None

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.answer = super().data(msg)
        return self.answer


def describe_smtp_error(exc: BaseException) -> str:
    """What the mail server said (``535 5.7.8 bad credentials``), or why it
    could not be reached, in one line."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(
            f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in exc.recipients.items()
        )
        return f"the server refused every recipient ({refused})"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the server answered {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPException | ssl.SSLError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        return f"could not reach it: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _text(raw: bytes | str) -> str:
    return one_line(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))


def _send_sync(settings: SmtpSettings, msg: EmailMessage, timeout: float) -> str:
    with _AnsweredSMTP(settings.host, settings.port, timeout=timeout) as smtp:
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
        code, text = smtp.answer or (250, b"")
        return f"{code} {_text(text)}".strip()


async def send_mail(
    settings: SmtpSettings,
    subject: str,
    body: str,
    attachment: tuple[str, Mapping[str, Any]] | None = None,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> str:
    """Mail a plain-text message, optionally with a JSON attachment ``(filename, data)``;
    the server's answer to it (``250 2.0.0 Ok: queued as 4XyZ``).

    Raises OSError/smtplib errors for the caller to log.
    """
    msg = EmailMessage()
    # One line whatever it is made of: pool and VM names come from the pool,
    # and a CR/LF in a header makes the message unsendable (or worse).
    msg["Subject"] = one_line(subject)
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
    return await asyncio.to_thread(_send_sync, settings, msg, timeout)


async def send_test_mail(
    settings: SmtpSettings,
    appliance: str,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> str:
    """Mail a test message to every recipient; the server's answer, or a
    :class:`MailServerError` with what it said instead."""
    try:
        return await send_mail(
            settings,
            f"[XenKeep {appliance}] Test mail",
            f"This is a test mail from the XenKeep appliance {appliance}.\n"
            "Backup reports will reach you the same way.\n",
            timeout=timeout,
        )
    except (OSError, smtplib.SMTPException) as exc:
        raise MailServerError(
            f"mail server {settings.host}:{settings.port}: {describe_smtp_error(exc)}",
            hint="check the server, port, STARTTLS and the user",
        ) from None
