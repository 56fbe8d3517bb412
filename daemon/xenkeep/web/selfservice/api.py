"""The self-service JSON API.

``/api/v1/account/ssh-keys`` (every user's own keys), ``/api/v1/resource-sets``
(super-administrators), ``/api/v1/self/usage`` and ``/api/v1/self/vms``
(members: their sets, their VMs; creation answers the operation's id).
A member's VM is theirs through a grant of the admin role on it, so the
power and delete routes are ordinary object routes (``@needs``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import Action, ObjectKind
from xenkeep.errors import ValidationError
from xenkeep.selfservice.sets import RESOURCES, amounts_json
from xenkeep.web import keys
from xenkeep.web.access import admin, listing, needs, signed_in
from xenkeep.web.forms import int_param, json_body, text_field


def _actor(request: web.Request) -> dict[str, str]:
    return {"username": keys.require_user(request).username, "ip": keys.client_ip(request)}


# --------------------------------------------------------------------- SSH keys


@signed_in
async def api_ssh_keys(request: web.Request) -> web.StreamResponse:
    """The caller's SSH public keys."""
    found = await keys.ssh_keys(request.app).of_user(keys.require_user(request).id)
    return web.json_response({"ssh_keys": [k.to_json() for k in found]})


@signed_in
async def api_ssh_key_create(request: web.Request) -> web.StreamResponse:
    """Add a key: ``{"name", "key"}`` (one OpenSSH public key line)."""
    body = await json_body(request)
    made = await keys.ssh_keys(request.app).add(
        keys.require_user(request).id,
        text_field(body, "name", max_length=200),
        text_field(body, "key", max_length=20000),
    )
    await keys.audit(request.app).record(
        AuditEvent.SSH_KEY_ADDED, **_actor(request), name=made.name, fingerprint=made.fingerprint
    )
    return web.json_response(made.to_json(), status=201)


@signed_in
async def api_ssh_key_delete(request: web.Request) -> web.StreamResponse:
    """Remove one of the caller's keys."""
    key_id = int_param(request, "key_id")
    await keys.ssh_keys(request.app).delete(keys.require_user(request).id, key_id)
    await keys.audit(request.app).record(AuditEvent.SSH_KEY_REMOVED, **_actor(request), id=key_id)
    return web.json_response({"ok": True})


# ---------------------------------------------------------------- resource sets


async def _set_json(request: web.Request, set_id: int) -> dict[str, Any]:
    sets = keys.resource_sets(request.app)
    found = await sets.get(set_id)
    return {**found.to_json(), "used": amounts_json(await sets.usage(set_id))}


async def _save(request: web.Request, set_id: int | None) -> web.StreamResponse:
    body = await json_body(request)
    limits = body.get("limits", {})
    subjects = body.get("subjects", [])
    objects = body.get("objects", {})
    if (
        not isinstance(limits, dict)
        or not isinstance(subjects, list)
        or not isinstance(objects, dict)
    ):
        raise ValidationError("limits and objects are objects, subjects a list", field="limits")
    if not all(isinstance(v, list) for v in objects.values()):
        raise ValidationError("each kind of objects is a list of uuids", field="objects")
    saved = await keys.resource_sets(request.app).save(
        name=text_field(body, "name", max_length=200),
        limits={k: v for k, v in limits.items() if k in RESOURCES},
        subjects=[str(s) for s in subjects],
        objects=objects,
        count_snapshots=body.get("count_snapshots") is True,
        set_id=set_id,
    )
    await keys.audit(request.app).record(
        AuditEvent.RESOURCE_SET_SAVED, **_actor(request), set=saved.name, limits=dict(saved.limits)
    )
    return web.json_response(
        await _set_json(request, saved.id), status=201 if set_id is None else 200
    )


@admin
async def api_resource_sets(request: web.Request) -> web.StreamResponse:
    """Every resource set with its usage."""
    sets = keys.resource_sets(request.app)
    return web.json_response(
        {"resource_sets": [await _set_json(request, s.id) for s in await sets.all()]}
    )


@admin
async def api_resource_set_create(request: web.Request) -> web.StreamResponse:
    """``{"name", "limits": {cpus, memory, disk, disks, vms}, "subjects": ["user:3",
    "group:2"], "objects": {"template": [...], "sr": [...], "network": [...]},
    "count_snapshots"}`` (memory and disk in bytes; a limit left out has none)."""
    return await _save(request, None)


@admin
async def api_resource_set(request: web.Request) -> web.StreamResponse:
    """One set with its usage."""
    return web.json_response(await _set_json(request, int_param(request, "set_id")))


