"""The backup pages: overview, storage and disks, verify, jobs, restore, mail.

Post/Redirect/Get: a form that is refused is rendered again with its error;
one that succeeds redirects with a flash message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp_jinja2
from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import Action, ObjectKind, ObjectRef
from xenkeep.auth.places import Via
from xenkeep.errors import NotFoundError, XenKeepError
from xenkeep.ops import DONE
from xenkeep.web import keys
from xenkeep.web.access import admin, listing, needs
from xenkeep.web.audit import audit
from xenkeep.web.choices import pool_choices, pool_of_target, restore_targets, visible_jobs, vms_for
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import FormError, attempt, form_fields, int_param
from xenkeep.web.operations.common import visible_to
from xenkeep.web.picker import picker_context, visible_preview

#: How long a disk form waits for its operation before showing its progress page.
FORM_WAIT: Final = 15.0


@listing
async def backup_page(request: web.Request) -> web.StreamResponse:
    """Jobs, the storage summary (super-administrators) and recent runs, of
    what the user may see."""
    manager = keys.backup(request.app)
    principal = keys.principal(request)
    context = {
        "storage": await manager.storage_status() if principal.is_super_admin else None,
        "jobs": await visible_jobs(request),
        "runs": await manager.runs(limit=20, only=await visible_to(request)),
        "may_create_jobs": bool(await pool_choices(request)),
    }
    return aiohttp_jinja2.render_template("backup/index.html", request, context)


async def _storage_page(
    request: web.Request,
    *,
    error: str | None = None,
    path: str = "",
    schedule_error: str | None = None,
    schedule: str | None = None,
    disk_error: str | None = None,
    status: int = 200,
) -> web.Response:
    manager = keys.backup(request.app)
    verify_schedule = await manager.verify_schedule()
    try:
        disks = await manager.disks()
    except XenKeepError as exc:
        disks = {"available": True, "disks": [], "mounted": None, "problem": exc.message}
    context = {
        "disks": disks,
        "disk_error": disk_error,
        "storage": await manager.storage_status(),
        "verify": await manager.last_verify(),
        "verify_history": await manager.verify.history(),
        "storage_changes": await manager.storage.changes(),
        "appliance_backup": await keys.appliance_backup(request.app).key_status(),
        "verify_schedule": verify_schedule,
        "form_schedule": verify_schedule["schedule"] if schedule is None else schedule,
        "schedule_error": schedule_error,
        "error": error,
        "form_path": path,
    }
    return aiohttp_jinja2.render_template("backup/storage.html", request, context, status=status)


@admin
async def storage_page(request: web.Request) -> web.StreamResponse:
    """The backup storage: capacity, reflink, per-VM usage; set it up."""
    return await _storage_page(request)


@admin
async def storage_submit(request: web.Request) -> web.StreamResponse:
    """Use an existing directory as the backup storage."""
    form = await form_fields(request)
    done = await attempt(keys.backup(request.app).use_directory(form.get("path", "")))
    if isinstance(done, FormError):
        return await _storage_page(
            request, error=done.message, path=form.get("path", ""), status=done.status
        )
    await audit(request, AuditEvent.BACKUP_STORAGE_CHANGED, what="directory", path=done["path"])
    redirect_to(request, "backup_storage", "Backup storage ready.", "success")


async def _disk_action(
    request: web.Request, act: Callable[[Mapping[str, str]], Awaitable[object]], message: str
) -> web.StreamResponse:
    """Run ``act`` with the posted form; the storage page with its error on refusal."""
    done = await attempt(act(await form_fields(request)))
    if isinstance(done, FormError):
        return await _storage_page(request, disk_error=done.message, status=done.status)
    await audit(request, AuditEvent.BACKUP_STORAGE_CHANGED, what="disk detached")
    redirect_to(request, "backup_storage", message, "success")


async def _disk_operation(
    request: web.Request,
    start: Callable[[Mapping[str, str]], Awaitable[int]],
    message: str,
    what: str,
) -> web.StreamResponse:
    """Start a disk operation from the posted form. One that ends within
    FORM_WAIT seconds lands back on the storage page; a longer one shows its
    progress on its own page."""
    op_id = await attempt(start(await form_fields(request)))
    if isinstance(op_id, FormError):
        return await _storage_page(request, disk_error=op_id.message, status=op_id.status)
    await audit(
        request,
        AuditEvent.BACKUP_STORAGE_CHANGED,
        what=what,
        device=request.match_info["device"],
        operation=op_id,
    )
    ops = keys.operations(request.app)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(ops.wait(op_id)), FORM_WAIT)
    op = await ops.get(op_id)
    if op["status"] in DONE:
        redirect_to(request, "backup_storage", message, "success")
    if op["status"] in ("pending", "running"):
        redirect_to(request, "operation", "Still working: progress is shown here.", op_id=op_id)
    return await _storage_page(request, disk_error=op["error"], status=409)


@admin
async def disk_format(request: web.Request) -> web.StreamResponse:
    """Erase a disk (typed confirmation) and make it the backup storage."""
    storage, device = keys.backup(request.app).storage, request.match_info["device"]
    return await _disk_operation(
        request,
        lambda form: storage.start_format(device, form.get("confirm", "")),
        f"{device} is formatted (XFS, reflink) and holds the backups.",
        "disk formatted",
    )


@admin
async def disk_attach(request: web.Request) -> web.StreamResponse:
    """Use the filesystem already on a disk as the backup storage."""
    storage, device = keys.backup(request.app).storage, request.match_info["device"]
    return await _disk_operation(
        request,
        lambda _form: storage.start_attach(device),
        f"{device} is mounted; its restore points are listed.",
        "disk attached",
    )


@admin
async def disk_detach(request: web.Request) -> web.StreamResponse:
    """Unmount the backup disk."""
    manager = keys.backup(request.app)
    return await _disk_action(
        request,
        lambda _form: manager.detach_disk(),
        "The backup disk is unmounted; it can be detached from the VM.",
    )


@admin
async def verify_submit(request: web.Request) -> web.StreamResponse:
    """Start re-reading every stored block against its checksum."""
    op_id = await keys.backup(request.app).start_verify()
    await audit(request, AuditEvent.BACKUP_VERIFY_STARTED, operation=op_id)
    redirect_to(
        request, "backup_storage", "Verify started: every stored block is being re-read.", "info"
    )


@admin
async def verify_schedule_submit(request: web.Request) -> web.StreamResponse:
    """Change when verify runs by itself."""
    form = await form_fields(request)
    expr = form.get("schedule", "")
    result = await attempt(keys.backup(request.app).set_verify_schedule(expr))
    if isinstance(result, FormError):
        return await _storage_page(
            request, schedule_error=result.message, schedule=expr, status=result.status
        )
    await audit(request, AuditEvent.BACKUP_VERIFY_SCHEDULE_CHANGED, schedule=result["schedule"])
    message = (
        f"Verify runs on the schedule {result['schedule']} ({result['timezone']})."
        if result["schedule"]
        else "Scheduled verify is off; verify only runs when started here."
    )
    redirect_to(request, "backup_storage", message, "success")


async def _job_form(
    request: web.Request,
    *,
    job: dict[str, Any],
    job_id: int | None,
    error: str | None = None,
    status: int = 200,
    preview: bool = False,
) -> web.Response:
    manager = keys.backup(request.app)
    context = {
        "job": job,
        "job_id": job_id,
        "pools": await pool_choices(request),
        "targets": await restore_targets(request),
        "error": error,
        **await picker_context(
            request, job, preview=manager.preview_selection if preview else None
        ),
    }
    return aiohttp_jinja2.render_template("backup/job_form.html", request, context, status=status)


_NEW_JOB = {
    "name": "",
    "selector": "tag",
    "targets": "",
    "exclude": "",
    "pool_id": "",
    "schedule": "0 2 * * *",
    "timezone": "UTC",
    "retention": 7,
    "concurrency": 2,
    "bandwidth_limit_mib": "",
    "full_every": "",
    "enabled": True,
    "rpo_hours": "",
    "health_check_sr": "",
    "health_check_timeout": 300,
}


@listing
async def job_new(request: web.Request) -> web.StreamResponse:
    """The form for a new job."""
    # A new job's schedule reads in the appliance's zone unless changed.
    zone = (await keys.identity(request.app).get()).timezone
    return await _job_form(request, job=dict(_NEW_JOB, timezone=zone), job_id=None)


def _job_to_form(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    out["targets"] = ", ".join(d.get("targets") or [])
    out["exclude"] = ", ".join(d.get("exclude") or [])
    limit = d.get("bandwidth_limit")
    out["bandwidth_limit_mib"] = "" if not limit else str(int(limit) >> 20)
    out["full_every"] = d.get("full_every") or ""
    out["rpo_hours"] = d.get("rpo_hours") or ""
    # The form picks the SR in the restore targets' list: "<pool id>:<SR uuid>".
    sr = d.get("health_check_sr") or ""
    out["health_check_sr"] = f"{d.get('pool_id')}:{sr}" if sr else ""
    return out


def _job_from_form(form: dict[str, Any]) -> dict[str, Any]:
    """A job's form as the service takes it (checkbox, the health check SR)."""
    out = dict(form)
    out["enabled"] = form.get("enabled") == "on"
    # The job's pool must have the SR: the service checks it.
    out["health_check_sr"] = str(form.get("health_check_sr") or "").partition(":")[2]
    return out


