"""Who may do what on which object: the one decision, as pure functions.

Objects sit in a tree: everything (``all``) → pool → host → VM, and
pool → SR, network, template, backup job, replication job (a replication
job sits in its source pool, the one it reads; see :mod:`.places`). A grant gives a role on one
object to a user or a group, and holds for everything below it. What a
person may do on an object is the best role they hold, directly or through
a group, on the object or on anything above it; nothing held, nothing
allowed (deny by default).

A *path* is where an object sits, from the top: ``(all, pool:P, host:H,
vm:V)``. The empty path is the appliance itself (its storage, disks, mail,
settings, people): only a super-administrator reaches it.

The global role is apart from grants: a super-administrator may do
everything on every object; a support account sees diagnostics and logs and
nothing else, whatever grants name it; a user has what the grants give.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from xenkeep.auth.const import Role


class ObjectKind(StrEnum):
    """What a grant can name. A new kind joins in one line; where its objects
    sit in the tree is the object directory's to say (:mod:`.places`)."""

    #: Every pool object (``object_ref`` is "").
    ALL = "all"
    POOL = "pool"
    HOST = "host"
    SR = "sr"
    NETWORK = "network"
    VM = "vm"
    TEMPLATE = "template"
    BACKUP_JOB = "backup-job"
    REPLICATION_JOB = "replication-job"


#: Kinds named by an XAPI uuid (the others by a XenKeep id, or nothing).
XAPI_KINDS: Final = frozenset(
    {
        ObjectKind.POOL,
        ObjectKind.HOST,
        ObjectKind.SR,
        ObjectKind.NETWORK,
        ObjectKind.VM,
        ObjectKind.TEMPLATE,
    }
)

#: Kinds named by a XenKeep job id, each sitting in the pool of its job's ``pool_id``.
JOB_KINDS: Final = frozenset({ObjectKind.BACKUP_JOB, ObjectKind.REPLICATION_JOB})


class ObjectRole(StrEnum):
    """A role on an object, from most to least powerful."""

    #: Everything on the object: change it, delete it, restore onto it.
    ADMIN = "admin"
    #: Start, stop, reboot, suspend, resume, CD insert/eject; run a job now.
    OPERATOR = "operator"
    #: State, metrics, reports.
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        """Higher is more powerful."""
        return _RANK[self]


_RANK: Final = {ObjectRole.VIEWER: 1, ObjectRole.OPERATOR: 2, ObjectRole.ADMIN: 3}


class Action(StrEnum):
    """What a request does to an object; each needs a role (:data:`NEEDS`)."""

    #: See state, metrics, runs, reports, restore points.
    VIEW = "view"
    #: Start, stop, reboot, suspend, resume a VM.
    POWER = "power"
    #: Insert or eject a CD.
    MEDIA = "media"
    #: Run a job now; cancel a running operation of the object.
    RUN = "run"
    #: Restore from the object's restore points (the source side of a restore).
    RESTORE = "restore"
    #: Change or delete the object; create jobs in a pool; restore onto it
    #: (the target side); delete restore points; apply retention.
    MANAGE = "manage"


NEEDS: Final[Mapping[Action, ObjectRole]] = {
    Action.VIEW: ObjectRole.VIEWER,
    Action.POWER: ObjectRole.OPERATOR,
    Action.MEDIA: ObjectRole.OPERATOR,
    Action.RUN: ObjectRole.OPERATOR,
    Action.RESTORE: ObjectRole.OPERATOR,
    Action.MANAGE: ObjectRole.ADMIN,
}


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    """One object: its kind and its uuid or id ("" for ``all``)."""

    kind: ObjectKind
    ref: str = ""

    def __str__(self) -> str:
        # Also the form of an operation's target ("backup-job:3", "vm:<uuid>").
        return str(self.kind) if self.kind is ObjectKind.ALL else f"{self.kind}:{self.ref}"

    @classmethod
    def parse(cls, text: str) -> ObjectRef | None:
        """``"vm:<uuid>"``, ``"backup-job:3"``, ``"all"`` → an ObjectRef; None
        for what names no grantable object ("datastore", "disk:xvdb")."""
        kind, _, ref = text.partition(":")
        try:
            parsed = ObjectKind(kind)
        except ValueError:
            return None
        if (parsed is ObjectKind.ALL) != (ref == ""):
            return None
        return cls(parsed, ref)


EVERYTHING: Final = ObjectRef(ObjectKind.ALL)
#: Where an object sits, from the top (``EVERYTHING`` first); empty: the appliance.
Path = tuple[ObjectRef, ...]
APPLIANCE: Final[Path] = ()


def best(roles: Iterable[ObjectRole | None]) -> ObjectRole | None:
    """The most powerful of ``roles``; None when there is none."""
    found = [r for r in roles if r is not None]
    return max(found, key=lambda r: r.rank) if found else None


def capped(role: ObjectRole | None, cap: ObjectRole | None) -> ObjectRole | None:
    """``role``, lowered to ``cap`` when it is more powerful."""
    if role is None or cap is None or role.rank <= cap.rank:
        return role
    return cap


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, with everything needed to decide: the global role and
    the best role held on each granted object (directly or through a group).

    ``cap`` is an API token's ceiling: at most this role on any object, and
    nothing appliance-wide, even for a super-administrator.
    """

    user_id: int
    username: str
    role: Role
    held: Mapping[ObjectRef, ObjectRole] = field(default_factory=dict)
    cap: ObjectRole | None = None

    @property
    def is_super_admin(self) -> bool:
        """May manage people, grants, providers and the appliance."""
        return self.role is Role.ADMIN and self.cap is None

    @property
    def may_support(self) -> bool:
        """May read diagnostics and logs (support staff and super-administrators)."""
        return self.role is Role.SUPPORT or self.is_super_admin

    @property
    def sees_objects(self) -> bool:
        """May hold any role on pool objects at all (support may not)."""
        return self.role is not Role.SUPPORT

    def role_on(self, path: Sequence[ObjectRef]) -> ObjectRole | None:
        """The best role on the object at the end of ``path``."""
        if not path or not self.sees_objects:
            # The appliance itself: only a super-administrator, never a capped token.
            return ObjectRole.ADMIN if path == APPLIANCE and self.is_super_admin else None
        if self.role is Role.ADMIN:
            return capped(ObjectRole.ADMIN, self.cap)
        return capped(best(self.held.get(ref) for ref in path), self.cap)

    def may(self, action: Action, path: Sequence[ObjectRef]) -> bool:
        """Whether this principal may do ``action`` on the object at ``path``."""
        role = self.role_on(path)
        return role is not None and role.rank >= NEEDS[action].rank

    def holds_any(self) -> bool:
        """True when some object is reachable (a grant, or every object)."""
        return self.sees_objects and (self.role is Role.ADMIN or bool(self.held))


def held_roles(grants: Iterable[tuple[ObjectRef, ObjectRole]]) -> dict[ObjectRef, ObjectRole]:
    """The best role per object of a person's grants (their own and their groups')."""
    held: dict[ObjectRef, ObjectRole] = {}
    for ref, role in grants:
        current = held.get(ref)
        if current is None or role.rank > current.rank:
            held[ref] = role
    return held
