"""Mail: the SMTP settings, where they are kept, and sending."""

from .settings import MailSettings
from .smtp import SmtpSettings, send_mail

__all__ = ["MailSettings", "SmtpSettings", "send_mail"]
