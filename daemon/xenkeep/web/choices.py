"""What the backup and replication pages and the API offer and list, cut to
what the user may do: pools a job can be made in, SRs a restore or a
replica can write to, the jobs, replicas and backed-up VMs they may see."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep.auth.permissions import Action, ObjectKind, ObjectRef, Principal
from xenkeep.auth.places import PlaceView
from xenkeep.pools.tree import pool_path
from xenkeep.units import human_bytes
from xenkeep.web import keys


async def pool_choices(request: web.Request) -> list[tuple[str, str]]:
    """The pools the user may create (or move) jobs in: (pool id, name)."""
    principal = keys.principal(request)
    pools = keys.pools(request.app)
    return [
        (str(p.id), p.name)
        for p in await pools.pools()
        if principal.may(Action.MANAGE, pool_path(p.uuid))
    ]


# SR types that hold no VM disks: ISO libraries and removable devices.
_NOT_FOR_DISKS = frozenset({"iso", "udev"})


async def restore_targets(request: web.Request) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per pool the user administers, the SRs a disk can be restored to:
    (``pool_id:sr_uuid``, label). A restore makes a VM in the pool: MANAGE on it."""
    return await _disk_srs(request, per_sr=False)


async def replica_targets(request: web.Request) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per pool, the SRs the user administers that replicas can be written to:
    (``pool_id:sr_uuid``, label). A replication job needs MANAGE on its SR only."""
    return await _disk_srs(request, per_sr=True)


async def _disk_srs(
    request: web.Request, *, per_sr: bool
) -> list[tuple[str, list[tuple[str, str]]]]:
    principal = keys.principal(request)
    pools = keys.pools(request.app)
    out = []
    for pool in await pools.pools():
        top = pool_path(pool.uuid)
        if not per_sr and not principal.may(Action.MANAGE, top):
            continue
        srs = [
            sr
            for sr in pools.summary(pool.id)["srs"]
            if sr["type"] not in _NOT_FOR_DISKS
            and principal.may(Action.MANAGE, (*top, ObjectRef(ObjectKind.SR, str(sr["uuid"]))))
        ]
        choices = [
            (
                f"{pool.id}:{sr['uuid']}",
                f"{sr['name'] or sr['uuid']}{' on ' + sr['host'] if sr['host'] else ''} "
                f"({sr['type']}, "
                f"{human_bytes(max(0, sr['size'] - sr['used']))} free)",
            )
            for sr in sorted(srs, key=lambda sr: str(sr["name"]).lower())
        ]
        if choices:
            out.append((pool.name, choices))
    return out


def pool_of_target(target: str) -> str:
    """The pool id of a restore form's ``pool_id:sr_uuid`` choice."""
    return target.partition(":")[0]


def sr_of_target(target: str) -> str:
    """The SR uuid of a form's ``pool_id:sr_uuid`` choice."""
    return target.partition(":")[2]


def with_rights(
    principal: Principal, view: PlaceView, kind: ObjectKind, jobs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The jobs of ``kind`` (each with its ``id``) the user may view, each with
    what they may do on it (``may_run``, ``may_manage``) for the page's buttons."""
    out = []
    for job in jobs:
        path = view.path(ObjectRef(kind, str(job["id"])))
        if principal.may(Action.VIEW, path):
            out.append(
                {
                    **job,
                    "may_run": principal.may(Action.RUN, path),
                    "may_manage": principal.may(Action.MANAGE, path),
                }
            )
    return out


async def visible_jobs(request: web.Request) -> list[dict[str, Any]]:
    """The backup jobs the user may view, with ``may_run`` and ``may_manage``."""
    view = await keys.places(request.app).view()
    jobs = await keys.backup(request.app).jobs()
    return with_rights(keys.principal(request), view, ObjectKind.BACKUP_JOB, jobs)


async def visible_replication_jobs(request: web.Request) -> list[dict[str, Any]]:
    """The replication jobs the user may view, with ``may_run`` and ``may_manage``."""
    view = await keys.places(request.app).view()
    jobs = await keys.replication(request.app).jobs()
    return with_rights(keys.principal(request), view, ObjectKind.REPLICATION_JOB, jobs)


def replicas_for(
    principal: Principal, view: PlaceView, replicas: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The replicas (each with its ``id``) the user may view, each with
    ``may_manage`` (start, fail back, forget) for the page's buttons."""
    out = []
    for replica in replicas:
        path = view.replica_path(str(replica["id"]))
        if principal.may(Action.VIEW, path):
            out.append({**replica, "may_manage": principal.may(Action.MANAGE, path)})
    return out


def vms_for(
    principal: Principal, view: PlaceView, vms: list[dict[str, Any]], action: Action
) -> list[dict[str, Any]]:
    """The backed-up VMs (``vm_uuid``) on which the user may do ``action``."""
    return [
        vm
        for vm in vms
        if principal.may(action, view.path(ObjectRef(ObjectKind.VM, str(vm["vm_uuid"]))))
    ]