@needs(Action.VIEW, ObjectKind.BACKUP_JOB, match="job_id")
async def job_page(request: web.Request) -> web.StreamResponse:
    """A job: its settings, Run now, its runs, its VMs with their points, its RPO."""
    job_id = int_param(request, "job_id")
    manager = keys.backup(request.app)
    context = await manager.job_overview(job_id)
    context["selected"] = await visible_preview(request, await manager.selected_now(job_id))
    return aiohttp_jinja2.render_template("backup/job.html", request, context)


@needs(Action.MANAGE, ObjectKind.BACKUP_JOB, match="job_id")
async def job_edit(request: web.Request) -> web.StreamResponse:
    """The form of an existing job."""
    job_id = int_param(request, "job_id")
    row = await keys.backup(request.app).job(job_id)
    return await _job_form(request, job=_job_to_form(row.as_dict()), job_id=job_id, preview=True)


async def _save_job(request: web.Request, job_id: int | None) -> web.StreamResponse:
    form: dict[str, Any] = dict(await form_fields(request))
    manager = keys.backup(request.app)
    data = _job_from_form(form)
    if form.pop("preview", None):
        # The form's Preview button (for a browser without JavaScript): the
        # form again, its picker on the chosen pool and what it takes now.
        shown = {**_NEW_JOB, **form, "enabled": data["enabled"]}
        return await _job_form(request, job=shown, job_id=job_id, preview=True)
    row = await attempt(
        manager.create_job(data) if job_id is None else manager.update_job(job_id, data)
    )
    if isinstance(row, FormError):
        shown = {**_NEW_JOB, **form, "enabled": data["enabled"]}
        return await _job_form(
            request, job=shown, job_id=job_id, error=row.message, status=row.status
        )
    event = AuditEvent.BACKUP_JOB_CREATED if job_id is None else AuditEvent.BACKUP_JOB_CHANGED
    await audit(request, event, job=row.id, name=row.spec.name)
    redirect_to(request, "backup_job", f"Job {row.spec.name} saved.", "success", job_id=row.id)


