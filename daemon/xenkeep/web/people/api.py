"""The people JSON API: ``/api/v1/users``, ``/api/v1/groups``, ``/api/v1/grants``.
Super-administrators only."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep.auth.grants import Subject, parse_object, parse_role
from xenkeep.errors import ValidationError
from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.api import user_json
from xenkeep.web.forms import MAX_PASSWORD_INPUT, int_param, json_body, text_field, whole_number

from .common import group_id_param, object_choices, parse_global_role, user_id_param


def _actor(request: web.Request) -> dict[str, Any]:
    return {"actor": keys.require_user(request), "ip": keys.client_ip(request)}


def _actor_name(request: web.Request) -> dict[str, str]:
    return {"actor": keys.require_user(request).username, "ip": keys.client_ip(request)}


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    return text_field(body, name, required=False, default="") if name in body else None


# --- users ------------------------------------------------------------------------------


@admin
async def api_users(request: web.Request) -> web.StreamResponse:
    """Every account, with its groups."""
    groups = await keys.groups(request.app).all()
    out = []
    for user in await keys.accounts(request.app).all():
        entry = user_json(user)
        entry["groups"] = [g.name for g in groups if any(m.user_id == user.id for m in g.members)]
        out.append(entry)
    return web.json_response({"users": out})


@admin
async def api_user_create(request: web.Request) -> web.StreamResponse:
    """Create a local account: ``{"username", "role"?, "display_name"?,
    "email"?, "password"?}``. Without a password a temporary one is made,
    answered once, and must be changed at the first sign-in."""
    body = await json_body(request)
    created = await keys.accounts(request.app).create(
        text_field(body, "username", max_length=256),
        role=parse_global_role(text_field(body, "role", required=False, default="user")),
        display_name=text_field(body, "display_name", required=False, max_length=256),
        email=text_field(body, "email", required=False, max_length=512),
        password=text_field(body, "password", required=False, max_length=MAX_PASSWORD_INPUT)
        or None,
        **_actor_name(request),
    )
    return web.json_response(
        {"user": user_json(created.user), "temporary_password": created.temporary_password},
        status=201,
    )


@admin
async def api_user(request: web.Request) -> web.StreamResponse:
    """One account, its groups and its grants."""
    user = await keys.accounts(request.app).get(user_id_param(request))
    groups = await keys.groups(request.app).of_user(user.id)
    grants = await keys.grants(request.app).find(subject=Subject.parse(f"user:{user.id}"))
    return web.json_response(
        {
            "user": user_json(user),
            "groups": [{"id": g.id, "name": g.name} for g in groups],
            "grants": [g.as_dict() for g in grants],
        }
    )


@admin
async def api_user_update(request: web.Request) -> web.StreamResponse:
    """Change ``role``, ``display_name``, ``email`` or ``disabled`` (each optional).
    Disabling ends the account's sessions and tokens at once."""
    body = await json_body(request)
    accounts = keys.accounts(request.app)
    user_id = user_id_param(request)
    role = _optional_text(body, "role")
    user = await accounts.update(
        user_id,
        role=parse_global_role(role) if role is not None else None,
        display_name=_optional_text(body, "display_name"),
        email=_optional_text(body, "email"),
        **_actor(request),
    )
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise ValidationError("disabled must be true or false", field="disabled")
        if body["disabled"] and not user.disabled:
            user = await accounts.disable(user_id, **_actor(request))
        elif not body["disabled"] and user.disabled:
            user = await accounts.enable(user_id, **_actor(request))
    return web.json_response({"user": user_json(user)})


@admin
async def api_user_delete(request: web.Request) -> web.StreamResponse:
    """Delete an account; its sessions, tokens and grants go with it."""
    await keys.accounts(request.app).delete(user_id_param(request), **_actor(request))
    return web.json_response({"ok": True})


@admin
async def api_user_password(request: web.Request) -> web.StreamResponse:
    """Reset a password: a temporary one, answered once, to be changed at the
    next sign-in; the account's sessions end."""
    password = await keys.accounts(request.app).reset_password(
        user_id_param(request), **_actor(request)
    )
    return web.json_response({"temporary_password": password})


# --- groups -----------------------------------------------------------------------------


