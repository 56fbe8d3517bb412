"""The people pages: users, groups and grants (super-administrators only).

Post/Redirect/Get, except where a secret is shown once (a temporary
password): that page is rendered, never redirected to.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.auth.accounts import NewAccount
from xenkeep.auth.grants import GrantRow, Subject, SubjectKind, parse_object, parse_role
from xenkeep.auth.manager import User
from xenkeep.auth.permissions import ObjectRole
from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.flash import redirect, redirect_to
from xenkeep.web.forms import FormError, attempt, form_fields, int_param, safe_next, whole_number

from .common import ROLE_LABELS, group_id_param, object_choices, parse_global_role, user_id_param


async def _grant_form(request: web.Request, **extra: Any) -> dict[str, Any]:
    """What the grant form of any people page needs."""
    return {
        "objects": await object_choices(request),
        "object_roles": list(ObjectRole),
        "users": await keys.accounts(request.app).all(),
        "groups": await keys.groups(request.app).all(),
        **extra,
    }


# --- users ------------------------------------------------------------------------------


async def _users_page(request: web.Request, *, status: int = 200, **extra: Any) -> web.Response:
    groups = await keys.groups(request.app).all()
    context: dict[str, Any] = {
        "users": await keys.accounts(request.app).all(),
        "member_of": {
            u.user_id: [g.name for g in groups if any(m.user_id == u.user_id for m in g.members)]
            for g in groups
            for u in g.members
        },
        "roles": ROLE_LABELS,
        "error": None,
        "created": None,
        "form": {},
    }
    context.update(extra)
    return aiohttp_jinja2.render_template("people/users.html", request, context, status=status)


@admin
async def users_page(request: web.Request) -> web.StreamResponse:
    """Every account: role, where it signs in, last sign-in; the form to add one."""
    return await _users_page(request)


@admin
async def user_create(request: web.Request) -> web.StreamResponse:
    """Create a local account (with a temporary password when none is given)."""
    form = await form_fields(request)
    user = keys.require_user(request)

    async def create() -> NewAccount:
        return await keys.accounts(request.app).create(
            form.get("username", "")[:256],
            role=parse_global_role(form.get("role", "user")),
            display_name=form.get("display_name", "")[:256],
            email=form.get("email", "")[:512],
            password=form.get("password", "")[:1024] or None,
            actor=user.username,
            ip=keys.client_ip(request),
        )

    created = await attempt(create())
    if isinstance(created, FormError):
        shown = {k: v[:256] for k, v in form.items() if k in ("username", "display_name", "email")}
        return await _users_page(request, error=created.message, status=created.status, form=shown)
    return await _users_page(request, created=created)


async def _user_page(request: web.Request, *, status: int = 200, **extra: Any) -> web.Response:
    accounts = keys.accounts(request.app)
    user = await accounts.get(user_id_param(request))
    subject = Subject(SubjectKind.USER, user.id)
    groups = keys.groups(request.app)
    context = await _grant_form(
        request,
        account=user,
        subject=subject,
        roles=ROLE_LABELS,
        member_of=await groups.of_user(user.id),
        grants=await keys.grants(request.app).find(subject=subject),
        sessions=len(await keys.auth(request.app).list_sessions(user)),
        error=None,
        temporary_password=None,
    )
    context.update(extra)
    return aiohttp_jinja2.render_template("people/user.html", request, context, status=status)


@admin
async def user_page(request: web.Request) -> web.StreamResponse:
    """One account: its role, groups and grants, and what can be done to it."""
    return await _user_page(request)


@admin
async def user_update(request: web.Request) -> web.StreamResponse:
    """Change an account's role, display name or e-mail."""
    form = await form_fields(request)

    async def update() -> User:
        return await keys.accounts(request.app).update(
            user_id_param(request),
            role=parse_global_role(form.get("role", "")) if form.get("role") else None,
            display_name=form.get("display_name", "")[:256],
            email=form.get("email", "")[:512],
            actor=keys.require_user(request),
            ip=keys.client_ip(request),
        )

    done = await attempt(update())
    if isinstance(done, FormError):
        return await _user_page(request, error=done.message, status=done.status)
    redirect_to(request, "people_user", "Saved.", "success", user_id=done.id)


@admin
async def user_disable(request: web.Request) -> web.StreamResponse:
    """Disable an account: its sessions and API tokens end now."""
    done = await attempt(
        keys.accounts(request.app).disable(
            user_id_param(request), actor=keys.require_user(request), ip=keys.client_ip(request)
        )
    )
    if isinstance(done, FormError):
        return await _user_page(request, error=done.message, status=done.status)
    redirect_to(
        request,
        "people_user",
        f"{done.username} is disabled; their sessions and API tokens have ended.",
        "success",
        user_id=done.id,
    )


