"""What the people pages and the API share: the object picker, who is acting,
reading ids and choices."""

from __future__ import annotations

from aiohttp import web

from xenkeep.auth.const import Role
from xenkeep.auth.errors import AccountInputError
from xenkeep.auth.permissions import ObjectKind
from xenkeep.web import keys
from xenkeep.web.forms import int_param

#: How each kind reads in the picker.
KIND_LABELS = {
    ObjectKind.POOL: "Pool",
    ObjectKind.HOST: "Host",
    ObjectKind.SR: "SR",
    ObjectKind.NETWORK: "Network",
    ObjectKind.VM: "VM",
    ObjectKind.TEMPLATE: "Template",
    ObjectKind.BACKUP_JOB: "Backup job",
    ObjectKind.REPLICATION_JOB: "Replication job",
}
#: The picker's group of each kind of job, in this order.
JOB_GROUPS = {
    ObjectKind.BACKUP_JOB: "Backup jobs",
    ObjectKind.REPLICATION_JOB: "Replication jobs",
}
ROLE_LABELS = {
    Role.ADMIN: "super-administrator",
    Role.SUPPORT: "support (diagnostics and logs only)",
    Role.USER: "user (what grants give)",
}

Choices = list[tuple[str, list[tuple[str, str]]]]


async def object_choices(request: web.Request) -> Choices:
    """Every object a grant can name, by name, grouped: everything, each
    connected pool, the backup jobs, the replication jobs. Values are what grants store."""
    out: Choices = [("Everything", [(str(ObjectKind.ALL), "Every pool and all in them")])]
    by_pool: dict[int, tuple[str, list[tuple[str, str]]]] = {}
    for obj in keys.pool_tree(request.app).objects():
        label = f"{KIND_LABELS[obj.ref.kind]} {obj.name or obj.ref.ref}"
        by_pool.setdefault(obj.pool_id, (f"Pool {obj.pool_name}", []))[1].append(
            (str(obj.ref), label)
        )
    out.extend(by_pool.values())
    view = await keys.places(request.app).view()
    pools = {str(p.id): p.name for p in await keys.pools(request.app).pools()}
    for kind, group in JOB_GROUPS.items():
        # A job is listed with the pool it sits in (a replication job: its source).
        jobs = [
            (str(ref), f"{facts.name} (pool {pools.get(facts.pool_id, '?')})")
            for ref, facts in sorted(view.jobs.items(), key=lambda j: j[1].name.lower())
            if ref.kind is kind
        ]
        if jobs:
            out.append((group, jobs))
    return out


def parse_global_role(text: str) -> Role:
    """A global role from a form or a body; AccountInputError otherwise."""
    try:
        return Role(text.strip())
    except ValueError:
        raise AccountInputError(
            f"the role is one of {', '.join(str(r) for r in Role)}", field="role"
        ) from None


def user_id_param(request: web.Request) -> int:
    return int_param(request, "user_id")


def group_id_param(request: web.Request) -> int:
    return int_param(request, "group_id")
