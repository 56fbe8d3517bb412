"""The self-service pages: a member's quota, VMs and the creation form; the
administrators' resource sets."""

from __future__ import annotations

import json
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import Action, ObjectKind, ObjectRef
from xenkeep.errors import NotFoundError, ValidationError
from xenkeep.selfservice.sets import RESOURCES, ResourceSet, amounts_json
from xenkeep.web import keys
from xenkeep.web.access import admin, listing, needs
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import FormError, attempt, form_fields, int_param

_KINDS = {"template": ObjectKind.TEMPLATE, "sr": ObjectKind.SR, "network": ObjectKind.NETWORK}


def _named(request: web.Request, kind: str, refs: Any) -> list[dict[str, str]]:
    tree = keys.pool_tree(request.app)
    return [{"uuid": r, "name": tree.name_of(ObjectRef(_KINDS[kind], r)) or r} for r in refs]


def _bars(limits: dict[str, int], used: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "resource": r,
            "used": used[r],
            "limit": limits.get(r),
            "percent": min(100, round(100 * used[r] / limits[r])) if limits.get(r) else 0,
        }
        for r in RESOURCES
    ]


async def _self_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    user = keys.require_user(request)
    sets = keys.resource_sets(request.app)
    mine = []
    for s in await sets.of_user(user.id):
        used = amounts_json(await sets.usage(s.id))
        mine.append(
            {
                "id": s.id,
                "name": s.name,
                "bars": _bars(dict(s.limits), used),
                **{k: _named(request, k, s.objects.get(k, ())) for k in _KINDS},
            }
        )
    self_vms = keys.self_vms(request.app)
    vms = [
        {
            **v,
            "power": await self_vms.state(v["vm_uuid"], int(v["pool_id"]))
            if v["vm_uuid"]
            else "creating",
        }
        for v in await sets.vms_of(user.id)
    ]
    pools = await keys.pools(request.app).pools()
    context = {
        "sets": mine,
        "vms": vms,
        "pools": pools,
        "may_keep_drive": keys.principal(request).is_super_admin,
        "ssh_keys": await keys.ssh_keys(request.app).of_user(user.id),
        "error": error,
    }
    return aiohttp_jinja2.render_template("selfservice/index.html", request, context, status=status)


@listing
async def self_page(request: web.Request) -> web.StreamResponse:
    """A member's resource sets (used/limit bars), their VMs and the creation form."""
    return await _self_page(request)


def _int_field(form: dict[str, str], name: str, default: int | None = None) -> int | None:
    text = form.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValidationError(f"{name!r} must be a whole number", field=name) from None


@listing
async def self_create(request: web.Request) -> web.StreamResponse:
    """The creation form: the same checks and operation as the API."""
    user = keys.require_user(request)
    form = await form_fields(request)
    post = await request.post()
    creator = keys.creator(request.app)

    async def start() -> int:
        extra = []
        for size in form.get("extra_disks_gib", "").replace(",", " ").split():
            if not size.isdigit():
                raise ValidationError(
                    f"extra disk size {size[:20]!r} is no whole number of GiB",
                    field="extra_disks_gib",
                )
            extra.append(int(size))
        body: dict[str, Any] = {
            "pool": _int_field(form, "pool"),
            "template": form.get("template", ""),
            "name": form.get("name", ""),
            "count": _int_field(form, "count", 1),
            "vcpus": _int_field(form, "vcpus"),
            "memory_mib": _int_field(form, "memory_mib"),
            "root_disk_gib": _int_field(form, "root_disk_gib"),
            "extra_disks_gib": extra,
            "sr": form.get("sr", ""),
            "network": form.get("network", ""),
            "ssh_keys": [int(str(k)) for k in post.getall("ssh_keys", []) if str(k).isdigit()],
            "cloud_config": form.get("cloud_config", ""),
            "keep_config_drive": form.get("keep_config_drive") == "on",
        }
        if form.get("address", "").strip():
            body["network_config"] = {
                "address": form.get("address", "").strip(),
                "gateway": form.get("gateway", "").strip(),
                "dns": form.get("dns", "").replace(",", " ").split(),
            }
        req = await creator.parse(body, user.id)
        op_id, _warnings = await creator.start(
            req,
            user_id=user.id,
            username=user.username,
            admin=keys.principal(request).is_super_admin,
        )
        return op_id

    op_id = await attempt(start())
    if isinstance(op_id, FormError):
        return await _self_page(request, error=op_id.message, status=op_id.status)
    redirect_to(request, "operation", "creation started", op_id=op_id)


