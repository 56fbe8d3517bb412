"""Two-factor enrolment: a TOTP secret offered, confirmed by one code, or skipped.

Between the offer and the first code the secret waits in the ``settings``
table (``totp.pending.<user id>``), encrypted with the appliance's
:class:`~xenkeep.secretbox.SecretBox` like the pool passwords: a copy of the
database alone does not reveal a second factor about to be switched on.
Once confirmed, the secret moves to the account (see
:meth:`AuthManager.enable_totp`) and the pending row is deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from xenkeep.auth import totp
from xenkeep.auth.errors import AccountInputError
from xenkeep.auth.manager import AuthManager, User
from xenkeep.errors import StoreError
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database

log = logging.getLogger(__name__)

TOTP_PENDING_PREFIX = "totp.pending."
TOTP_SKIPPED_PREFIX = "wizard.totp_skipped."


@dataclass(frozen=True, slots=True)
class TotpOffer:
    """What the enrolment page shows: the secret, as text, URI and QR code."""

    secret: str
    uri: str
    qr_svg: str


class TotpEnrolment:
    """Begin, confirm or skip a user's TOTP enrolment."""

    def __init__(self, db: Database, box: SecretBox, auth: AuthManager) -> None:
        self._db = db
        self._box = box
        self._auth = auth

    async def done(self, user: User) -> bool:
        """True when the user has a second factor or chose to go without."""
        if user.totp_enabled:
            return True
        return await self._db.get_setting(f"{TOTP_SKIPPED_PREFIX}{user.id}") == "1"

    async def begin(self, user: User, issuer: str) -> TotpOffer:
        """The secret waiting for the user's first code (a new one if none waits)."""
        secret = await self._pending(user)
        if secret is None:
            secret = totp.new_secret()
            await self._db.set_setting(self._key(user), self._box.encrypt(secret))
        uri = totp.provisioning_uri(secret, user.username, issuer)
        return TotpOffer(secret, uri, totp.qr_svg(uri))

    async def confirm(
        self, user: User, code: str, *, password: str | None = None, ip: str = ""
    ) -> None:
        """Switch the second factor on once ``code`` matches the waiting secret.

        Replacing an authenticator already enrolled also takes the account's
        password: a session left open must not be enough to take over the
        second factor.
        """
        if user.totp_enabled:
            if not password:
                raise AccountInputError(
                    "enter your password to replace your authenticator", field="password"
                )
            await self._auth.check_own_password(user, password, ip=ip)
        secret = await self._pending(user)
        if secret is None:
            raise AccountInputError(
                "no enrolment is waiting for a code; scan the new key shown", field="code"
            )
        await self._auth.enable_totp(user, secret, code, ip=ip)
        await self._forget(user)

    async def skip(self, user: User) -> None:
        """The user goes on without a second factor (for now)."""
        await self._db.set_setting(f"{TOTP_SKIPPED_PREFIX}{user.id}", "1")

    @staticmethod
    def _key(user: User) -> str:
        return f"{TOTP_PENDING_PREFIX}{user.id}"

    async def _pending(self, user: User) -> str | None:
        stored = await self._db.get_setting(self._key(user))
        if stored is None:
            return None
        try:
            return self._box.decrypt(stored)
        except StoreError:
            # Older XenKeep kept this secret in clear; the secret key may also
            # have been replaced. Either way the value is treated as absent and
            # the user enrols with a new secret: one that sat in clear may be
            # in a copy of the database already, and must not become a live
            # second factor. The old row is deleted now.
            log.warning("pending TOTP secret of user %s unreadable; a new one is offered", user.id)
            await self._forget(user)
            return None

    async def _forget(self, user: User) -> None:
        await self._db.execute("DELETE FROM settings WHERE key = ?", (self._key(user),))
