"""Backups in the web UI and the JSON API: storage, jobs, runs, restores.

Thin handlers over :class:`~xenkeep.backup.manager.BackupManager`; every
route is for administrators. Run pages follow ``/api/v1/backup/runs/{id}/events``
(server-sent events; ``static/backup.js`` polls ``/api/v1/backup/runs/{id}`` if
the stream fails), which read the same rows the runner writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp_jinja2
from aiohttp import web

from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.units import human_bytes
from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.flash import redirect, redirect_to
from xenkeep.web.forms import form_fields, json_body, text_field
from xenkeep.web.operations import operation_page
from xenkeep.web.sse import KEEPALIVE, KEEPALIVE_SECONDS, open_event_stream, sse_event

#: How long a disk form waits for its operation before showing its progress page.
FORM_WAIT: Final = 15.0


def _int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ValidationError(f"not a valid {name}", field=name) from None


async def _pool_choices(request: web.Request) -> list[tuple[str, str]]:
    pools = keys.pools(request.app)
    return [(str(p.id), p.name) for p in await pools.pools()]


# SR types that hold no VM disks: ISO libraries and removable devices.
_NOT_FOR_DISKS = frozenset({"iso", "udev"})


async def _restore_targets(request: web.Request) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per pool, the SRs a disk can be restored to: (``pool_id:sr_uuid``, label)."""
    pools = keys.pools(request.app)
    out = []
    for pool in await pools.pools():
        srs = [sr for sr in pools.summary(pool.id)["srs"] if sr["type"] not in _NOT_FOR_DISKS]
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


# --- JSON API -----------------------------------------------------------------------


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
    return web.json_response({"status": "running", "operation_id": op_id}, status=202)


@admin
async def api_verify_schedule(request: web.Request) -> web.StreamResponse:
    """The verify schedule (cron syntax in the appliance's time zone; "" = off)."""
    return web.json_response(await keys.backup(request.app).verify_schedule())


@admin
async def api_verify_schedule_put(request: web.Request) -> web.StreamResponse:
    """Set the verify schedule: ``{"schedule": "0 4 * * 0"}`` or ``""`` to turn it off."""
    expr = text_field(await json_body(request), "schedule")
    return web.json_response(await keys.backup(request.app).set_verify_schedule(expr))


@admin
async def api_storage_init(request: web.Request) -> web.StreamResponse:
    """Use an existing directory as the backup storage (``{"path": ...}``)."""
    body = await json_body(request)
    status = await keys.backup(request.app).use_directory(str(body.get("path", "")))
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
    if not _wait_wanted(request):
        return web.json_response({"operation_id": op_id}, status=202)
    return web.json_response(await manager.finish_storage_change(op_id))


@admin
async def api_disk_attach(request: web.Request) -> web.StreamResponse:
    """Mount the filesystem already on a disk (no format) as the backup storage
    (``?wait=false`` as for formatting)."""
    manager, device = keys.backup(request.app), request.match_info["device"]
    op_id = await manager.storage.start_attach(device)
    if not _wait_wanted(request):
        return web.json_response({"operation_id": op_id}, status=202)
    return web.json_response(await manager.finish_storage_change(op_id))


@admin
async def api_disk_detach(request: web.Request) -> web.StreamResponse:
    """Unmount the backup disk so it can be detached; nothing is erased."""
    return web.json_response(await keys.backup(request.app).detach_disk())


@admin
async def api_jobs(request: web.Request) -> web.StreamResponse:
    """Every job with its last run."""
    return web.json_response({"jobs": await keys.backup(request.app).jobs()})


@admin
async def api_job_create(request: web.Request) -> web.StreamResponse:
    """Create a job."""
    row = await keys.backup(request.app).create_job(await json_body(request))
    return web.json_response(row.as_dict(), status=201)


@admin
async def api_job(request: web.Request) -> web.StreamResponse:
    """One job."""
    row = await keys.backup(request.app).job(_int_param(request, "job_id"))
    return web.json_response(row.as_dict())


@admin
async def api_job_update(request: web.Request) -> web.StreamResponse:
    """Replace a job's settings."""
    row = await keys.backup(request.app).update_job(
        _int_param(request, "job_id"), await json_body(request)
    )
    return web.json_response(row.as_dict())


