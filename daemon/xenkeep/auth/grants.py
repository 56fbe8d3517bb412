"""Grants: a role on an object, given to a user or a group; and the
principal a request acts as, built from them.

Every change is written to the audit log. An object is checked against the
live pools and the jobs when a grant is made (a typo must not become a grant
on nothing); a grant outlives its object being away (a pool disconnected, a
VM deleted and restored under the same uuid) and goes only with its subject
or its backup job (triggers of schema 6 and 7).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import AuditEvent
from xenkeep.auth.errors import GrantInputError, GrantNotFoundError
from xenkeep.auth.manager import User
from xenkeep.auth.permissions import (
    XAPI_KINDS,
    ObjectKind,
    ObjectRef,
    ObjectRole,
    Principal,
    held_roles,
)
from xenkeep.auth.places import Places
from xenkeep.store import Database
from xenkeep.store.db import Row

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class SubjectKind(StrEnum):
    """Who a grant is given to."""

    USER = "user"
    GROUP = "group"


@dataclass(frozen=True, slots=True, order=True)
class Subject:
    """A user or a group, by id."""

    kind: SubjectKind
    id: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Subject:
        """``"user:3"`` or ``"group:2"``; GrantInputError otherwise."""
        kind, _, number = text.partition(":")
        try:
            return cls(SubjectKind(kind), int(number))
        except ValueError:
            raise GrantInputError(
                f"{text[:80]!r} is no subject; give user:<id> or group:<id>", field="subject"
            ) from None


@dataclass(frozen=True, slots=True)
class GrantRow:
    """A grant as the pages and the API show it."""

    id: int
    subject: Subject
    subject_name: str
    object: ObjectRef
    #: The object's name now; None when it is not there (a pool disconnected).
    object_name: str | None
    role: ObjectRole
    created_at: float
    created_by: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "subject": str(self.subject),
            "subject_kind": str(self.subject.kind),
            "subject_id": self.subject.id,
            "subject_name": self.subject_name,
            "object": str(self.object),
            "object_kind": str(self.object.kind),
            "object_ref": self.object.ref,
            "object_name": self.object_name,
            "role": str(self.role),
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


def parse_object(text: str) -> ObjectRef:
    """An object as a grant names it (``vm:<uuid>``, ``backup-job:3``, ``all``);
    GrantInputError for anything else."""
    obj = ObjectRef.parse(text.strip())
    if obj is None:
        kinds = ", ".join(str(k) for k in ObjectKind)
        raise GrantInputError(
            f"{text[:80]!r} is no object; give <kind>:<uuid or id> ({kinds}) or all",
            field="object",
        )
    if obj.kind in XAPI_KINDS and not _UUID.match(obj.ref):
        raise GrantInputError(f"{obj.kind} objects are named by their uuid", field="object")
    if obj.kind is ObjectKind.BACKUP_JOB and not obj.ref.isdigit():
        raise GrantInputError("backup jobs are named by their id", field="object")
    return obj


def parse_role(text: str) -> ObjectRole:
    """An object role; GrantInputError otherwise."""
    try:
        return ObjectRole(text.strip())
    except ValueError:
        roles = ", ".join(str(r) for r in ObjectRole)
        raise GrantInputError(f"the role is one of {roles}", field="role") from None


_SELECT = (
    "SELECT g.*, CASE g.subject_kind WHEN 'user' THEN u.username ELSE gr.name END AS name "
    "FROM grants g LEFT JOIN users u ON g.subject_kind = 'user' AND u.id = g.subject_id "
    "LEFT JOIN groups gr ON g.subject_kind = 'group' AND gr.id = g.subject_id"
)


class Grants:
    """Grants and the principals they make."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        places: Places,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._audit = audit
        self._places = places
        self._clock = clock

    # --- who is asking ----------------------------------------------------------

    async def principal(self, user: User, cap: ObjectRole | None = None) -> Principal:
        """What ``user`` holds, their own grants and their groups' (one query)."""
        rows = await self._db.fetchall(
            "SELECT object_kind, object_ref, role FROM grants WHERE "
            "(subject_kind = 'user' AND subject_id = ?) OR (subject_kind = 'group' AND "
            "subject_id IN (SELECT group_id FROM group_members WHERE user_id = ?))",
            (user.id, user.id),
        )
        held = held_roles(
            (ref, ObjectRole(r["role"]))
            for r in rows
            if (ref := ObjectRef.parse(_object_text(r))) is not None
        )
        return Principal(user.id, user.username, user.role, held, cap)

    # --- reading ----------------------------------------------------------------

    async def find(
        self, *, subject: Subject | None = None, obj: ObjectRef | None = None
    ) -> list[GrantRow]:
        """Grants, of one subject and/or on one object, by object then subject."""
        where, params = [], []
        if subject is not None:
            where.append("g.subject_kind = ? AND g.subject_id = ?")
            params += [str(subject.kind), subject.id]
        if obj is not None:
            where.append("g.object_kind = ? AND g.object_ref = ?")
            params += [str(obj.kind), obj.ref]
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = await self._db.fetchall(sql + " ORDER BY g.object_kind, g.object_ref, g.id", params)
        view = await self._places.view()
        out = []
        for row in rows:
            ref = ObjectRef.parse(_object_text(row))
            if ref is not None:
                out.append(_grant(row, ref, view.name_of(ref)))
        return out

    async def get(self, grant_id: int) -> GrantRow:
        """One grant, or GrantNotFoundError."""
        row = await self._db.fetchone(_SELECT + " WHERE g.id = ?", (grant_id,))
        ref = None if row is None else ObjectRef.parse(_object_text(row))
        if row is None or ref is None:
            raise GrantNotFoundError(f"there is no grant {grant_id}")
        return _grant(row, ref, (await self._places.view()).name_of(ref))

    # --- changing ---------------------------------------------------------------

    async def _subject_name(self, subject: Subject) -> str:
        table, column = (
            ("users", "username") if subject.kind is SubjectKind.USER else ("groups", "name")
        )
        row = await self._db.fetchone(
            f"SELECT {column} AS name FROM {table} WHERE id = ?",  # noqa: S608 (fixed names)
            (subject.id,),
        )
        if row is None:
            raise GrantInputError(f"there is no {subject.kind} {subject.id}", field="subject")
        return str(row["name"])

    async def grant(
        self,
        subject: Subject,
        obj: ObjectRef,
        role: ObjectRole,
        *,
        actor: str,
        ip: str = "",
        known: bool = False,
    ) -> GrantRow:
        """Give ``role`` on ``obj`` to ``subject`` (replacing the role it had there).

        ``known``: the caller has just made the object (a self-service VM), which
        the pool's event stream may not have brought into the live cache yet.
        """
        name = await self._subject_name(subject)
        if (
            not known
            and obj.kind is not ObjectKind.ALL
            and (await self._places.view()).name_of(obj) is None
        ):
            raise GrantInputError(
                f"no {obj.kind} {obj.ref} in the connected pools and jobs", field="object"
            )
        async with self._db.transaction() as tx:
            before = await tx.fetchone(
                "SELECT id, role FROM grants WHERE subject_kind = ? AND subject_id = ? AND "
                "object_kind = ? AND object_ref = ?",
                (str(subject.kind), subject.id, str(obj.kind), obj.ref),
            )
            if before is None:
                grant_id = await tx.insert(
                    "INSERT INTO grants (subject_kind, subject_id, object_kind, object_ref, role, "
                    "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        str(subject.kind),
                        subject.id,
                        str(obj.kind),
                        obj.ref,
                        str(role),
                        self._clock(),
                        actor,
                    ),
                )
            else:
                grant_id = int(before["id"])
                await tx.execute("UPDATE grants SET role = ? WHERE id = ?", (str(role), grant_id))
        await self._audit.record(
            AuditEvent.GRANT_ADDED if before is None else AuditEvent.GRANT_CHANGED,
            username=actor,
            ip=ip,
            subject=f"{subject} ({name})",
            object=str(obj),
            role=str(role),
            **({} if before is None else {"was": str(before["role"])}),
        )
        return await self.get(grant_id)

    async def revoke(self, grant_id: int, *, actor: str, ip: str = "") -> GrantRow:
        """Take a grant back; the grant as it was."""
        grant = await self.get(grant_id)
        if not await self._db.execute("DELETE FROM grants WHERE id = ?", (grant_id,)):
            raise GrantNotFoundError(f"there is no grant {grant_id}")
        await self._audit.record(
            AuditEvent.GRANT_REMOVED,
            username=actor,
            ip=ip,
            subject=f"{grant.subject} ({grant.subject_name})",
            object=str(grant.object),
            role=str(grant.role),
        )
        return grant


def _object_text(row: Row) -> str:
    kind, ref = str(row["object_kind"]), str(row["object_ref"])
    return kind if kind == ObjectKind.ALL else f"{kind}:{ref}"


def _grant(row: Row, ref: ObjectRef, object_name: str | None) -> GrantRow:
    return GrantRow(
        id=int(row["id"]),
        subject=Subject(SubjectKind(row["subject_kind"]), int(row["subject_id"])),
        subject_name=str(row["name"] or ""),
        object=ref,
        object_name=object_name,
        role=ObjectRole(row["role"]),
        created_at=float(row["created_at"]),
        created_by=str(row["created_by"]),
    )