@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
async def job_create(request: web.Request) -> web.StreamResponse:
    """Create a job from the form."""
    return await _save_job(request, None)


@needs(Action.MANAGE, ObjectKind.BACKUP_JOB, match="job_id")
@needs(Action.MANAGE, Via.POOL_ID, body="pool_id")
async def job_update(request: web.Request) -> web.StreamResponse:
    """Save a job's form."""
    return await _save_job(request, int_param(request, "job_id"))


@needs(Action.MANAGE, ObjectKind.BACKUP_JOB, match="job_id")
async def job_delete_page(request: web.Request) -> web.StreamResponse:
    """Confirm deleting a job (its restore points stay)."""
    job_id = int_param(request, "job_id")
    context = await keys.backup(request.app).job_overview(job_id)
    return aiohttp_jinja2.render_template("backup/job_delete.html", request, context)


@needs(Action.MANAGE, ObjectKind.BACKUP_JOB, match="job_id")
async def job_delete(request: web.Request) -> web.StreamResponse:
    """Delete a job once confirmed on its page."""
    job_id = int_param(request, "job_id")
    manager = keys.backup(request.app)
    name = (await manager.job(job_id)).spec.name
    await manager.delete_job(job_id)
    await audit(request, AuditEvent.BACKUP_JOB_DELETED, job=job_id, name=name)
    redirect_to(request, "backup", f"Job {name} deleted; its restore points are kept.", "success")


