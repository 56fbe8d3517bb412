"""Where the mail settings are kept: one settings row, the password encrypted."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from xenkeep.secretbox import SecretBox
from xenkeep.store import Database

from .smtp import SmtpSettings

SMTP_KEY: Final = "backup.smtp"


class MailSettings:
    """The SMTP settings of the appliance (None: nothing is mailed)."""

    def __init__(self, db: Database, secrets: SecretBox | None = None) -> None:
        self.db = db
        self._secrets = secrets

    async def get(self) -> SmtpSettings | None:
        """The mail settings, if reports are to be mailed."""
        raw = await self.db.get_setting(SMTP_KEY)
        if not raw:
            return None
        data: dict[str, Any] = json.loads(raw)
        token = data.pop("password_enc", "")
        if token and self._secrets is not None:
            data["password"] = self._secrets.decrypt(token)
        return SmtpSettings.from_input(data)

    async def set(self, data: Mapping[str, Any] | None) -> None:
        """Store (or with None, clear) the mail settings."""
        if data is None:
            await self.db.execute("DELETE FROM settings WHERE key = ?", (SMTP_KEY,))
            return
        stored = json.loads(SmtpSettings.from_input(data).to_json())
        password = stored.pop("password", "")
        if password and self._secrets is not None:
            # Like pool passwords: a copy of the database alone reveals nothing.
            stored["password_enc"] = self._secrets.encrypt(password)
        elif password:
            stored["password"] = password
        await self.db.set_setting(SMTP_KEY, json.dumps(stored))
