"""The replication JSON API under ``/api/v1/replication/``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep.errors import ValidationError
from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.forms import int_param, int_query, json_body, text_field
from xenkeep.web.picker import preview_answer


def _body_flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false", field=name)
    return value


async def _optional_body(request: web.Request) -> dict[str, Any]:
    return await json_body(request) if request.can_read_body else {}


@admin
async def api_jobs(request: web.Request) -> web.StreamResponse:
    """Every replication job with its last run, replicas and RPO warnings."""
    return web.json_response({"jobs": await keys.replication(request.app).jobs()})


@admin
async def api_job_create(request: web.Request) -> web.StreamResponse:
    """Create a job: a backup job's VM selection, ``target_pool_id``, ``target_sr_uuid``."""
    row = await keys.replication(request.app).create_job(await json_body(request))
    return web.json_response(row.as_dict(), status=201)


@admin
async def api_job_preview(request: web.Request) -> web.StreamResponse:
    """What a job's source selection takes now (the backup jobs' preview:
    ``selector``, ``targets``, ``exclude``, ``pool_id``, ``choices``), saving nothing."""
    manager = keys.replication(request.app)
    answer = await preview_answer(request, await json_body(request), manager.preview_selection)
    return web.json_response(answer)


@admin
async def api_job(request: web.Request) -> web.StreamResponse:
    """One job (object: ``job_id``)."""
    row = await keys.replication(request.app).job(int_param(request, "job_id"))
    return web.json_response(row.as_dict())


@admin
async def api_job_update(request: web.Request) -> web.StreamResponse:
    """Replace a job's settings (object: ``job_id``)."""
    row = await keys.replication(request.app).update_job(
        int_param(request, "job_id"), await json_body(request)
    )
    return web.json_response(row.as_dict())


@admin
async def api_job_delete(request: web.Request) -> web.StreamResponse:
    """Delete a job (object: ``job_id``); its replicas stay."""
    await keys.replication(request.app).delete_job(int_param(request, "job_id"))
    return web.json_response({"ok": True})


@admin
async def api_job_run(request: web.Request) -> web.StreamResponse:
    """Start a run now (object: ``job_id``); answers the operation's id."""
    op_id = await keys.replication(request.app).run_job(int_param(request, "job_id"))
    return web.json_response({"operation_id": op_id}, status=202)


@admin
async def api_runs(request: web.Request) -> web.StreamResponse:
    """Recent runs (``?job_id=`` to filter); each is an operation."""
    job = request.query.get("job_id")
    job_id = int_query(request, "job_id", 0) if job else None
    runs = await keys.replication(request.app).runs_of(
        job_id, limit=int_query(request, "limit", 50)
    )
    return web.json_response({"runs": runs})


@admin
async def api_replicas(request: web.Request) -> web.StreamResponse:
    """Every replica (``?job_id=``): source VM, target pool and SR, latest point, RPO."""
    job = request.query.get("job_id")
    job_id = int_query(request, "job_id", 0) if job else None
    replicas = await keys.replication(request.app).replicas(job_id=job_id)
    return web.json_response({"replicas": replicas})


@admin
async def api_replica(request: web.Request) -> web.StreamResponse:
    """One replica with its RPO (object: ``replica_id``)."""
    return web.json_response(
        await keys.replication(request.app).replica(int_param(request, "replica_id"))
    )


@admin
async def api_replica_points(request: web.Request) -> web.StreamResponse:
    """The replica's points, oldest first, as its pool has them (object: ``replica_id``)."""
    points = await keys.replication(request.app).replica_points(int_param(request, "replica_id"))
    return web.json_response({"points": points})


@admin
async def api_replica_start(request: web.Request) -> web.StreamResponse:
    """Start the replica (failover), optionally ``{"point_uuid": ...}`` (object: ``replica_id``)."""
    body = await _optional_body(request)
    point = text_field(body, "point_uuid", required=False, max_length=64).strip() or None
    op_id = await keys.replication(request.app).start_replica(
        int_param(request, "replica_id"), point_uuid=point
    )
    return web.json_response({"operation_id": op_id}, status=202)


@admin
async def api_replica_failback(request: web.Request) -> web.StreamResponse:
    """Fail back (object: ``replica_id``): ``{"start_source": true}`` starts it on site A after."""
    body = await _optional_body(request)
    op_id = await keys.replication(request.app).failback(
        int_param(request, "replica_id"), start_source=_body_flag(body, "start_source")
    )
    return web.json_response({"operation_id": op_id}, status=202)


@admin
async def api_replica_delete(request: web.Request) -> web.StreamResponse:
    """Forget a replica (object: ``replica_id``); ``{"remove_vm": true}`` destroys it and
    its points in its pool."""
    body = await _optional_body(request)
    await keys.replication(request.app).delete_replica(
        int_param(request, "replica_id"), remove_vm=_body_flag(body, "remove_vm")
    )
    return web.json_response({"ok": True})