@needs(Action.RUN, ObjectKind.BACKUP_JOB, match="job_id")
async def job_run(request: web.Request) -> web.StreamResponse:
    """Run a job now and show its progress."""
    job_id = int_param(request, "job_id")
    run_id = await keys.backup(request.app).run_job(job_id)
    await audit(request, AuditEvent.BACKUP_RUN_STARTED, job=job_id, run=run_id)
    redirect_to(request, "backup_run", run_id=run_id)


@needs(Action.MANAGE, ObjectKind.BACKUP_JOB, match="job_id")
async def job_prune(request: web.Request) -> web.StreamResponse:
    """Apply a job's retention now and show the prune's progress."""
    job_id = int_param(request, "job_id")
    op_id = await keys.backup(request.app).start_prune(job_id)
    await audit(request, AuditEvent.BACKUP_PRUNE_STARTED, job=job_id, operation=op_id)
    redirect_to(request, "operation", op_id=op_id)


async def _point_delete_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    vm_uuid, point_id = request.match_info["vm_uuid"], request.match_info["point_id"]
    points = await _points_or_none(request, vm_uuid)
    point = next((p for p in points or [] if p["id"] == point_id), None)
    if point is None:
        raise NotFoundError(f"no restore point {point_id} of VM {vm_uuid[:40]}")
    newer = [p for p in points or [] if p["seq"] > point["seq"]]
    context = {
        "vm_uuid": vm_uuid,
        "point": point,
        "merged_into": newer[0] if newer else None,
        "error": error,
    }
    return aiohttp_jinja2.render_template(
        "backup/point_delete.html", request, context, status=status
    )


async def _points_or_none(request: web.Request, vm_uuid: str) -> list[dict[str, Any]] | None:
    try:
        return await keys.backup(request.app).points(vm_uuid)
    except ValueError:
        return None


@needs(Action.MANAGE, ObjectKind.VM, match="vm_uuid")
async def point_delete_page(request: web.Request) -> web.StreamResponse:
    """Confirm deleting one restore point: what goes, what it merges into."""
    return await _point_delete_page(request)


@needs(Action.MANAGE, ObjectKind.VM, match="vm_uuid")
async def point_delete(request: web.Request) -> web.StreamResponse:
    """Delete one restore point, once the VM's name is typed to confirm."""
    form = await form_fields(request)
    vm_uuid, point_id = request.match_info["vm_uuid"], request.match_info["point_id"]
    op_id = await attempt(
        keys.backup(request.app).delete_point(vm_uuid, point_id, confirm=form.get("confirm", ""))
    )
    if isinstance(op_id, FormError):
        return await _point_delete_page(request, error=op_id.message, status=op_id.status)
    await audit(
        request, AuditEvent.BACKUP_POINTS_DELETED, vm=vm_uuid, point=point_id, operation=op_id
    )
    redirect_to(request, "operation", op_id=op_id)


async def _vm_delete_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    vm_uuid = request.match_info["vm_uuid"]
    points = await _points_or_none(request, vm_uuid)
    if not points:
        raise NotFoundError(f"no restore points of VM {vm_uuid[:40]}")
    context = {
        "vm_uuid": vm_uuid,
        "vm_name": points[-1]["vm_name"] or vm_uuid,
        "points": points,
        "error": error,
    }
    return aiohttp_jinja2.render_template("backup/vm_delete.html", request, context, status=status)


@needs(Action.MANAGE, ObjectKind.VM, match="vm_uuid")
async def vm_points_delete_page(request: web.Request) -> web.StreamResponse:
    """Confirm deleting every restore point of a VM whose job is gone."""
    return await _vm_delete_page(request)