_POWER_DONE = {"start": "started", "stop": "shut down", "reboot": "rebooted"}


@needs(Action.POWER, ObjectKind.VM, match="vm_uuid")
async def self_vm_power(request: web.Request) -> web.StreamResponse:
    """Start, shut down or reboot one of the member's VMs (the button's ``action``)."""
    uuid = request.match_info["vm_uuid"]
    action = (await form_fields(request)).get("action", "")
    done = await attempt(keys.self_vms(request.app).power(uuid, action))
    if isinstance(done, FormError):
        return await _self_page(request, error=done.message, status=done.status)
    await keys.audit(request.app).record(
        AuditEvent.SELF_VM_POWER,
        username=keys.require_user(request).username,
        ip=keys.client_ip(request),
        vm=uuid,
        action=action,
    )
    redirect_to(request, "self", f"VM {_POWER_DONE[action]}")


async def _delete_page(
    request: web.Request, *, error: str = "", status: int = 200
) -> web.StreamResponse:
    uuid = request.match_info["vm_uuid"]
    found = await keys.resource_sets(request.app).allocation_of(uuid)
    if found is None:
        raise NotFoundError(f"VM {uuid} is no self-service VM")
    context = {"vm": found, "error": error}
    return aiohttp_jinja2.render_template(
        "selfservice/vm_delete.html", request, context, status=status
    )


@needs(Action.MANAGE, ObjectKind.VM, match="vm_uuid")
async def self_vm_delete_page(request: web.Request) -> web.StreamResponse:
    """Confirm the deletion of a VM: its disks and snapshots go with it."""
    return await _delete_page(request)


@needs(Action.MANAGE, ObjectKind.VM, match="vm_uuid")
async def self_vm_delete(request: web.Request) -> web.StreamResponse:
    """Delete the VM once its name is typed; its quota is released."""
    uuid = request.match_info["vm_uuid"]
    found = await keys.resource_sets(request.app).allocation_of(uuid)
    if found is None:
        raise NotFoundError(f"VM {uuid} is no self-service VM")
    if (await form_fields(request)).get("confirm", "") != found["name"]:
        return await _delete_page(
            request, error=f"type the VM's name, {found['name']}, to delete it", status=400
        )
    done = await attempt(keys.self_vms(request.app).delete(uuid))
    if isinstance(done, FormError):
        return await _delete_page(request, error=done.message, status=done.status)
    await keys.audit(request.app).record(
        AuditEvent.SELF_VM_DELETED,
        username=keys.require_user(request).username,
        ip=keys.client_ip(request),
        vm=uuid,
    )
    redirect_to(request, "self", f"VM {found['name']} deleted with its disks")


async def _set_choices(request: web.Request) -> dict[str, Any]:
    """What a set's form offers: the users and groups by name, and each
    connected pool's templates, SRs and networks by name."""
    users = [(f"user:{u.id}", u.username) for u in await keys.accounts(request.app).all()]
    groups = [(f"group:{g.id}", g.name) for g in await keys.groups(request.app).all()]
    objects: dict[str, list[tuple[str, str]]] = {k: [] for k in _KINDS}
    wanted = {kind: name for name, kind in _KINDS.items()}
    for obj in keys.pool_tree(request.app).objects():
        name = wanted.get(obj.ref.kind)
        if name is not None:
            objects[name].append((obj.ref.ref, f"{obj.name or obj.ref.ref} (pool {obj.pool_name})"))
    return {"subject_choices": users + groups, "object_choices": objects}


def _set_values(s: ResourceSet | None) -> dict[str, Any]:
    """A set as its form shows it (memory and disk in GiB)."""
    if s is None:
        return {"name": "", "limits": {}, "subjects": [], "objects": {}, "count_snapshots": False}
    limits = {r: v >> 30 if r in ("memory", "disk") else v for r, v in s.limits.items()}
    return {
        "name": s.name,
        "limits": limits,
        "subjects": list(s.subjects),
        "objects": {k: list(v) for k, v in s.objects.items()},
        "count_snapshots": s.count_snapshots,
    }