@admin
async def api_job_delete(request: web.Request) -> web.StreamResponse:
    """Delete a job (its restore points and history stay)."""
    await keys.backup(request.app).delete_job(_int_param(request, "job_id"))
    return web.json_response({"ok": True})


@admin
async def api_job_run(request: web.Request) -> web.StreamResponse:
    """Start a run now."""
    run_id = await keys.backup(request.app).run_job(_int_param(request, "job_id"))
    return web.json_response({"run_id": run_id}, status=202)


@admin
async def api_runs(request: web.Request) -> web.StreamResponse:
    """Recent runs and restores (``?job_id=`` to filter)."""
    job = request.query.get("job_id")
    try:
        job_id = int(job) if job else None
    except ValueError:
        raise ValidationError("job_id must be a number", field="job_id") from None
    runs = await keys.backup(request.app).runs(job_id=job_id)
    return web.json_response({"runs": runs})


@admin
async def api_run(request: web.Request) -> web.StreamResponse:
    """A run with its tasks (live progress) and log lines (``?log_after=``)."""
    try:
        after = int(request.query.get("log_after", "0"))
    except ValueError:
        raise ValidationError("log_after must be a number", field="log_after") from None
    detail = await keys.backup(request.app).run_detail(
        _int_param(request, "run_id"), log_after=after
    )
    return web.json_response(detail)