@admin
async def api_groups(request: web.Request) -> web.StreamResponse:
    """Every group with its members."""
    return web.json_response(
        {"groups": [g.as_dict() for g in await keys.groups(request.app).all()]}
    )


@admin
async def api_group_create(request: web.Request) -> web.StreamResponse:
    """Create a group: ``{"name", "description"?}``."""
    body = await json_body(request)
    group = await keys.groups(request.app).create(
        text_field(body, "name", max_length=256),
        text_field(body, "description", required=False, max_length=1024),
        **_actor_name(request),
    )
    return web.json_response({"group": group.as_dict()}, status=201)


@admin
async def api_group(request: web.Request) -> web.StreamResponse:
    """One group, its members and its grants."""
    group = await keys.groups(request.app).get(group_id_param(request))
    grants = await keys.grants(request.app).find(subject=Subject.parse(f"group:{group.id}"))
    return web.json_response({"group": group.as_dict(), "grants": [g.as_dict() for g in grants]})


@admin
async def api_group_update(request: web.Request) -> web.StreamResponse:
    """Rename a group or change its description."""
    body = await json_body(request)
    groups = keys.groups(request.app)
    group = await groups.get(group_id_param(request))
    updated = await groups.update(
        group.id,
        name=text_field(body, "name", required=False, default=group.name, max_length=256),
        description=text_field(
            body, "description", required=False, default=group.description, max_length=1024
        ),
        **_actor_name(request),
    )
    return web.json_response({"group": updated.as_dict()})


@admin
async def api_group_delete(request: web.Request) -> web.StreamResponse:
    """Delete a group; its memberships and grants go with it."""
    await keys.groups(request.app).delete(group_id_param(request), **_actor_name(request))
    return web.json_response({"ok": True})


@admin
async def api_group_member_add(request: web.Request) -> web.StreamResponse:
    """Put a user in the group: ``{"user_id"}``."""
    body = await json_body(request)
    raw = body.get("user_id")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValidationError("user_id must be a number", field="user_id")
    group = await keys.groups(request.app).add_member(
        group_id_param(request),
        whole_number(str(raw), "user_id", "user_id must be a number"),
        **_actor_name(request),
    )
    return web.json_response({"group": group.as_dict()})


@admin
async def api_group_member_delete(request: web.Request) -> web.StreamResponse:
    """Take a user out of the group."""
    group = await keys.groups(request.app).remove_member(
        group_id_param(request), user_id_param(request), **_actor_name(request)
    )
    return web.json_response({"group": group.as_dict()})


# --- grants -----------------------------------------------------------------------------


@admin
async def api_grants(request: web.Request) -> web.StreamResponse:
    """Grants, of one subject (``?subject=user:3``) and/or on one object
    (``?object=vm:<uuid>``)."""
    subject = request.query.get("subject")
    obj = request.query.get("object")
    grants = await keys.grants(request.app).find(
        subject=Subject.parse(subject) if subject else None,
        obj=parse_object(obj) if obj else None,
    )
    return web.json_response({"grants": [g.as_dict() for g in grants]})


@admin
async def api_grant_create(request: web.Request) -> web.StreamResponse:
    """Give a role on an object to a user or a group: ``{"subject": "user:3",
    "object": "vm:<uuid>", "role": "viewer"}``. The same subject and object
    again replace the role."""
    body = await json_body(request)
    grant = await keys.grants(request.app).grant(
        Subject.parse(text_field(body, "subject", max_length=64)),
        parse_object(text_field(body, "object", max_length=128)),
        parse_role(text_field(body, "role", max_length=32)),
        actor=keys.require_user(request).username,
        ip=keys.client_ip(request),
    )
    return web.json_response({"grant": grant.as_dict()}, status=201)


@admin
async def api_grant_delete(request: web.Request) -> web.StreamResponse:
    """Take a grant back."""
    grant = await keys.grants(request.app).revoke(
        int_param(request, "grant_id"), **_actor_name(request)
    )
    return web.json_response({"grant": grant.as_dict()})


@admin
async def api_grant_objects(request: web.Request) -> web.StreamResponse:
    """Every object a grant can name, by name (the object picker's content)."""
    return web.json_response(
        {
            "groups": [
                {"label": label, "objects": [{"object": v, "name": n} for v, n in choices]}
                for label, choices in await object_choices(request)
            ]
        }
    )
