"""The replication pages: jobs, a job with its replicas and runs, the job
form, and the confirmations of starting a replica and failing back.

Post/Redirect/Get: a form that is refused is rendered again with its error;
one that succeeds redirects, to the operation's page when it started one.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import Action, ObjectKind
from xenkeep.auth.places import Via
from xenkeep.web import keys
from xenkeep.web.access import listing, needs
from xenkeep.web.audit import audit
from xenkeep.web.choices import (
    pool_choices,
    replica_targets,
    replicas_for,
    sr_of_target,
    visible_replication_jobs,
    with_rights,
)
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import FormError, attempt, form_fields, int_param
from xenkeep.web.operations.common import visible_to
from xenkeep.web.picker import picker_context

JOB = ObjectKind.REPLICATION_JOB

_NEW_JOB: dict[str, Any] = {
    "name": "",
    "selector": "tag",
    "targets": "",
    "exclude": "",
    "pool_id": "",
    "target": "",
    "schedule": "*/10 * * * *",
    "timezone": "UTC",
    "retention": 3,
    "concurrency": 2,
    "bandwidth_limit_mib": "",
    "networks": "",
    "enabled": True,
}


@listing
async def replication_page(request: web.Request) -> web.StreamResponse:
    """The jobs, replicas with their RPO and recent runs the user may view."""
    manager = keys.replication(request.app)
    view = await keys.places(request.app).view()
    context = {
        "jobs": await visible_replication_jobs(request),
        "replicas": replicas_for(keys.principal(request), view, await manager.replicas()),
        "runs": await manager.runs_of(limit=20, only=await visible_to(request)),
        # A job needs a source pool and an SR the user administers.
        "may_create_jobs": bool(await pool_choices(request) and await replica_targets(request)),
    }
    return aiohttp_jinja2.render_template("replication/index.html", request, context)


@needs(Action.VIEW, JOB, match="job_id")
async def job_page(request: web.Request) -> web.StreamResponse:
    """One job: its settings, pause banner, replicas and run history."""
    manager = keys.replication(request.app)
    job_id = int_param(request, "job_id")
    row = await manager.job(job_id)
    view = await keys.places(request.app).view()
    principal = keys.principal(request)
    [job] = with_rights(principal, view, JOB, [row.as_dict()])
    context = {
        "job": job,
        "job_id": job_id,
        "replicas": replicas_for(principal, view, await manager.replicas(job_id=job_id)),
        "runs": await manager.runs_of(job_id, limit=30),
        "running": manager.runs.running_run(job_id),
    }
    return aiohttp_jinja2.render_template("replication/job.html", request, context)


async def _job_form(
    request: web.Request,
    *,
    job: dict[str, Any],
    job_id: int | None,
    error: str | None = None,
    status: int = 200,
    preview: bool = False,
) -> web.Response:
    manager = keys.replication(request.app)
    context = {
        "job": job,
        "job_id": job_id,
        "pools": await pool_choices(request),
        "targets": await replica_targets(request),
        "error": error,
        **await picker_context(
            request, job, preview=manager.preview_selection if preview else None
        ),
    }
    return aiohttp_jinja2.render_template(
        "replication/job_form.html", request, context, status=status
    )


def _job_to_form(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    out["targets"] = ", ".join(d.get("targets") or [])
    out["exclude"] = ", ".join(d.get("exclude") or [])
    out["target"] = f"{d['target_pool_id']}:{d['target_sr_uuid']}"
    limit = d.get("bandwidth_limit")
    out["bandwidth_limit_mib"] = "" if not limit else str(int(limit) >> 20)
    out["networks"] = "\n".join(f"{n['source']} = {n['target']}" for n in d.get("networks") or [])
    return out


@listing
async def job_new(request: web.Request) -> web.StreamResponse:
    """The form for a new job."""
    return await _job_form(request, job=dict(_NEW_JOB), job_id=None)


@needs(Action.MANAGE, JOB, match="job_id")
async def job_edit(request: web.Request) -> web.StreamResponse:
    """The form of an existing job."""
    job_id = int_param(request, "job_id")
    row = await keys.replication(request.app).job(job_id)
    return await _job_form(request, job=_job_to_form(row.as_dict()), job_id=job_id, preview=True)


async def _save_job(request: web.Request, job_id: int | None) -> web.StreamResponse:
    form: dict[str, Any] = dict(await form_fields(request))
    form["enabled"] = form.get("enabled") == "on"
    # The page picks pool and SR in one list; the service takes them apart.
    form["target_pool_id"], _, form["target_sr_uuid"] = str(form.get("target", "")).partition(":")
    if form.pop("preview", None):
        # The Preview button without JavaScript: the form again, with what it takes now.
        return await _job_form(request, job={**_NEW_JOB, **form}, job_id=job_id, preview=True)
    manager = keys.replication(request.app)
    row = await attempt(
        manager.create_job(form) if job_id is None else manager.update_job(job_id, form)
    )
    if isinstance(row, FormError):
        return await _job_form(
            request, job={**_NEW_JOB, **form}, job_id=job_id, error=row.message, status=row.status
        )
    event = (
        AuditEvent.REPLICATION_JOB_CREATED if job_id is None else AuditEvent.REPLICATION_JOB_CHANGED
    )
    await audit(request, event, job=row.id, name=row.spec.name)
    redirect_to(request, "replication_job", f"Job {row.spec.name} saved.", "success", job_id=row.id)


# A job reads its source pool and writes to its SR: MANAGE on both, as a
# backup job needs MANAGE on its pool (the SR may be of another pool).
@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
@needs(Action.MANAGE, ObjectKind.SR, body="target", pick=sr_of_target)
async def job_create(request: web.Request) -> web.StreamResponse:
    """Create a job from the form."""
    return await _save_job(request, None)


@needs(Action.MANAGE, JOB, match="job_id")
@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
@needs(Action.MANAGE, ObjectKind.SR, body="target", pick=sr_of_target)
async def job_update(request: web.Request) -> web.StreamResponse:
    """Save a job's form."""
    return await _save_job(request, int_param(request, "job_id"))


