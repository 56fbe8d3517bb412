"""The replication JSON API under ``/api/v1/replication/``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import Action, ObjectKind
from xenkeep.auth.places import Via
from xenkeep.errors import ValidationError
from xenkeep.web import keys
from xenkeep.web.access import listing, needs
from xenkeep.web.audit import audit
from xenkeep.web.choices import replicas_for, visible_replication_jobs
from xenkeep.web.forms import int_param, int_query, json_body, text_field
from xenkeep.web.operations.common import visible_to
from xenkeep.web.picker import preview_answer

JOB = ObjectKind.REPLICATION_JOB


def _body_flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false", field=name)
    return value


async def _optional_body(request: web.Request) -> dict[str, Any]:
    return await json_body(request) if request.can_read_body else {}


@listing
async def api_jobs(request: web.Request) -> web.StreamResponse:
    """Every replication job the caller may view, with its last run, replicas and RPO warnings."""
    jobs = await visible_replication_jobs(request)
    for job in jobs:
        del job["may_run"], job["may_manage"]
    return web.json_response({"jobs": jobs})


# MANAGE on the source pool and on the destination SR (see the package).
@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
@needs(Action.MANAGE, ObjectKind.SR, body="target_sr_uuid")
async def api_job_create(request: web.Request) -> web.StreamResponse:
    """Create a job: a backup job's VM selection, ``target_pool_id``, ``target_sr_uuid``."""
    row = await keys.replication(request.app).create_job(await json_body(request))
    await audit(request, AuditEvent.REPLICATION_JOB_CREATED, job=row.id, name=row.spec.name)
    return web.json_response(row.as_dict(), status=201)


# The source pool's selection: what creating a job needs of that pool.
@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
async def api_job_preview(request: web.Request) -> web.StreamResponse:
    """What a job's source selection takes now (the backup jobs' preview:
    ``selector``, ``targets``, ``exclude``, ``pool_id``, ``choices``), saving nothing."""
    manager = keys.replication(request.app)
    answer = await preview_answer(request, await json_body(request), manager.preview_selection)
    return web.json_response(answer)


@needs(Action.VIEW, JOB, match="job_id")
async def api_job(request: web.Request) -> web.StreamResponse:
    """One job."""
    row = await keys.replication(request.app).job(int_param(request, "job_id"))
    return web.json_response(row.as_dict())


@needs(Action.MANAGE, JOB, match="job_id")
@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
@needs(Action.MANAGE, ObjectKind.SR, body="target_sr_uuid")
async def api_job_update(request: web.Request) -> web.StreamResponse:
    """Replace a job's settings."""
    row = await keys.replication(request.app).update_job(
        int_param(request, "job_id"), await json_body(request)
    )
    await audit(request, AuditEvent.REPLICATION_JOB_CHANGED, job=row.id, name=row.spec.name)
    return web.json_response(row.as_dict())


@needs(Action.MANAGE, JOB, match="job_id")
async def api_job_delete(request: web.Request) -> web.StreamResponse:
    """Delete a job; its replicas stay."""
    job_id = int_param(request, "job_id")
    manager = keys.replication(request.app)
    name = (await manager.job(job_id)).spec.name
    await manager.delete_job(job_id)
    await audit(request, AuditEvent.REPLICATION_JOB_DELETED, job=job_id, name=name)
    return web.json_response({"ok": True})


@needs(Action.RUN, JOB, match="job_id")
async def api_job_run(request: web.Request) -> web.StreamResponse:
    """Start a run now; answers the operation's id."""
    job_id = int_param(request, "job_id")
    op_id = await keys.replication(request.app).run_job(job_id)
    await audit(request, AuditEvent.REPLICATION_RUN_STARTED, job=job_id, operation=op_id)
    return web.json_response({"operation_id": op_id}, status=202)


@listing
async def api_runs(request: web.Request) -> web.StreamResponse:
    """Recent runs the caller may view (``?job_id=`` to filter); each is an operation."""
    job = request.query.get("job_id")
    job_id = int_query(request, "job_id", 0) if job else None
    runs = await keys.replication(request.app).runs_of(
        job_id, only=await visible_to(request), limit=int_query(request, "limit", 50)
    )
    return web.json_response({"runs": runs})


@listing
async def api_replicas(request: web.Request) -> web.StreamResponse:
    """Every replica the caller may view (``?job_id=``): source VM, target pool
    and SR, latest point, RPO."""
    job = request.query.get("job_id")
    job_id = int_query(request, "job_id", 0) if job else None
    replicas = await keys.replication(request.app).replicas(job_id=job_id)
    view = await keys.places(request.app).view()
    shown = replicas_for(keys.principal(request), view, replicas)
    for replica in shown:
        del replica["may_manage"]
    return web.json_response({"replicas": shown})


@needs(Action.VIEW, Via.REPLICA, match="replica_id")
async def api_replica(request: web.Request) -> web.StreamResponse:
    """One replica with its RPO."""
    return web.json_response(
        await keys.replication(request.app).replica(int_param(request, "replica_id"))
    )


@needs(Action.VIEW, Via.REPLICA, match="replica_id")
async def api_replica_points(request: web.Request) -> web.StreamResponse:
    """The replica's points, oldest first, as its pool has them."""
    points = await keys.replication(request.app).replica_points(int_param(request, "replica_id"))
    return web.json_response({"points": points})


@needs(Action.MANAGE, Via.REPLICA, match="replica_id")
async def api_replica_start(request: web.Request) -> web.StreamResponse:
    """Start the replica (failover), optionally ``{"point_uuid": ...}``."""
    body = await _optional_body(request)
    point = text_field(body, "point_uuid", required=False, max_length=64).strip() or None
    replica_id = int_param(request, "replica_id")
    op_id = await keys.replication(request.app).start_replica(replica_id, point_uuid=point)
    await audit(request, AuditEvent.REPLICA_START_STARTED, replica=replica_id, operation=op_id)
    return web.json_response({"operation_id": op_id}, status=202)


@needs(Action.MANAGE, Via.REPLICA, match="replica_id")
async def api_replica_failback(request: web.Request) -> web.StreamResponse:
    """Fail back: ``{"start_source": true}`` starts it on site A after."""
    body = await _optional_body(request)
    replica_id = int_param(request, "replica_id")
    op_id = await keys.replication(request.app).failback(
        replica_id, start_source=_body_flag(body, "start_source")
    )
    await audit(request, AuditEvent.REPLICA_FAILBACK_STARTED, replica=replica_id, operation=op_id)
    return web.json_response({"operation_id": op_id}, status=202)


@needs(Action.MANAGE, Via.REPLICA, match="replica_id")
async def api_replica_delete(request: web.Request) -> web.StreamResponse:
    """Forget a replica; ``{"remove_vm": true}`` destroys it and
    its points in its pool."""
    body = await _optional_body(request)
    replica_id, remove_vm = int_param(request, "replica_id"), _body_flag(body, "remove_vm")
    await keys.replication(request.app).delete_replica(replica_id, remove_vm=remove_vm)
    await audit(request, AuditEvent.REPLICA_DELETED, replica=replica_id, remove_vm=remove_vm)
    return web.json_response({"ok": True})