@admin
async def resource_sets_page(request: web.Request) -> web.StreamResponse:
    """Every resource set with its usage, and a form for a new one."""
    return await _sets_page(request)


async def _sets_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    sets = keys.resource_sets(request.app)
    rows = []
    for s in await sets.all():
        used = amounts_json(await sets.usage(s.id))
        rows.append({"set": s, "bars": _bars(dict(s.limits), used)})
    context = {"rows": rows, "error": error, "values": _set_values(None), "set_id": None}
    context.update(await _set_choices(request))
    return aiohttp_jinja2.render_template("selfservice/sets.html", request, context, status=status)


async def _set_page(
    request: web.Request, set_id: int, *, error: str = "", status: int = 200
) -> web.Response:
    found = await keys.resource_sets(request.app).get(set_id)
    context = {"error": error, "values": _set_values(found), "set_id": set_id, "set": found}
    context.update(await _set_choices(request))
    return aiohttp_jinja2.render_template(
        "selfservice/set_edit.html", request, context, status=status
    )


async def _save_set(request: web.Request, set_id: int | None) -> str | FormError:
    form = await form_fields(request)
    post = await request.post()

    async def save() -> str:
        limits: dict[str, Any] = {}
        for r in RESOURCES:
            value = _int_field(form, r)
            if value is not None:
                limits[r] = value << 30 if r in ("memory", "disk") else value
        made = await keys.resource_sets(request.app).save(
            name=form.get("name", ""),
            limits=limits,
            subjects=[str(v) for v in post.getall("subjects", [])],
            objects={k: [str(v) for v in post.getall(k, [])] for k in _KINDS},
            count_snapshots=form.get("count_snapshots") == "on",
            set_id=set_id,
        )
        await keys.audit(request.app).record(
            AuditEvent.RESOURCE_SET_SAVED,
            username=keys.require_user(request).username,
            ip=keys.client_ip(request),
            set=made.name,
            limits=json.dumps(dict(made.limits)),
        )
        return made.name

    return await attempt(save())


@admin
async def resource_set_create(request: web.Request) -> web.StreamResponse:
    """A new set from the form (limits as numbers; memory and disk in GiB)."""
    saved = await _save_set(request, None)
    if isinstance(saved, FormError):
        return await _sets_page(request, error=saved.message, status=saved.status)
    redirect_to(request, "resource_sets", f"resource set {saved} saved")


@admin
async def resource_set_page(request: web.Request) -> web.StreamResponse:
    """One set's form, to change it."""
    return await _set_page(request, int_param(request, "set_id"))


@admin
async def resource_set_update(request: web.Request) -> web.StreamResponse:
    """Save a changed set; its members' VMs stay charged to it."""
    set_id = int_param(request, "set_id")
    saved = await _save_set(request, set_id)
    if isinstance(saved, FormError):
        return await _set_page(request, set_id, error=saved.message, status=saved.status)
    redirect_to(request, "resource_sets", f"resource set {saved} saved")


async def _delete_set_page(
    request: web.Request, set_id: int, *, error: str = "", status: int = 200
) -> web.Response:
    sets = keys.resource_sets(request.app)
    found = await sets.get(set_id)
    charged = [v for v in await sets.vms_of(None) if v["set_id"] == set_id]
    context = {"set": found, "charged": charged, "error": error}
    return aiohttp_jinja2.render_template(
        "selfservice/set_delete.html", request, context, status=status
    )


@admin
async def resource_set_delete_page(request: web.Request) -> web.StreamResponse:
    """Confirm deleting a set (refused while VMs are charged to it, named)."""
    return await _delete_set_page(request, int_param(request, "set_id"))


@admin
async def resource_set_delete(request: web.Request) -> web.StreamResponse:
    """Delete a set no VM is charged to."""
    set_id = int_param(request, "set_id")
    sets = keys.resource_sets(request.app)
    found = await sets.get(set_id)
    done = await attempt(sets.delete(set_id))
    if isinstance(done, FormError):
        return await _delete_set_page(request, set_id, error=done.message, status=done.status)
    await keys.audit(request.app).record(
        AuditEvent.RESOURCE_SET_DELETED,
        username=keys.require_user(request).username,
        ip=keys.client_ip(request),
        id=set_id,
    )
    redirect_to(request, "resource_sets", f"resource set {found.name} deleted")
