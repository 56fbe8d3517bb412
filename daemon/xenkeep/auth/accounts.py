"""People, as a super-administrator manages them: create, change the global
role, disable, delete, reset a password.

Disabling or deleting ends the account's sessions and API tokens at once
(they are deleted, not only refused). The last enabled super-administrator
can be neither demoted, disabled nor deleted, and nobody deletes or
disables their own account: the appliance must keep someone who can manage it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

from xenkeep.auth import passwords
from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import AuditEvent, Role
from xenkeep.auth.errors import (
    AccountInputError,
    AccountNotFoundError,
    LastAdministratorError,
)
from xenkeep.auth.manager import AuthManager, User
from xenkeep.auth.secrets import SETUP_ALPHABET
from xenkeep.store import Database
from xenkeep.store.db import Transaction

MAX_DISPLAY_NAME: Final = 100
MAX_EMAIL: Final = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: A temporary password: 20 characters of Crockford base32 (100 bits), in groups.
_TEMP_CHARS: Final = 20


def temporary_password() -> str:
    """A password to give someone once, to be changed at their first sign-in."""
    while True:
        chars = "".join(secrets.choice(SETUP_ALPHABET) for _ in range(_TEMP_CHARS))
        text = "-".join(chars[i : i + 5] for i in range(0, _TEMP_CHARS, 5))
        try:
            passwords.check_policy(text, "")
        except AccountInputError:  # a draw of too few distinct characters: draw again
            continue
        return text


def _text(value: str, name: str, limit: int) -> str:
    text = value.strip()
    if len(text) > limit or not text.isprintable():
        raise AccountInputError(
            f"the {name.replace('_', ' ')} is at most {limit} printable characters", field=name
        )
    return text


def _email(value: str) -> str:
    text = _text(value, "email", MAX_EMAIL)
    if text and not _EMAIL.match(text):
        raise AccountInputError(f"{text!r} is not an e-mail address", field="email")
    return text


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account just made, and its temporary password if one was made."""

    user: User
    temporary_password: str | None


