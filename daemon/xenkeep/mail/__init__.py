"""Mail: the SMTP settings, where they are kept, and sending."""

from .settings import MailSettings
from .smtp import MailServerError, SmtpSettings, describe_smtp_error, send_mail, send_test_mail

__all__ = [
    "MailServerError",
    "MailSettings",
    "SmtpSettings",
    "describe_smtp_error",
    "send_mail",
    "send_test_mail",
]
