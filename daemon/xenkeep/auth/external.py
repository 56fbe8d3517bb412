"""Accounts that a sign-in provider brings.

The first sign-in of a person through a provider makes their account, with
no global role and no grants: an administrator gives some, or the
provider's group mappings do. Later sign-ins find it again by the
provider's stable subject (never by name: a name can be reassigned at the
provider, or already belong to a local account here), refresh the name
and e-mail shown, and sync the mapped groups.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from xenkeep.auth.errors import CredentialsRejectedError
from xenkeep.auth.manager import USERNAME_RE, User
from xenkeep.auth.providers.base import ExternalIdentity, ProviderRecord
from xenkeep.store import Database
from xenkeep.store.db import Transaction

_NOT_NAME = re.compile(r"[^A-Za-z0-9._@-]+")
MAX_DISPLAY = 128
MAX_EMAIL = 254


def _printable(text: str, limit: int) -> str:
    """``text`` without control characters, at most ``limit`` characters."""
    return "".join(c for c in text if c.isprintable())[:limit].strip()


def username_candidates(identity: ExternalIdentity, slug: str) -> list[str]:
    """Account names to try, in order: the provider's name as it is, then
    qualified by the provider (``alice@corp-ldap``), then numbered."""
    base = _NOT_NAME.sub("-", identity.username.strip()).strip("-.@_")[:48]
    if not base or not USERNAME_RE.match(base):
        base = "user"
    qualified = f"{base}@{slug}"[:64]
    names = [base, qualified] + [f"{qualified[:60]}-{n}" for n in range(2, 50)]
    return [n for n in names if USERNAME_RE.match(n)]


class ExternalAccounts:
    """Finds or makes the account behind an :class:`ExternalIdentity`."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def sign_in(
        self, provider: ProviderRecord, identity: ExternalIdentity
    ) -> tuple[User, bool]:
        """The account for ``identity`` (made now if new) and whether it is new.

        CredentialsRejectedError when an administrator disabled it here.
        """
        subject = identity.subject.strip()
        if not subject or len(subject) > 512:
            raise CredentialsRejectedError(
                f"{provider.name} gave no usable identifier for this person"
            )
        display = _printable(identity.display_name, MAX_DISPLAY)
        email = _printable(identity.email, MAX_EMAIL)
        now = self._clock()
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT id, disabled FROM users WHERE provider_id = ? AND external_id = ?",
                (provider.id, subject),
            )
            created = row is None
            if row is None:
                user_id = await self._create(tx, provider, identity, display, email, now)
            else:
                if row["disabled"]:
                    raise CredentialsRejectedError(
                        "this account is disabled on this appliance",
                        hint="ask an administrator of XenKeep",
                    )
                user_id = int(row["id"])
                await tx.execute(
                    "UPDATE users SET display_name = ?, email = ?, last_sign_in = ? WHERE id = ?",
                    (display, email, now, user_id),
                )
            await self._sync_groups(tx, provider.id, user_id, identity.groups, now)
            user_row = await tx.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))
        assert user_row is not None
        return User.from_row(user_row), created

    async def _create(
        self,
        tx: Transaction,
        provider: ProviderRecord,
        identity: ExternalIdentity,
        display: str,
        email: str,
        now: float,
    ) -> int:
        for name in username_candidates(identity, provider.slug):
            taken = await tx.fetchone("SELECT 1 FROM users WHERE username = ?", (name,))
            if taken is None:
                return await tx.insert(
                    "INSERT INTO users (username, display_name, email, role, source, "
                    "provider_id, external_id, created_at, last_sign_in) "
                    "VALUES (?, ?, ?, 'user', ?, ?, ?, ?, ?)",
                    (
                        name,
                        display,
                        email,
                        str(provider.kind),
                        provider.id,
                        identity.subject.strip(),
                        now,
                        now,
                    ),
                )
        raise CredentialsRejectedError(
            f"no free account name for {identity.username[:64]!r}",
            hint="an administrator can rename the accounts in the way",
        )

    async def _sync_groups(
        self,
        tx: Transaction,
        provider_id: int,
        user_id: int,
        groups: tuple[str, ...],
        now: float,
    ) -> None:
        """Memberships from this provider's mappings replace the ones it gave
        before; memberships an administrator added by hand stay."""
        given = {g.strip().casefold() for g in groups if g.strip()}
        await tx.execute(
            "DELETE FROM group_members WHERE user_id = ? AND source = 'provider'", (user_id,)
        )
        if not given:
            return
        mappings = await tx.fetchall(
            "SELECT external_group, group_id FROM group_mappings WHERE provider_id = ?",
            (provider_id,),
        )
        for mapping in mappings:
            if str(mapping["external_group"]).strip().casefold() in given:
                await tx.execute(
                    "INSERT OR IGNORE INTO group_members (group_id, user_id, source, added_at) "
                    "VALUES (?, ?, 'provider', ?)",
                    (int(mapping["group_id"]), user_id, now),
                )
