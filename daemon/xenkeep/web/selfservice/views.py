"""The self-service pages: a member's quota, VMs and the creation form; the
administrators' resource sets."""

from __future__ import annotations

import json
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import ObjectKind, ObjectRef
from xenkeep.errors import ValidationError
from xenkeep.selfservice.sets import RESOURCES, amounts_json
from xenkeep.web import keys
from xenkeep.web.access import admin, listing
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import FormError, attempt, form_fields

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
    vms = await sets.vms_of(user.id)
    pools = await keys.pools(request.app).pools()
    context = {
        "sets": mine,
        "vms": vms,
        "pools": pools,
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
        extra = [
            int(x) for x in form.get("extra_disks_gib", "").replace(",", " ").split() if x.isdigit()
        ]
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
    return aiohttp_jinja2.render_template(
        "selfservice/sets.html", request, {"rows": rows, "error": error}, status=status
    )


@admin
async def resource_set_create(request: web.Request) -> web.StreamResponse:
    """A new set from the form (limits as numbers; memory and disk in GiB)."""
    form = await form_fields(request)

    async def save() -> str:
        limits: dict[str, Any] = {}
        for r in RESOURCES:
            value = _int_field(form, r)
            if value is not None:
                limits[r] = value << 30 if r in ("memory", "disk") else value
        made = await keys.resource_sets(request.app).save(
            name=form.get("name", ""),
            limits=limits,
            subjects=form.get("subjects", "").replace(",", " ").split(),
            objects={k: form.get(k, "").replace(",", " ").split() for k in _KINDS},
            count_snapshots=form.get("count_snapshots") == "on",
        )
        await keys.audit(request.app).record(
            AuditEvent.RESOURCE_SET_SAVED,
            username=keys.require_user(request).username,
            ip=keys.client_ip(request),
            set=made.name,
            limits=json.dumps(dict(made.limits)),
        )
        return made.name

    saved = await attempt(save())
    if isinstance(saved, FormError):
        return await _sets_page(request, error=saved.message, status=saved.status)
    redirect_to(request, "resource_sets", f"resource set {saved} saved")
