"""Groups of users, kept by hand here (a sign-in provider may also sync
memberships at each sign-in: those are marked ``provider`` and left alone).

A group's grants hold for each member. Every change goes to the audit log.
"""

from __future__ import annotations

import sqlite3
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import AuditEvent
from xenkeep.auth.errors import (
    AccountInputError,
    AccountNotFoundError,
    GroupExistsError,
    GroupNotFoundError,
)
from xenkeep.store import Database

MAX_GROUP_NAME: Final = 64
MAX_DESCRIPTION: Final = 200


def _plain(value: str, name: str, limit: int) -> str:
    text = value.strip()
    if len(text) > limit or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
        raise AccountInputError(
            f"the {name} is at most {limit} characters, none of them a control character",
            field=name,
        )
    return text


@dataclass(frozen=True, slots=True)
class Member:
    """A user in a group."""

    user_id: int
    username: str
    #: 'manual' (added here) or 'provider' (synced from a sign-in provider).
    source: str
    added_at: float


@dataclass(frozen=True, slots=True)
class Group:
    """A group and its members."""

    id: int
    name: str
    description: str
    created_at: float
    members: tuple[Member, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at,
            "members": [
                {"user_id": m.user_id, "username": m.username, "source": m.source}
                for m in self.members
            ],
        }


class Groups:
    """The ``groups`` and ``group_members`` tables."""

    def __init__(
        self, db: Database, audit: AuditLog, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._audit = audit
        self._clock = clock

    async def all(self) -> list[Group]:
        """Every group with its members, by name."""
        rows = await self._db.fetchall("SELECT * FROM groups ORDER BY name COLLATE NOCASE")
        members = await self._db.fetchall(
            "SELECT m.group_id, m.user_id, u.username, m.source, m.added_at FROM group_members m "
            "JOIN users u ON u.id = m.user_id ORDER BY u.username COLLATE NOCASE"
        )
        by_group: dict[int, list[Member]] = {}
        for m in members:
            by_group.setdefault(int(m["group_id"]), []).append(
                Member(int(m["user_id"]), str(m["username"]), str(m["source"]), m["added_at"])
            )
        return [
            Group(
                int(r["id"]),
                str(r["name"]),
                str(r["description"]),
                float(r["created_at"]),
                tuple(by_group.get(int(r["id"]), ())),
            )
            for r in rows
        ]

    async def get(self, group_id: int) -> Group:
        """One group, or GroupNotFoundError."""
        for group in await self.all():
            if group.id == group_id:
                return group
        raise GroupNotFoundError(f"there is no group {group_id}")

    async def of_user(self, user_id: int) -> list[Group]:
        """The groups a user is in."""
        return [g for g in await self.all() if any(m.user_id == user_id for m in g.members)]

    async def create(self, name: str, description: str = "", *, actor: str, ip: str = "") -> Group:
        """A new, empty group."""
        name = _plain(name, "name", MAX_GROUP_NAME)
        if not name:
            raise AccountInputError("a group needs a name", field="name")
        description = _plain(description, "description", MAX_DESCRIPTION)
        try:
            group_id = await self._db.insert(
                "INSERT INTO groups (name, description, created_at) VALUES (?, ?, ?)",
                (name, description, self._clock()),
            )
        except sqlite3.IntegrityError:
            raise GroupExistsError(f"a group named {name!r} already exists") from None
        await self._audit.record(AuditEvent.GROUP_CREATED, username=actor, ip=ip, group=name)
        return await self.get(group_id)

    async def update(
        self, group_id: int, *, name: str, description: str, actor: str, ip: str = ""
    ) -> Group:
        """Rename a group or change its description."""
        before = await self.get(group_id)
        name = _plain(name, "name", MAX_GROUP_NAME)
        if not name:
            raise AccountInputError("a group needs a name", field="name")
        description = _plain(description, "description", MAX_DESCRIPTION)
        try:
            await self._db.execute(
                "UPDATE groups SET name = ?, description = ? WHERE id = ?",
                (name, description, group_id),
            )
        except sqlite3.IntegrityError:
            raise GroupExistsError(f"a group named {name!r} already exists") from None
        await self._audit.record(
            AuditEvent.GROUP_CHANGED, username=actor, ip=ip, group=name, was=before.name
        )
        return await self.get(group_id)

    async def delete(self, group_id: int, *, actor: str, ip: str = "") -> None:
        """Delete a group; its memberships and grants go with it."""
        group = await self.get(group_id)
        await self._db.execute("DELETE FROM groups WHERE id = ?", (group_id,))
        await self._audit.record(
            AuditEvent.GROUP_DELETED,
            username=actor,
            ip=ip,
            group=group.name,
            members=[m.username for m in group.members],
        )

    async def add_member(self, group_id: int, user_id: int, *, actor: str, ip: str = "") -> Group:
        """Put a user in a group by hand (already in it: nothing changes)."""
        group = await self.get(group_id)
        user = await self._db.fetchone("SELECT username FROM users WHERE id = ?", (user_id,))
        if user is None:
            raise AccountNotFoundError(f"there is no user {user_id}")
        added = await self._db.execute(
            "INSERT INTO group_members (group_id, user_id, source, added_at) "
            "VALUES (?, ?, 'manual', ?) ON CONFLICT (group_id, user_id) DO UPDATE "
            "SET source = 'manual' WHERE source != 'manual'",
            (group_id, user_id, self._clock()),
        )
        if added:
            await self._audit.record(
                AuditEvent.GROUP_MEMBER_ADDED,
                username=actor,
                ip=ip,
                group=group.name,
                member=str(user["username"]),
            )
        return await self.get(group_id)

    async def remove_member(
        self, group_id: int, user_id: int, *, actor: str, ip: str = ""
    ) -> Group:
        """Take a user out of a group."""
        group = await self.get(group_id)
        member = next((m for m in group.members if m.user_id == user_id), None)
        if member is None:
            raise AccountNotFoundError(f"user {user_id} is not in {group.name}")
        await self._db.execute(
            "DELETE FROM group_members WHERE group_id = ? AND user_id = ?", (group_id, user_id)
        )
        await self._audit.record(
            AuditEvent.GROUP_MEMBER_REMOVED,
            username=actor,
            ip=ip,
            group=group.name,
            member=member.username,
        )
        return await self.get(group_id)