@admin
async def user_enable(request: web.Request) -> web.StreamResponse:
    """Let a disabled account sign in again."""
    done = await keys.accounts(request.app).enable(
        user_id_param(request), actor=keys.require_user(request), ip=keys.client_ip(request)
    )
    redirect_to(
        request, "people_user", f"{done.username} may sign in again.", "success", user_id=done.id
    )


@admin
async def user_password(request: web.Request) -> web.StreamResponse:
    """Reset the password: a temporary one, shown once, changed at the next sign-in."""
    password = await attempt(
        keys.accounts(request.app).reset_password(
            user_id_param(request), actor=keys.require_user(request), ip=keys.client_ip(request)
        )
    )
    if isinstance(password, FormError):
        return await _user_page(request, error=password.message, status=password.status)
    return await _user_page(request, temporary_password=password)


@admin
async def user_delete_page(request: web.Request) -> web.StreamResponse:
    """Ask before an account is deleted."""
    user = await keys.accounts(request.app).get(user_id_param(request))
    grants = await keys.grants(request.app).find(subject=Subject(SubjectKind.USER, user.id))
    return aiohttp_jinja2.render_template(
        "people/confirm_delete.html",
        request,
        {
            "what": f"the account {user.username}",
            "consequences": [
                "their sessions and API tokens end now",
                f"their {len(grants)} grant(s), group memberships and recovery codes are deleted",
                "the audit log keeps what they did",
            ],
            "action": request.app.router["people_user_delete"].url_for(user_id=str(user.id)),
            "back": request.app.router["people_user"].url_for(user_id=str(user.id)),
        },
    )


@admin
async def user_delete(request: web.Request) -> web.StreamResponse:
    """Delete an account, once confirmed."""
    accounts = keys.accounts(request.app)
    user = await accounts.get(user_id_param(request))
    done = await attempt(
        accounts.delete(user.id, actor=keys.require_user(request), ip=keys.client_ip(request))
    )
    if isinstance(done, FormError):
        return await _user_page(request, error=done.message, status=done.status)
    redirect_to(request, "people_users", f"The account {user.username} was deleted.", "success")


@admin
async def user_group_add(request: web.Request) -> web.StreamResponse:
    """Put the account in a group."""
    form = await form_fields(request)
    user_id = user_id_param(request)
    group_id = whole_number(form.get("group_id", ""), "group_id", "choose a group")
    group = await keys.groups(request.app).add_member(
        group_id, user_id, actor=keys.require_user(request).username, ip=keys.client_ip(request)
    )
    redirect_to(request, "people_user", f"Added to {group.name}.", "success", user_id=user_id)


# --- groups -----------------------------------------------------------------------------


async def _groups_page(request: web.Request, *, status: int = 200, **extra: Any) -> web.Response:
    context: dict[str, Any] = {
        "groups": await keys.groups(request.app).all(),
        "error": None,
        "form": {},
    }
    context.update(extra)
    return aiohttp_jinja2.render_template("people/groups.html", request, context, status=status)


@admin
async def groups_page(request: web.Request) -> web.StreamResponse:
    """Every group with its members; the form to add one."""
    return await _groups_page(request)


@admin
async def group_create(request: web.Request) -> web.StreamResponse:
    """Create a group."""
    form = await form_fields(request)
    group = await attempt(
        keys.groups(request.app).create(
            form.get("name", "")[:256],
            form.get("description", "")[:1024],
            actor=keys.require_user(request).username,
            ip=keys.client_ip(request),
        )
    )
    if isinstance(group, FormError):
        shown = {k: form.get(k, "")[:256] for k in ("name", "description")}
        return await _groups_page(request, error=group.message, status=group.status, form=shown)
    redirect_to(
        request, "people_group", f"Group {group.name} created.", "success", group_id=group.id
    )


async def _group_page(request: web.Request, *, status: int = 200, **extra: Any) -> web.Response:
    group = await keys.groups(request.app).get(group_id_param(request))
    subject = Subject(SubjectKind.GROUP, group.id)
    context = await _grant_form(
        request,
        group=group,
        subject=subject,
        grants=await keys.grants(request.app).find(subject=subject),
        error=None,
    )
    context.update(extra)
    return aiohttp_jinja2.render_template("people/group.html", request, context, status=status)


@admin
async def group_page(request: web.Request) -> web.StreamResponse:
    """One group: its members and its grants."""
    return await _group_page(request)