class Accounts:
    """Administration of accounts (for super-administrators)."""

    def __init__(self, db: Database, auth: AuthManager, audit: AuditLog) -> None:
        self._db = db
        self._auth = auth
        self._audit = audit

    async def get(self, user_id: int) -> User:
        """One account, or AccountNotFoundError."""
        user = await self._auth.get_user(user_id)
        if user is None:
            raise AccountNotFoundError(f"there is no user {user_id}")
        return user

    async def all(self) -> list[User]:
        """Every account, by name."""
        return await self._auth.list_users()

    async def create(
        self,
        username: str,
        *,
        role: Role,
        display_name: str = "",
        email: str = "",
        password: str | None = None,
        actor: str,
        ip: str = "",
    ) -> NewAccount:
        """A local account, with the password given, or with a temporary one
        (returned, to hand over once) that must be changed at the first sign-in."""
        temporary = temporary_password() if not password else None
        user = await self._auth.create_user(
            username,
            password or str(temporary),
            role,
            display_name=_text(display_name, "display_name", MAX_DISPLAY_NAME),
            email=_email(email),
            must_change_password=temporary is not None,
            actor=actor,
            ip=ip,
        )
        return NewAccount(user, temporary)

    @staticmethod
    async def _keep_an_admin(tx: Transaction, user: User, doing: str) -> None:
        """LastAdministratorError when ``user`` is the last enabled super-administrator.

        Checked inside the transaction that makes the change: of two requests
        demoting the last two administrators at once, the second finds one left.
        """
        row = await tx.fetchone(
            "SELECT (SELECT role = 'admin' AND disabled = 0 FROM users WHERE id = ?) AS is_admin, "
            "(SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id != ?) "
            "AS others",
            (user.id, user.id),
        )
        if row is not None and row["is_admin"] and not row["others"]:
            raise LastAdministratorError(
                f"cannot {doing} {user.username}: it is the last enabled super-administrator",
                hint="make another account super-administrator first",
            )

    async def update(
        self,
        user_id: int,
        *,
        role: Role | None = None,
        display_name: str | None = None,
        email: str | None = None,
        actor: User,
        ip: str = "",
    ) -> User:
        """Change an account's global role, display name or e-mail."""
        user = await self.get(user_id)
        changes: dict[str, str] = {}
        if role is not None and role is not user.role:
            changes["role"] = str(role)
        if display_name is not None:
            changes["display_name"] = _text(display_name, "display_name", MAX_DISPLAY_NAME)
        if email is not None:
            changes["email"] = _email(email)
        changes = {k: v for k, v in changes.items() if v != str(getattr(user, k))}
        if not changes:
            return user
        # Sessions and tokens act with the role as it is at each request:
        # a change holds from the next one on.
        async with self._db.transaction() as tx:
            if "role" in changes:
                await self._keep_an_admin(tx, user, "demote")
            for column, value in changes.items():
                # Column names come from the fixed keys above, never from input.
                sql = f"UPDATE users SET {column} = ? WHERE id = ?"  # noqa: S608
                await tx.execute(sql, (value, user.id))
        await self._audit.record(
            AuditEvent.USER_CHANGED,
            username=actor.username,
            ip=ip,
            account=user.username,
            **changes,
            **({"was": str(user.role)} if "role" in changes else {}),
        )
        return await self.get(user_id)

    async def _end_access(
        self,
        user_id: int,
        *,
        doing: str,
        change: str,
        event: AuditEvent,
        actor: User,
        ip: str,
    ) -> User:
        """Make ``change`` (SQL on the user's row) and end the account's
        sessions and tokens, at once, then audit ``event``; refused for the
        actor's own account and for the last super-administrator. The
        account as it was."""
        user = await self.get(user_id)
        if user.id == actor.id:
            raise AccountInputError(f"you cannot {doing} your own account")
        async with self._db.transaction() as tx:
            await self._keep_an_admin(tx, user, doing)
            sessions = await tx.execute("DELETE FROM sessions WHERE user_id = ?", (user.id,))
            tokens = await tx.execute("DELETE FROM api_tokens WHERE user_id = ?", (user.id,))
            await tx.execute(change, (user.id,))
        await self._audit.record(
            event,
            username=actor.username,
            ip=ip,
            account=user.username,
            sessions_ended=sessions,
            api_tokens_revoked=tokens,
        )
        return user

    async def disable(self, user_id: int, *, actor: User, ip: str = "") -> User:
        """Stop an account from signing in; its sessions and tokens end now."""
        await self._end_access(
            user_id,
            doing="disable",
            change="UPDATE users SET disabled = 1 WHERE id = ?",
            event=AuditEvent.USER_DISABLED,
            actor=actor,
            ip=ip,
        )
        return await self.get(user_id)

    async def enable(self, user_id: int, *, actor: User, ip: str = "") -> User:
        """Let a disabled account sign in again."""
        user = await self.get(user_id)
        await self._db.execute("UPDATE users SET disabled = 0 WHERE id = ?", (user.id,))
        await self._audit.record(
            AuditEvent.USER_ENABLED, username=actor.username, ip=ip, account=user.username
        )
        return await self.get(user_id)

    async def delete(self, user_id: int, *, actor: User, ip: str = "") -> None:
        """Delete an account: its sessions, tokens, memberships, recovery codes
        and grants go with it."""
        await self._end_access(
            user_id,
            doing="delete",
            change="DELETE FROM users WHERE id = ?",
            event=AuditEvent.USER_DELETED,
            actor=actor,
            ip=ip,
        )

    async def reset_password(self, user_id: int, *, actor: User, ip: str = "") -> str:
        """A temporary password (returned, to hand over once) that must be
        changed at the next sign-in; the account's sessions end."""
        user = await self.get(user_id)
        if user.id == actor.id:
            raise AccountInputError(
                "change your own password on your account page (it asks for the current one)"
            )
        password = temporary_password()
        ended = await self._auth.set_temporary_password(user, password)
        await self._audit.record(
            AuditEvent.PASSWORD_RESET,
            username=actor.username,
            ip=ip,
            account=user.username,
            sessions_ended=ended,
        )
        return password