@needs(Action.MANAGE, JOB, match="job_id")
async def job_delete(request: web.Request) -> web.StreamResponse:
    """Delete a job; its replicas stay."""
    job_id = int_param(request, "job_id")
    manager = keys.replication(request.app)
    name = (await manager.job(job_id)).spec.name
    await manager.delete_job(job_id)
    await audit(request, AuditEvent.REPLICATION_JOB_DELETED, job=job_id, name=name)
    redirect_to(
        request, "replication", "Job deleted; its replicas are kept and can be started.", "success"
    )


@needs(Action.RUN, JOB, match="job_id")
async def job_run(request: web.Request) -> web.StreamResponse:
    """Run a job now and show its progress."""
    job_id = int_param(request, "job_id")
    op_id = await keys.replication(request.app).run_job(job_id)
    await audit(request, AuditEvent.REPLICATION_RUN_STARTED, job=job_id, operation=op_id)
    redirect_to(request, "operation", op_id=op_id)


async def _replica_page(
    request: web.Request, template: str, *, error: str | None = None, status: int = 200
) -> web.Response:
    manager = keys.replication(request.app)
    replica_id = int_param(request, "replica_id")
    replica = await manager.replica(replica_id)
    context = {
        "replica": replica,
        "points": await manager.replica_points(replica_id),
        "error": error,
    }
    return aiohttp_jinja2.render_template(template, request, context, status=status)


@needs(Action.MANAGE, Via.REPLICA, match="replica_id")
async def replica_start_page(request: web.Request) -> web.StreamResponse:
    """Confirm starting a replica, from a chosen point."""
    return await _replica_page(request, "replication/start.html")


@needs(Action.MANAGE, Via.REPLICA, match="replica_id")
async def replica_start(request: web.Request) -> web.StreamResponse:
    """Start the replica once the box is ticked."""
    form = await form_fields(request)
    if form.get("confirm") != "on":
        return await _replica_page(
            request,
            "replication/start.html",
            error="tick the box to confirm: the job's schedule pauses while the replica runs",
            status=400,
        )
    replica_id = int_param(request, "replica_id")
    op_id = await attempt(
        keys.replication(request.app).start_replica(
            replica_id, point_uuid=form.get("point") or None
        )
    )
    if isinstance(op_id, FormError):
        return await _replica_page(
            request, "replication/start.html", error=op_id.message, status=op_id.status
        )
    await audit(request, AuditEvent.REPLICA_START_STARTED, replica=replica_id, operation=op_id)
    redirect_to(request, "operation", op_id=op_id)


@needs(Action.MANAGE, Via.REPLICA, match="replica_id")
async def replica_failback_page(request: web.Request) -> web.StreamResponse:
    """Confirm a failback."""
    return await _replica_page(request, "replication/failback.html")


@needs(Action.MANAGE, Via.REPLICA, match="replica_id")
async def replica_failback(request: web.Request) -> web.StreamResponse:
    """Fail back once the box is ticked."""
    form = await form_fields(request)
    if form.get("confirm") != "on":
        return await _replica_page(
            request,
            "replication/failback.html",
            error="tick the box to confirm that the source VM's disks are overwritten",
            status=400,
        )
    replica_id = int_param(request, "replica_id")
    op_id = await attempt(
        keys.replication(request.app).failback(
            replica_id, start_source=form.get("start_source") == "on"
        )
    )
    if isinstance(op_id, FormError):
        return await _replica_page(
            request, "replication/failback.html", error=op_id.message, status=op_id.status
        )
    await audit(request, AuditEvent.REPLICA_FAILBACK_STARTED, replica=replica_id, operation=op_id)
    redirect_to(request, "operation", op_id=op_id)