@admin
async def api_run_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``run`` (the detail, then new log lines only) after each
    change, until the run has finished. ``?log_after=`` as for the JSON."""
    try:
        after = int(request.query.get("log_after", "0"))
    except ValueError:
        raise ValidationError("log_after must be a number", field="log_after") from None
    manager = keys.backup(request.app)
    run_id = _int_param(request, "run_id")
    await manager.run(run_id)  # 404 before the stream starts
    response = await open_event_stream(request)
    async for detail in manager.watch_run(run_id, log_after=after, keepalive=KEEPALIVE_SECONDS):
        await response.write(KEEPALIVE if detail is None else sse_event("run", detail))
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


@admin
async def api_run_cancel(request: web.Request) -> web.StreamResponse:
    """Cancel a running run or restore."""
    await keys.backup(request.app).cancel(_int_param(request, "run_id"))
    return web.json_response({"ok": True}, status=202)


@admin
async def api_vms(request: web.Request) -> web.StreamResponse:
    """VMs with restore points."""
    return web.json_response({"vms": await keys.backup(request.app).backed_up_vms()})


@admin
async def api_points(request: web.Request) -> web.StreamResponse:
    """Restore points of one VM, oldest first."""
    try:
        points = await keys.backup(request.app).points(request.match_info["vm_uuid"])
    except ValueError:
        raise ValidationError("not a VM uuid", field="vm_uuid") from None
    return web.json_response({"points": points})


@admin
async def api_restore(request: web.Request) -> web.StreamResponse:
    """Start a restore: ``pool_id, vm_uuid, point_id, sr_uuid[, name, disk, networks]``."""
    run_id = await keys.backup(request.app).restore(await json_body(request))
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
    return web.json_response({"ok": True})


# --- pages --------------------------------------------------------------------------


@admin
async def backup_page(request: web.Request) -> web.StreamResponse:
    """Jobs, the storage summary and recent runs."""
    manager = keys.backup(request.app)
    context = {
        "storage": await manager.storage_status(),
        "jobs": await manager.jobs(),
        "runs": await manager.runs(limit=20),
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
    try:
        await keys.backup(request.app).use_directory(form.get("path", ""))
    except XenKeepError as exc:
        if exc.status >= 500 and not exc.code.startswith(("repo", "not_a")):
            raise
        return await _storage_page(
            request, error=exc.message, path=form.get("path", ""), status=400
        )
    redirect("/backup/storage", "Backup storage ready.", "success")


async def _disk_action(
    request: web.Request, act: Callable[[Mapping[str, str]], Awaitable[object]], message: str
) -> web.StreamResponse:
    """Run ``act`` with the posted form; the storage page with its error on refusal."""
    form = await form_fields(request)
    try:
        await act(form)
    except XenKeepError as exc:
        if exc.status >= 500 and exc.status != 503:
            raise
        return await _storage_page(request, disk_error=exc.message, status=exc.status)
    redirect("/backup/storage", message, "success")


async def _disk_operation(
    request: web.Request, start: Callable[[Mapping[str, str]], Awaitable[int]], message: str
) -> web.StreamResponse:
    """Start a disk operation from the posted form. One that ends within
    FORM_WAIT seconds lands back on the storage page; a longer one shows its
    progress on its own page."""
    form = await form_fields(request)
    try:
        op_id = await start(form)
    except XenKeepError as exc:
        if exc.status >= 500 and exc.status != 503:
            raise
        return await _storage_page(request, disk_error=exc.message, status=exc.status)
    ops = keys.operations(request.app)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(ops.wait(op_id)), FORM_WAIT)
    op = await ops.get(op_id)
    if op["status"] == "success":
        redirect("/backup/storage", message, "success")
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
    )


@admin
async def disk_attach(request: web.Request) -> web.StreamResponse:
    """Use the filesystem already on a disk as the backup storage."""
    storage, device = keys.backup(request.app).storage, request.match_info["device"]
    return await _disk_operation(
        request,
        lambda _form: storage.start_attach(device),
        f"{device} is mounted; its restore points are listed.",
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
    await keys.backup(request.app).start_verify()
    redirect("/backup/storage", "Verify started: every stored block is being re-read.", "info")


@admin
async def verify_schedule_submit(request: web.Request) -> web.StreamResponse:
    """Change when verify runs by itself."""
    form = await form_fields(request)
    expr = form.get("schedule", "")
    try:
        result = await keys.backup(request.app).set_verify_schedule(expr)
    except ValidationError as exc:
        return await _storage_page(request, schedule_error=exc.message, schedule=expr, status=400)
    message = (
        f"Verify runs on the schedule {result['schedule']} ({result['timezone']})."
        if result["schedule"]
        else "Scheduled verify is off; verify only runs when started here."
    )
    redirect("/backup/storage", message, "success")


async def _job_form(
    request: web.Request,
    *,
    job: dict[str, Any],
    job_id: int | None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    context = {
        "job": job,
        "job_id": job_id,
        "pools": await _pool_choices(request),
        "error": error,
    }
    return aiohttp_jinja2.render_template("backup/job_form.html", request, context, status=status)


_NEW_JOB = {
    "name": "",
    "selector": "tag",
    "targets": "",
    "pool_id": "",
    "schedule": "0 2 * * *",
    "timezone": "UTC",
    "retention": 7,
    "concurrency": 2,
    "bandwidth_limit_mib": "",
    "full_every": "",
    "enabled": True,
}


@admin
async def job_new(request: web.Request) -> web.StreamResponse:
    """The form for a new job."""
    return await _job_form(request, job=dict(_NEW_JOB), job_id=None)


def _job_to_form(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    out["targets"] = ", ".join(d.get("targets") or [])
    limit = d.get("bandwidth_limit")
    out["bandwidth_limit_mib"] = "" if not limit else str(int(limit) >> 20)
    out["full_every"] = d.get("full_every") or ""
    return out


@admin
async def job_edit(request: web.Request) -> web.StreamResponse:
    """The form of an existing job."""
    job_id = _int_param(request, "job_id")
    row = await keys.backup(request.app).job(job_id)
    return await _job_form(request, job=_job_to_form(row.as_dict()), job_id=job_id)


async def _save_job(request: web.Request, job_id: int | None) -> web.StreamResponse:
    form: dict[str, Any] = dict(await form_fields(request))
    form["enabled"] = form.get("enabled") == "on"
    manager = keys.backup(request.app)
    try:
        if job_id is None:
            row = await manager.create_job(form)
        else:
            row = await manager.update_job(job_id, form)
    except ValidationError as exc:
        return await _job_form(
            request, job={**_NEW_JOB, **form}, job_id=job_id, error=exc.message, status=400
        )
    redirect("/backup", f"Job {row.spec.name} saved.", "success")


@admin
async def job_create(request: web.Request) -> web.StreamResponse:
    """Create a job from the form."""
    return await _save_job(request, None)


@admin
async def job_update(request: web.Request) -> web.StreamResponse:
    """Save a job's form."""
    return await _save_job(request, _int_param(request, "job_id"))