@needs(Action.MANAGE, ObjectKind.VM, match="vm_uuid")
async def vm_points_delete(request: web.Request) -> web.StreamResponse:
    """Delete every restore point of a VM, once its name is typed."""
    form = await form_fields(request)
    vm_uuid = request.match_info["vm_uuid"]
    op_id = await attempt(
        keys.backup(request.app).delete_points(vm_uuid, confirm=form.get("confirm", ""))
    )
    if isinstance(op_id, FormError):
        return await _vm_delete_page(request, error=op_id.message, status=op_id.status)
    await audit(request, AuditEvent.BACKUP_POINTS_DELETED, vm=vm_uuid, point="all", operation=op_id)
    redirect_to(request, "operation", op_id=op_id)


@admin
async def health_check_submit(request: web.Request) -> web.StreamResponse:
    """Check one restore point's health on the chosen SR."""
    form: dict[str, Any] = dict(await form_fields(request))
    vm_uuid, point_id = request.match_info["vm_uuid"], request.match_info["point_id"]
    form["pool_id"], _, form["sr_uuid"] = str(form.pop("target", "")).partition(":")
    op_id = await attempt(keys.backup(request.app).health_check(vm_uuid, point_id, form))
    if isinstance(op_id, FormError):
        return await _restore_page(
            request, vm_uuid=vm_uuid, point_id=point_id, error=op_id.message, status=op_id.status
        )
    await audit(
        request, AuditEvent.BACKUP_HEALTH_CHECK_STARTED, vm=vm_uuid, point=point_id, operation=op_id
    )
    redirect_to(request, "operation", op_id=op_id)


@needs(Action.RUN, Via.OPERATION, match="run_id")
async def run_cancel(request: web.Request) -> web.StreamResponse:
    """Cancel a run from its page."""
    run_id = int_param(request, "run_id")
    await keys.backup(request.app).cancel(run_id)
    await audit(request, AuditEvent.OPERATION_CANCELLED, operation=run_id)
    redirect_to(request, "backup_run", "Cancel requested.", "success", run_id=run_id)