@admin
async def api_resource_set_update(request: web.Request) -> web.StreamResponse:
    """Replace a set (the same body as creating one)."""
    return await _save(request, int_param(request, "set_id"))


@admin
async def api_resource_set_delete(request: web.Request) -> web.StreamResponse:
    """Delete a set no VM is charged to."""
    set_id = int_param(request, "set_id")
    await keys.resource_sets(request.app).delete(set_id)
    await keys.audit(request.app).record(
        AuditEvent.RESOURCE_SET_DELETED, **_actor(request), id=set_id
    )
    return web.json_response({"ok": True})


# ------------------------------------------------------------------ members


@listing
async def api_self_usage(request: web.Request) -> web.StreamResponse:
    """The caller's sets: limits, what is used, and the objects they may use."""
    sets = keys.resource_sets(request.app)
    mine = await sets.of_user(keys.require_user(request).id)
    out = []
    for s in mine:
        data = s.to_json()
        data.pop("subjects")
        out.append({**data, "used": amounts_json(await sets.usage(s.id))})
    return web.json_response({"resource_sets": out})


@listing
async def api_self_vms(request: web.Request) -> web.StreamResponse:
    """The caller's self-service VMs (every member's, for a super-administrator)."""
    principal = keys.principal(request)
    user = keys.require_user(request)
    rows = await keys.resource_sets(request.app).vms_of(
        None if principal.is_super_admin and request.query.get("all") == "1" else user.id
    )
    vms = keys.self_vms(request.app)
    return web.json_response(
        {
            "vms": [
                {
                    "uuid": r["vm_uuid"],
                    "name": r["name"],
                    "pool": r["pool_id"],
                    "resource_set": r["set_name"],
                    "state": "creating"
                    if not r["vm_uuid"]
                    else await vms.state(r["vm_uuid"], r["pool_id"]),
                    "vcpus": r["cpus"],
                    "memory": r["memory"],
                    "disk": r["disk"],
                }
                for r in rows
            ]
        }
    )


@listing
async def api_self_vm_create(request: web.Request) -> web.StreamResponse:
    """Create VMs (see README, "Self-service VMs"); 202 with the operation's id."""
    body = await json_body(request)
    user = keys.require_user(request)
    creator = keys.creator(request.app)
    req = await creator.parse(body, user.id)
    op_id, warnings = await creator.start(
        req, user_id=user.id, username=user.username, admin=keys.principal(request).is_super_admin
    )
    await keys.audit(request.app).record(
        AuditEvent.SELF_VM_CREATE, **_actor(request), names=req.names, operation=op_id
    )
    return web.json_response(
        {"operation": op_id, "names": req.names, "warnings": warnings}, status=202
    )


async def _power(request: web.Request, action: str) -> web.StreamResponse:
    uuid = request.match_info["vm_uuid"]
    await keys.self_vms(request.app).power(uuid, action)
    await keys.audit(request.app).record(
        AuditEvent.SELF_VM_POWER, **_actor(request), vm=uuid, action=action
    )
    return web.json_response({"ok": True})


@needs(Action.POWER, ObjectKind.VM, match="vm_uuid")
async def api_self_vm_start(request: web.Request) -> web.StreamResponse:
    """Start one of the caller's VMs."""
    return await _power(request, "start")


@needs(Action.POWER, ObjectKind.VM, match="vm_uuid")
async def api_self_vm_stop(request: web.Request) -> web.StreamResponse:
    """Shut one of the caller's VMs down (forced when the guest ignores it)."""
    return await _power(request, "stop")


@needs(Action.POWER, ObjectKind.VM, match="vm_uuid")
async def api_self_vm_reboot(request: web.Request) -> web.StreamResponse:
    """Reboot one of the caller's VMs."""
    return await _power(request, "reboot")


@needs(Action.VIEW, ObjectKind.VM, match="vm_uuid")
async def api_self_vm_console(request: web.Request) -> web.StreamResponse:
    """The console address of one of the caller's VMs."""
    return web.json_response(
        await keys.self_vms(request.app).console(request.match_info["vm_uuid"])
    )


@needs(Action.MANAGE, ObjectKind.VM, match="vm_uuid")
async def api_self_vm_delete(request: web.Request) -> web.StreamResponse:
    """Delete one of the caller's VMs with its disks; its quota is released."""
    uuid = request.match_info["vm_uuid"]
    await keys.self_vms(request.app).delete(uuid)
    await keys.audit(request.app).record(AuditEvent.SELF_VM_DELETED, **_actor(request), vm=uuid)
    return web.json_response({"ok": True})