@admin
async def job_delete(request: web.Request) -> web.StreamResponse:
    """Delete a job."""
    await keys.backup(request.app).delete_job(_int_param(request, "job_id"))
    redirect("/backup", "Job deleted; its restore points are kept.", "success")


@admin
async def job_run(request: web.Request) -> web.StreamResponse:
    """Run a job now and show its progress."""
    run_id = await keys.backup(request.app).run_job(_int_param(request, "job_id"))
    redirect_to(request, "backup_run", run_id=run_id)


@admin
async def run_cancel(request: web.Request) -> web.StreamResponse:
    """Cancel a run from its page."""
    run_id = _int_param(request, "run_id")
    await keys.backup(request.app).cancel(run_id)
    redirect_to(request, "backup_run", "Cancel requested.", "success", run_id=run_id)


async def _restore_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    manager = keys.backup(request.app)
    storage = await manager.storage_status()
    vms = await manager.backed_up_vms() if storage.get("configured") else []
    vm_uuid = request.query.get("vm", "")
    points = await manager.points(vm_uuid) if vm_uuid else []
    context = {
        "vms": vms,
        "vm_uuid": vm_uuid,
        "points": points,
        "targets": await _restore_targets(request),
        "error": error,
    }
    return aiohttp_jinja2.render_template("backup/restore.html", request, context, status=status)


@admin
async def restore_page(request: web.Request) -> web.StreamResponse:
    """Choose a VM, a restore point and where to restore it."""
    return await _restore_page(request)


@admin
async def restore_submit(request: web.Request) -> web.StreamResponse:
    """Start a restore and show its progress."""
    form: dict[str, Any] = dict(await form_fields(request))
    form["with_networks"] = form.get("with_networks") == "on"
    # The page picks pool and SR in one list; the service takes them apart.
    if "target" in form:
        form["pool_id"], _, form["sr_uuid"] = str(form.pop("target")).partition(":")
    try:
        run_id = await keys.backup(request.app).restore(form)
    except ValidationError as exc:
        return await _restore_page(request, error=exc.message, status=400)
    redirect_to(request, "backup_run", run_id=run_id)


async def _mail_page(
    request: web.Request,
    *,
    form: dict[str, Any] | None = None,
    error: str | None = None,
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
    }
    if smtp is not None:
        values.update(
            host=smtp.host,
            port=smtp.port,
            starttls=smtp.starttls,
            username=smtp.username,
            sender=smtp.sender,
            recipients=", ".join(smtp.recipients),
        )
    if form is not None:
        values.update({k: v for k, v in form.items() if k != "password"})
    context = {"smtp": values, "error": error}
    return aiohttp_jinja2.render_template("backup/mail.html", request, context, status=status)


@admin
async def mail_page(request: web.Request) -> web.StreamResponse:
    """Where run reports are mailed."""
    return await _mail_page(request)


@admin
async def mail_submit(request: web.Request) -> web.StreamResponse:
    """Save the report mail settings (an empty server turns mail off)."""
    form: dict[str, Any] = dict(await form_fields(request))
    form["starttls"] = form.get("starttls") == "on"
    manager = keys.backup(request.app)
    if not str(form.get("host", "")).strip():
        await manager.set_smtp(None)
        redirect("/backup", "Report e-mail turned off.", "success")
    if not form.get("password"):
        old = await manager.smtp_settings()
        if old is not None:
            form["password"] = old.password
    try:
        await manager.set_smtp(form)
    except ValidationError as exc:
        return await _mail_page(request, form=form, error=exc.message, status=400)
    redirect("/backup", "Report e-mail saved.", "success")


