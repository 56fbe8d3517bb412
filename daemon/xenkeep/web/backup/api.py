"""The backup JSON API under ``/api/v1/backup/``: storage, disks, verify, jobs,
runs, restore points, restores and mail settings."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import Action, ObjectKind
from xenkeep.auth.places import Via
from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.web import keys
from xenkeep.web.access import admin, listing, needs
from xenkeep.web.audit import audit
from xenkeep.web.choices import visible_jobs, vms_for
from xenkeep.web.forms import int_param, int_query, json_body, text_field
from xenkeep.web.middleware import still_authorized
from xenkeep.web.operations.common import visible_to
from xenkeep.web.picker import preview_answer
from xenkeep.web.sse import KEEPALIVE_SECONDS, send_watch


@admin
async def api_storage(request: web.Request) -> web.StreamResponse:
    """Capacity, used, free, reflink and per-VM usage of the backup storage."""
    return web.json_response(await keys.backup(request.app).storage_status())


@admin
async def api_verify(request: web.Request) -> web.StreamResponse:
    """The last verify report (``status``: running, ok, damaged, failed...)."""
    last = await keys.backup(request.app).last_verify()
    return web.json_response(last or {"status": "never"})


@admin
async def api_verify_start(request: web.Request) -> web.StreamResponse:
    """Start a verify of every VM, or of ``{"vm_uuid": ...}``."""
    body = await json_body(request) if request.can_read_body else {}
    vm_uuid = body.get("vm_uuid")
    if vm_uuid is not None and not isinstance(vm_uuid, str):
        raise ValidationError("vm_uuid must be a string", field="vm_uuid")
    op_id = await keys.backup(request.app).start_verify(vm_uuid or None)
    await audit(request, AuditEvent.BACKUP_VERIFY_STARTED, vm=vm_uuid or "all", operation=op_id)
    return web.json_response({"status": "running", "operation_id": op_id}, status=202)


@admin
async def api_verify_schedule(request: web.Request) -> web.StreamResponse:
    """The verify schedule (cron syntax in the appliance's time zone; "" = off)."""
    return web.json_response(await keys.backup(request.app).verify_schedule())


@admin
async def api_verify_schedule_put(request: web.Request) -> web.StreamResponse:
    """Set the verify schedule: ``{"schedule": "0 4 * * 0"}`` or ``""`` to turn it off."""
    expr = text_field(await json_body(request), "schedule")
    result = await keys.backup(request.app).set_verify_schedule(expr)
    await audit(request, AuditEvent.BACKUP_VERIFY_SCHEDULE_CHANGED, schedule=result["schedule"])
    return web.json_response(result)


@admin
async def api_storage_init(request: web.Request) -> web.StreamResponse:
    """Use an existing directory as the backup storage (``{"path": ...}``)."""
    body = await json_body(request)
    status = await keys.backup(request.app).use_directory(str(body.get("path", "")))
    await audit(request, AuditEvent.BACKUP_STORAGE_CHANGED, what="directory", path=status["path"])
    return web.json_response(status)


@admin
async def api_disks(request: web.Request) -> web.StreamResponse:
    """The appliance's disks, which may become the backup storage, and what is mounted."""
    return web.json_response(await keys.backup(request.app).disks())


def _wait_wanted(request: web.Request) -> bool:
    return request.query.get("wait", "true").lower() not in ("0", "false", "no")


@admin
async def api_disk_format(request: web.Request) -> web.StreamResponse:
    """Erase a disk and make it the backup storage: ``{"confirm": "<device>"}``.

    Waits and answers the storage status; with ``?wait=false`` answers 202
    with the operation to follow (``/api/v1/operations/{id}``).
    """
    confirm = text_field(await json_body(request), "confirm")
    manager, device = keys.backup(request.app), request.match_info["device"]
    op_id = await manager.storage.start_format(device, confirm)
    await audit(
        request,
        AuditEvent.BACKUP_STORAGE_CHANGED,
        what="disk formatted",
        device=device,
        operation=op_id,
    )
    if not _wait_wanted(request):
        return web.json_response({"operation_id": op_id}, status=202)
    return web.json_response(await manager.finish_storage_change(op_id))


@admin
async def api_disk_attach(request: web.Request) -> web.StreamResponse:
    """Mount the filesystem already on a disk (no format) as the backup storage
    (``?wait=false`` as for formatting)."""
    manager, device = keys.backup(request.app), request.match_info["device"]
    op_id = await manager.storage.start_attach(device)
    await audit(
        request,
        AuditEvent.BACKUP_STORAGE_CHANGED,
        what="disk attached",
        device=device,
        operation=op_id,
    )
    if not _wait_wanted(request):
        return web.json_response({"operation_id": op_id}, status=202)
    return web.json_response(await manager.finish_storage_change(op_id))


@admin
async def api_disk_detach(request: web.Request) -> web.StreamResponse:
    """Unmount the backup disk so it can be detached; nothing is erased."""
    status = await keys.backup(request.app).detach_disk()
    await audit(request, AuditEvent.BACKUP_STORAGE_CHANGED, what="disk detached")
    return web.json_response(status)


@listing
async def api_jobs(request: web.Request) -> web.StreamResponse:
    """Every job the caller may view, with its last run."""
    jobs = await visible_jobs(request)
    for job in jobs:
        del job["may_run"], job["may_manage"]
    return web.json_response({"jobs": jobs})


@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
async def api_job_create(request: web.Request) -> web.StreamResponse:
    """Create a job."""
    row = await keys.backup(request.app).create_job(await json_body(request))
    await audit(request, AuditEvent.BACKUP_JOB_CREATED, job=row.id, name=row.spec.name)
    return web.json_response(row.as_dict(), status=201)


@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
async def api_job_preview(request: web.Request) -> web.StreamResponse:
    """What a job's selection takes now, without saving anything: the body
    is a job's ``selector``, ``targets``, ``exclude`` and ``pool_id``; the
    answer its VMs (``vms``: name, uuid, pool, of those the caller may
    view), the names saving would refuse (``errors``) and the listed names
    several VMs bear (``shared_names``). Administrator of the pool, as for
    saving the job. With ``"choices": true`` also the pool's VMs a job may
    take (``choices``: uuid, name, power state, tags, last backup), for a
    picker."""
    manager = keys.backup(request.app)
    answer = await preview_answer(request, await json_body(request), manager.preview_selection)
    return web.json_response(answer)


@needs(Action.VIEW, ObjectKind.BACKUP_JOB, match="job_id")
async def api_job(request: web.Request) -> web.StreamResponse:
    """One job."""
    row = await keys.backup(request.app).job(int_param(request, "job_id"))
    return web.json_response(row.as_dict())


@needs(Action.VIEW, ObjectKind.BACKUP_JOB, match="job_id")
async def api_job_overview(request: web.Request) -> web.StreamResponse:
    """A job with its runs, its RPO and its VMs with their restore points."""
    return web.json_response(
        await keys.backup(request.app).job_overview(int_param(request, "job_id"))
    )


@listing
async def api_overview(request: web.Request) -> web.StreamResponse:
    """Every backed-up VM the caller may see: last backup, age, result, RPO
    and whether it is exceeded."""
    vms = await keys.backup(request.app).vm_overview()
    view = await keys.places(request.app).view()
    return web.json_response({"vms": vms_for(keys.principal(request), view, vms, Action.VIEW)})


@needs(Action.MANAGE, ObjectKind.BACKUP_JOB, match="job_id")
@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
async def api_job_update(request: web.Request) -> web.StreamResponse:
    """Replace a job's settings."""
    row = await keys.backup(request.app).update_job(
        int_param(request, "job_id"), await json_body(request)
    )
    await audit(request, AuditEvent.BACKUP_JOB_CHANGED, job=row.id, name=row.spec.name)
    return web.json_response(row.as_dict())


@needs(Action.MANAGE, ObjectKind.BACKUP_JOB, match="job_id")
async def api_job_delete(request: web.Request) -> web.StreamResponse:
    """Delete a job (its restore points and history stay)."""
    job_id = int_param(request, "job_id")
    manager = keys.backup(request.app)
    name = (await manager.job(job_id)).spec.name
    await manager.delete_job(job_id)
    await audit(request, AuditEvent.BACKUP_JOB_DELETED, job=job_id, name=name)
    return web.json_response({"ok": True})


@needs(Action.RUN, ObjectKind.BACKUP_JOB, match="job_id")
async def api_job_run(request: web.Request) -> web.StreamResponse:
    """Start a run now."""
    job_id = int_param(request, "job_id")
    run_id = await keys.backup(request.app).run_job(job_id)
    await audit(request, AuditEvent.BACKUP_RUN_STARTED, job=job_id, run=run_id)
    return web.json_response({"run_id": run_id}, status=202)


@listing
async def api_runs(request: web.Request) -> web.StreamResponse:
    """Recent runs and restores the caller may view (``?job_id=`` to filter)."""
    job = request.query.get("job_id")
    try:
        job_id = int(job) if job else None
    except ValueError:
        raise ValidationError("job_id must be a number", field="job_id") from None
    runs = await keys.backup(request.app).runs(job_id=job_id, only=await visible_to(request))
    return web.json_response({"runs": runs})


@needs(Action.VIEW, Via.OPERATION, match="run_id")
async def api_run(request: web.Request) -> web.StreamResponse:
    """A run with its tasks (live progress) and log lines (``?log_after=``)."""
    after = int_query(request, "log_after", 0)
    detail = await keys.backup(request.app).run_detail(
        int_param(request, "run_id"), log_after=after
    )
    return web.json_response(detail)


@needs(Action.VIEW, Via.OPERATION, match="run_id")
async def api_run_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``run`` (the detail, then new log lines only) after each
    change, until the run has finished. ``?log_after=`` as for the JSON."""
    after = int_query(request, "log_after", 0)
    manager = keys.backup(request.app)
    run_id = int_param(request, "run_id")
    await manager.run(run_id)  # 404 before the stream starts
    watch = manager.watch_run(run_id, log_after=after, keepalive=KEEPALIVE_SECONDS)
    return await send_watch(request, "run", watch, lambda: still_authorized(request))


@needs(Action.RUN, Via.OPERATION, match="run_id")
async def api_run_cancel(request: web.Request) -> web.StreamResponse:
    """Cancel a running run or restore."""
    run_id = int_param(request, "run_id")
    await keys.backup(request.app).cancel(run_id)
    await audit(request, AuditEvent.OPERATION_CANCELLED, operation=run_id)
    return web.json_response({"ok": True}, status=202)


@listing
async def api_vms(request: web.Request) -> web.StreamResponse:
    """VMs with restore points, of those the caller may view."""
    vms = await keys.backup(request.app).backed_up_vms()
    view = await keys.places(request.app).view()
    return web.json_response({"vms": vms_for(keys.principal(request), view, vms, Action.VIEW)})


@needs(Action.VIEW, ObjectKind.VM, match="vm_uuid")
async def api_points(request: web.Request) -> web.StreamResponse:
    """Restore points of one VM, oldest first."""
    try:
        points = await keys.backup(request.app).points(request.match_info["vm_uuid"])
    except ValueError:
        raise ValidationError("not a VM uuid", field="vm_uuid") from None
    return web.json_response({"points": points})


@needs(Action.MANAGE, ObjectKind.VM, match="vm_uuid")
async def api_point_delete(request: web.Request) -> web.StreamResponse:
    """Start deleting one restore point (merged into the next one unless it is the newest)."""
    vm_uuid, point_id = request.match_info["vm_uuid"], request.match_info["point_id"]
    op_id = await keys.backup(request.app).delete_point(vm_uuid, point_id)
    await audit(
        request, AuditEvent.BACKUP_POINTS_DELETED, vm=vm_uuid, point=point_id, operation=op_id
    )
    return web.json_response({"operation_id": op_id}, status=202)


@needs(Action.MANAGE, ObjectKind.VM, match="vm_uuid")
async def api_points_delete(request: web.Request) -> web.StreamResponse:
    """Delete every restore point of a VM whose job is gone: ``{"confirm": "<VM name>"}``."""
    confirm = text_field(await json_body(request), "confirm")
    vm_uuid = request.match_info["vm_uuid"]
    op_id = await keys.backup(request.app).delete_points(vm_uuid, confirm=confirm)
    await audit(request, AuditEvent.BACKUP_POINTS_DELETED, vm=vm_uuid, point="all", operation=op_id)
    return web.json_response({"operation_id": op_id}, status=202)


@admin
async def api_health_check(request: web.Request) -> web.StreamResponse:
    """Check a restore point's health: ``{"pool_id", "sr_uuid"[, "health_check_timeout"]}``."""
    vm_uuid, point_id = request.match_info["vm_uuid"], request.match_info["point_id"]
    body = await json_body(request)
    op_id = await keys.backup(request.app).health_check(vm_uuid, point_id, body)
    await audit(
        request, AuditEvent.BACKUP_HEALTH_CHECK_STARTED, vm=vm_uuid, point=point_id, operation=op_id
    )
    return web.json_response({"operation_id": op_id}, status=202)


@needs(Action.MANAGE, ObjectKind.BACKUP_JOB, match="job_id")
async def api_job_prune(request: web.Request) -> web.StreamResponse:
    """Apply the job's retention now (a prune operation)."""
    job_id = int_param(request, "job_id")
    op_id = await keys.backup(request.app).start_prune(job_id)
    await audit(request, AuditEvent.BACKUP_PRUNE_STARTED, job=job_id, operation=op_id)
    return web.json_response({"operation_id": op_id}, status=202)


@needs(Action.RESTORE, ObjectKind.VM, body="vm_uuid")
@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
async def api_restore(request: web.Request) -> web.StreamResponse:
    """Start a restore: ``pool_id, vm_uuid, point_id, sr_uuid[, name, disk, networks]``.

    Operator (or more) on the source VM, and administrator of the pool the
    VM is restored into: a restore creates a VM and writes its disks there.
    """
    body = await json_body(request)
    run_id = await keys.backup(request.app).restore(body)
    await audit(
        request,
        AuditEvent.BACKUP_RESTORE_STARTED,
        vm=str(body.get("vm_uuid", "")),
        point=str(body.get("point_id", "")),
        disk=str(body.get("disk") or "all"),
        run=run_id,
    )
    return web.json_response({"run_id": run_id}, status=202)


@admin
async def api_smtp(request: web.Request) -> web.StreamResponse:
    """The report mail settings (without the password)."""
    smtp = await keys.backup(request.app).smtp_settings()
    if smtp is None:
        return web.json_response({"configured": False})
    d: dict[str, Any] = dict(smtp.__dict__)
    d["recipients"] = list(smtp.recipients)
    d.pop("password", None)
    d["configured"] = True
    return web.json_response(d)


@admin
async def api_smtp_put(request: web.Request) -> web.StreamResponse:
    """Set the report mail settings (``{}`` with ``"host": ""`` clears them)."""
    body = await json_body(request)
    manager = keys.backup(request.app)
    await manager.set_smtp(body if body.get("host") else None)
    await audit(
        request,
        AuditEvent.MAIL_SETTINGS_CHANGED,
        host=str(body.get("host") or "off"),
        recipients=str(body.get("recipients") or ""),
    )
    return web.json_response({"ok": True})


@admin
async def api_smtp_test(request: web.Request) -> web.StreamResponse:
    """Send a test mail (with the settings in the body, or the stored ones);
    ``{"answer": "250 ..."}``, or the server's refusal as a 502."""
    body = await json_body(request) if request.can_read_body else {}
    manager = keys.backup(request.app)
    try:
        answer = await manager.test_mail(body or None)
    except XenKeepError:
        await audit(request, AuditEvent.MAIL_TEST_SENT, host=str(body.get("host", "")), ok=False)
        raise
    await audit(request, AuditEvent.MAIL_TEST_SENT, host=str(body.get("host", "")), ok=True)
    return web.json_response({"answer": answer})