@admin
async def group_update(request: web.Request) -> web.StreamResponse:
    """Rename a group or change its description."""
    form = await form_fields(request)
    group_id = group_id_param(request)
    done = await attempt(
        keys.groups(request.app).update(
            group_id,
            name=form.get("name", "")[:256],
            description=form.get("description", "")[:1024],
            actor=keys.require_user(request).username,
            ip=keys.client_ip(request),
        )
    )
    if isinstance(done, FormError):
        return await _group_page(request, error=done.message, status=done.status)
    redirect_to(request, "people_group", "Saved.", "success", group_id=group_id)


@admin
async def group_member_add(request: web.Request) -> web.StreamResponse:
    """Put a user in the group."""
    form = await form_fields(request)
    group_id = group_id_param(request)
    user_id = whole_number(form.get("user_id", ""), "user_id", "choose a user")
    await keys.groups(request.app).add_member(
        group_id, user_id, actor=keys.require_user(request).username, ip=keys.client_ip(request)
    )
    redirect_to(request, "people_group", "Member added.", "success", group_id=group_id)


@admin
async def group_member_remove(request: web.Request) -> web.StreamResponse:
    """Take a user out of the group (from the group's page or the user's)."""
    form = await form_fields(request)
    group_id = group_id_param(request)
    await keys.groups(request.app).remove_member(
        group_id,
        user_id_param(request),
        actor=keys.require_user(request).username,
        ip=keys.client_ip(request),
    )
    back = request.app.router["people_group"].url_for(group_id=str(group_id))
    redirect(safe_next(form.get("next"), str(back)), "Member removed.", "success")


@admin
async def group_delete_page(request: web.Request) -> web.StreamResponse:
    """Ask before a group is deleted."""
    group = await keys.groups(request.app).get(group_id_param(request))
    grants = await keys.grants(request.app).find(subject=Subject(SubjectKind.GROUP, group.id))
    return aiohttp_jinja2.render_template(
        "people/confirm_delete.html",
        request,
        {
            "what": f"the group {group.name}",
            "consequences": [
                f"its {len(group.members)} member(s) lose what its {len(grants)} "
                "grant(s) gave them",
                "the accounts themselves stay",
            ],
            "action": request.app.router["people_group_delete"].url_for(group_id=str(group.id)),
            "back": request.app.router["people_group"].url_for(group_id=str(group.id)),
        },
    )


@admin
async def group_delete(request: web.Request) -> web.StreamResponse:
    """Delete a group, once confirmed."""
    groups = keys.groups(request.app)
    group = await groups.get(group_id_param(request))
    await groups.delete(
        group.id, actor=keys.require_user(request).username, ip=keys.client_ip(request)
    )
    redirect_to(request, "people_groups", f"The group {group.name} was deleted.", "success")


# --- grants -----------------------------------------------------------------------------


async def _grants_page(request: web.Request, *, status: int = 200, **extra: Any) -> web.Response:
    raw = request.query.get("object", "")
    obj = parse_object(raw) if raw else None
    context = await _grant_form(
        request,
        grants=await keys.grants(request.app).find(obj=obj),
        filtered=obj,
        subject=None,
        error=None,
    )
    context.update(extra)
    return aiohttp_jinja2.render_template("people/grants.html", request, context, status=status)


@admin
async def grants_page(request: web.Request) -> web.StreamResponse:
    """Every grant (``?object=`` for those on one object); the form to add one."""
    return await _grants_page(request)


@admin
async def grant_create(request: web.Request) -> web.StreamResponse:
    """Give a role on an object to a user or a group; back to the page the form was on."""
    form = await form_fields(request)
    back = safe_next(form.get("next"), str(request.app.router["people_grants"].url_for()))

    async def give() -> GrantRow:
        return await keys.grants(request.app).grant(
            Subject.parse(form.get("subject", "")[:64]),
            parse_object(form.get("object", "")[:128]),
            parse_role(form.get("role", "")[:32]),
            actor=keys.require_user(request).username,
            ip=keys.client_ip(request),
        )

    done = await attempt(give())
    if isinstance(done, FormError):
        redirect(back, f"Not granted: {done.message}", "error")
    redirect(back, "Granted.", "success")


@admin
async def grant_remove(request: web.Request) -> web.StreamResponse:
    """Take a grant back; back to the page the form was on."""
    form = await form_fields(request)
    back = safe_next(form.get("next"), str(request.app.router["people_grants"].url_for()))
    grant = await keys.grants(request.app).revoke(
        int_param(request, "grant_id"),
        actor=keys.require_user(request).username,
        ip=keys.client_ip(request),
    )
    redirect(
        back,
        f"{grant.subject_name} no longer has {grant.role} on {grant.object_name or grant.object}.",
        "success",
    )