def setup_backup_routes(app: web.Application) -> None:
    """Register the backup pages and API."""
    r = app.router
    r.add_get("/backup", backup_page, name="backup")
    r.add_get("/backup/storage", storage_page, name="backup_storage")
    r.add_post("/backup/storage", storage_submit, name="backup_storage_submit")
    r.add_post("/backup/verify", verify_submit, name="backup_verify")
    r.add_post("/backup/disks/detach", disk_detach, name="backup_disk_detach")
    r.add_post("/backup/disks/{device}/format", disk_format, name="backup_disk_format")
    r.add_post("/backup/disks/{device}/attach", disk_attach, name="backup_disk_attach")
    r.add_post("/backup/verify/schedule", verify_schedule_submit, name="backup_verify_schedule")
    r.add_get("/backup/jobs/new", job_new, name="backup_job_new")
    r.add_post("/backup/jobs", job_create, name="backup_job_create")
    r.add_get("/backup/jobs/{job_id}", job_edit, name="backup_job_edit")
    r.add_post("/backup/jobs/{job_id}", job_update, name="backup_job_update")
    r.add_post("/backup/jobs/{job_id}/delete", job_delete, name="backup_job_delete")
    r.add_post("/backup/jobs/{job_id}/run", job_run, name="backup_job_run")
    # A run is an operation: its page is the operation page.
    r.add_get(r"/backup/runs/{run_id:\d+}", operation_page, name="backup_run")
    r.add_post("/backup/runs/{run_id}/cancel", run_cancel, name="backup_run_cancel")
    r.add_get("/backup/mail", mail_page, name="backup_mail")
    r.add_post("/backup/mail", mail_submit, name="backup_mail_submit")
    r.add_get("/backup/restore", restore_page, name="backup_restore")
    r.add_post("/backup/restore", restore_submit, name="backup_restore_submit")

    r.add_get("/api/v1/backup/storage", api_storage, name="api_backup_storage")
    r.add_get("/api/v1/backup/verify", api_verify, name="api_backup_verify")
    r.add_post("/api/v1/backup/verify", api_verify_start, name="api_backup_verify_start")
    r.add_get(
        "/api/v1/backup/verify/schedule", api_verify_schedule, name="api_backup_verify_schedule"
    )
    r.add_put(
        "/api/v1/backup/verify/schedule",
        api_verify_schedule_put,
        name="api_backup_verify_schedule_put",
    )
    r.add_post("/api/v1/backup/storage", api_storage_init, name="api_backup_storage_init")
    r.add_get("/api/v1/backup/disks", api_disks, name="api_backup_disks")
    r.add_post("/api/v1/backup/disks/detach", api_disk_detach, name="api_backup_disk_detach")
    r.add_post(
        "/api/v1/backup/disks/{device}/format", api_disk_format, name="api_backup_disk_format"
    )
    r.add_post(
        "/api/v1/backup/disks/{device}/attach", api_disk_attach, name="api_backup_disk_attach"
    )
    r.add_get("/api/v1/backup/jobs", api_jobs, name="api_backup_jobs")
    r.add_post("/api/v1/backup/jobs", api_job_create, name="api_backup_job_create")
    r.add_get("/api/v1/backup/jobs/{job_id}", api_job, name="api_backup_job")
    r.add_put("/api/v1/backup/jobs/{job_id}", api_job_update, name="api_backup_job_update")
    r.add_delete("/api/v1/backup/jobs/{job_id}", api_job_delete, name="api_backup_job_delete")
    r.add_post("/api/v1/backup/jobs/{job_id}/run", api_job_run, name="api_backup_job_run")
    r.add_get("/api/v1/backup/runs", api_runs, name="api_backup_runs")
    r.add_get("/api/v1/backup/runs/{run_id}", api_run, name="api_backup_run")
    r.add_get("/api/v1/backup/runs/{run_id}/events", api_run_events, name="api_backup_run_events")
    r.add_post("/api/v1/backup/runs/{run_id}/cancel", api_run_cancel, name="api_backup_run_cancel")
    r.add_get("/api/v1/backup/vms", api_vms, name="api_backup_vms")
    r.add_get("/api/v1/backup/vms/{vm_uuid}/points", api_points, name="api_backup_points")
    r.add_post("/api/v1/backup/restore", api_restore, name="api_backup_restore")
    r.add_get("/api/v1/backup/smtp", api_smtp, name="api_backup_smtp")
    r.add_put("/api/v1/backup/smtp", api_smtp_put, name="api_backup_smtp_put")
