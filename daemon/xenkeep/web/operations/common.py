"""What the operations pages and API share: reading ids and filters."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from xenkeep.auth.permissions import Action
from xenkeep.errors import ValidationError
from xenkeep.ops import Operations, OpKind, OpStatus, TargetFilter
from xenkeep.web import keys

#: What the sub-task columns are called, per kind (VM and disk for the backup side).
COLUMNS: Final = {
    OpKind.BACKUP.value: ("VM", "Disk"),
    OpKind.RESTORE.value: ("VM", "Disk"),
    OpKind.VERIFY.value: ("VM", "Disk"),
    OpKind.HEALTH_CHECK.value: ("VM", "Disk"),
    OpKind.DIAGNOSTICS.value: ("Check", ""),
    OpKind.APPLIANCE_BACKUP.value: ("Pool", ""),
    OpKind.REPLICATION.value: ("VM", "Disk"),
    OpKind.REPLICA_START.value: ("VM", "Disk"),
    OpKind.FAILBACK.value: ("VM", "Disk"),
}
DEFAULT_COLUMNS: Final = ("Item", "Part")
KINDS: Final = frozenset(k.value for k in OpKind)
STATUSES: Final = frozenset(s.value for s in OpStatus)


def ops_of(request: web.Request) -> Operations:
    return keys.operations(request.app)


def choices(request: web.Request, name: str, allowed: frozenset[str]) -> list[str]:
    values = [v for raw in request.query.getall(name, []) for v in raw.split(",") if v]
    bad = sorted(set(values) - allowed)
    if bad:
        raise ValidationError(
            f"unknown {name} {', '.join(bad)}; one of {', '.join(sorted(allowed))}", field=name
        )
    return values


async def visible_to(request: web.Request, action: Action = Action.VIEW) -> TargetFilter | None:
    """The operations the caller may do ``action`` on (None: every one)."""
    view = await keys.places(request.app).view()
    return view.operation_filter(keys.principal(request), action)