async def _restore_page(
    request: web.Request,
    *,
    vm_uuid: str | None = None,
    point_id: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    manager = keys.backup(request.app)
    principal = keys.principal(request)
    storage = await manager.storage_status()
    vms = await manager.vm_overview() if storage.get("configured") else []
    view = await keys.places(request.app).view()
    vms = vms_for(principal, view, vms, Action.RESTORE)
    if vm_uuid is None:
        vm_uuid = request.query.get("vm", "")
    if point_id is None:
        point_id = request.query.get("point", "")
    if vm_uuid and vm_uuid not in {vm["vm_uuid"] for vm in vms}:
        # Not one the user may restore: as if it had no restore point.
        vm_uuid = ""
    points: list[dict[str, Any]] = []
    if vm_uuid:
        found = await _points_or_none(request, vm_uuid)
        if found is None:
            error, status, vm_uuid = f"{vm_uuid[:80]!r} is not a VM uuid", 400, ""
        else:
            points = found
    # The point restored: the one asked for, else the newest.
    chosen = next((p for p in points if p["id"] == point_id), points[-1] if points else None)
    context = {
        "may_delete_points": bool(vm_uuid)
        and principal.may(Action.MANAGE, view.path(ObjectRef(ObjectKind.VM, vm_uuid))),
        "vms": vms,
        "vm_uuid": vm_uuid,
        "vm": next((v for v in vms if v["vm_uuid"] == vm_uuid), None),
        "points": points,
        "point": chosen,
        "targets": await restore_targets(request),
        "error": error,
    }
    return aiohttp_jinja2.render_template("backup/restore.html", request, context, status=status)


@listing
async def restore_page(request: web.Request) -> web.StreamResponse:
    """Choose a VM, a restore point and where to restore it."""
    return await _restore_page(request)


@needs(Action.RESTORE, ObjectKind.VM, body="vm_uuid")
@needs(Action.MANAGE, Via.POOL_ID, body="target", pick=pool_of_target)
async def restore_submit(request: web.Request) -> web.StreamResponse:
    """Start a restore and show its progress (operator of the VM, administrator
    of the pool restored into)."""
    form: dict[str, Any] = dict(await form_fields(request))
    form["with_networks"] = form.get("with_networks") == "on"
    form["salvage"] = form.get("salvage") == "on"
    # The page picks pool and SR in one list; the service takes them apart.
    if "target" in form:
        form["pool_id"], _, form["sr_uuid"] = str(form.pop("target")).partition(":")
    run_id = await attempt(keys.backup(request.app).restore(form))
    if isinstance(run_id, FormError):
        return await _restore_page(
            request,
            vm_uuid=str(form.get("vm_uuid") or ""),
            point_id=str(form.get("point_id") or ""),
            error=run_id.message,
            status=run_id.status,
        )
    await audit(
        request,
        AuditEvent.BACKUP_RESTORE_STARTED,
        vm=form.get("vm_uuid", ""),
        point=form.get("point_id", ""),
        disk=form.get("disk") or "all",
        run=run_id,
    )
    redirect_to(request, "backup_run", run_id=run_id)


async def _mail_page(
    request: web.Request,
    *,
    form: dict[str, Any] | None = None,
    error: str | None = None,
    answer: str | None = None,
    status: int = 200,
) -> web.Response:
    smtp = await keys.backup(request.app).smtp_settings()
    values: dict[str, Any] = {
        "host": "",
        "port": 587,
        "starttls": True,
        "username": "",
        "sender": "",
        "recipients": "",
        "only_problems": False,
    }
    if smtp is not None:
        values.update(
            host=smtp.host,
            port=smtp.port,
            starttls=smtp.starttls,
            username=smtp.username,
            sender=smtp.sender,
            recipients=", ".join(smtp.recipients),
            only_problems=smtp.only_problems,
        )
    if form is not None:
        values.update({k: v for k, v in form.items() if k != "password"})
    context = {"smtp": values, "error": error, "answer": answer}
    return aiohttp_jinja2.render_template("backup/mail.html", request, context, status=status)


@admin
async def mail_page(request: web.Request) -> web.StreamResponse:
    """Where run reports are mailed."""
    return await _mail_page(request)


async def _mail_form(request: web.Request) -> dict[str, Any]:
    form: dict[str, Any] = dict(await form_fields(request))
    form["starttls"] = form.get("starttls") == "on"
    form["only_problems"] = form.get("only_problems") == "on"
    return form


@admin
async def mail_submit(request: web.Request) -> web.StreamResponse:
    """Save the report mail settings (an empty server turns mail off)."""
    form = await _mail_form(request)
    manager = keys.backup(request.app)
    if not str(form.get("host", "")).strip():
        await manager.set_smtp(None)
        await audit(request, AuditEvent.MAIL_SETTINGS_CHANGED, mail="off")
        redirect_to(request, "backup", "Report e-mail turned off.", "success")
    if not form.get("password"):
        old = await manager.smtp_settings()
        if old is not None:
            form["password"] = old.password
    done = await attempt(manager.set_smtp(form))
    if isinstance(done, FormError):
        return await _mail_page(request, form=form, error=done.message, status=done.status)
    await audit(
        request,
        AuditEvent.MAIL_SETTINGS_CHANGED,
        host=form.get("host", ""),
        recipients=form.get("recipients", ""),
        only_problems=form["only_problems"],
    )
    redirect_to(request, "backup", "Report e-mail saved.", "success")


@admin
async def mail_test(request: web.Request) -> web.StreamResponse:
    """Send a test mail with the settings in the form; show the server's answer."""
    form = await _mail_form(request)
    answer = await attempt(keys.backup(request.app).test_mail(form))
    if isinstance(answer, FormError):
        await audit(request, AuditEvent.MAIL_TEST_SENT, host=form.get("host", ""), ok=False)
        return await _mail_page(request, form=form, error=answer.message, status=answer.status)
    await audit(request, AuditEvent.MAIL_TEST_SENT, host=form.get("host", ""), ok=True)
    return await _mail_page(request, form=form, answer=answer)
