"""Sign-in provider pages: signing in through one, and administering them."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from yarl import URL

from xenkeep.auth.errors import ProviderNotFoundError
from xenkeep.auth.providers.base import Callback, CheckResult, ProviderRecord
from xenkeep.errors import AuthenticationError, UnavailableError
from xenkeep.web import keys
from xenkeep.web.access import admin, csrf_exempt, public
from xenkeep.web.auth_providers.common import base_url, form_values, shown_config
from xenkeep.web.cookies import set_session_cookie
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import (
    MAX_PASSWORD_INPUT,
    MAX_USERNAME_INPUT,
    FormError,
    attempt,
    form_fields,
    int_param,
    limited,
    read_form,
    safe_next,
)

#: Longest value of any one field of an identity provider's callback (a
#: SAMLResponse is a signed XML document, base64; an OIDC code is short).
MAX_CALLBACK_FIELD = 256 * 1024


# --- signing in -----------------------------------------------------------


@public
async def provider_start(request: web.Request) -> web.StreamResponse:
    """Send the browser to the identity provider."""
    service = keys.providers(request.app)
    try:
        url = await service.start(
            request.match_info["slug"],
            await base_url(request),
            safe_next(request.query.get("next")),
            ip=keys.client_ip(request),
        )
    except (UnavailableError, ProviderNotFoundError) as exc:
        # Down, or unreachable: said on the sign-in page, where the other ways are.
        return await _login_again(request, exc.with_hint, exc.status)
    # Deliberately off the appliance (flash.redirect refuses that): the URL is
    # the identity provider's configured endpoint, never taken from the request.
    # Sent byte for byte (encoded=True): yarl would otherwise re-quote the query
    # (%2F becomes /), and a SAML request's signature covers the query as made.
    raise web.HTTPSeeOther(URL(url, encoded=True))


async def _callback(request: web.Request) -> Callback:
    params: dict[str, str] = dict(request.query)
    if request.method == "POST":
        form = await read_form(request)
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for name, value in params.items():
        limited(value, name[:32], MAX_CALLBACK_FIELD)
    return Callback(request.method, params)


@public
@csrf_exempt
async def provider_callback(request: web.Request) -> web.StreamResponse:
    """Where the identity provider sends the browser back (GET or, for SAML, POST).

    Cross-site by nature, so exempt from the CSRF check: what protects it is
    the one-time state of the flow this browser started. The new session is
    a new id (nothing the browser brought is kept: no fixation), and the
    answer is a page of ours that moves on itself: the session cookie is
    SameSite=Strict, so a redirect straight from the provider's navigation
    would arrive without it.
    """
    service = keys.providers(request.app)
    ip = keys.client_ip(request)
    try:
        finished = await service.finish(
            request.match_info["slug"], await _callback(request), await base_url(request), ip=ip
        )
    except (AuthenticationError, ProviderNotFoundError, UnavailableError) as exc:
        return await _login_again(request, exc.with_hint, exc.status)
    cookie = await keys.auth(request.app).create_session(
        finished.user, ip=ip, user_agent=request.headers.get("User-Agent", "")
    )
    response = aiohttp_jinja2.render_template(
        "auth_providers/continue.html", request, {"next": safe_next(finished.next_path)}
    )
    set_session_cookie(response, cookie)
    return response


async def _login_again(request: web.Request, error: str, status: int = 401) -> web.Response:
    return aiohttp_jinja2.render_template(
        "login.html",
        request,
        {
            "next": "/",
            "username": "",
            "error": error,
            "providers": await keys.providers(request.app).enabled(),
        },
        status=status,
    )


@public
async def provider_metadata(request: web.Request) -> web.StreamResponse:
    """A document the provider publishes (the SAML service provider's metadata)."""
    content_type, body = await keys.providers(request.app).metadata(
        request.match_info["slug"], await base_url(request)
    )
    return web.Response(body=body, content_type=content_type)


async def password_sign_in(
    request: web.Request, slug: str, form: dict[str, str]
) -> web.StreamResponse:
    """The sign-in form's answer when a password provider (LDAP) was chosen."""
    username = limited(form.get("username", ""), "username", MAX_USERNAME_INPUT)
    password = limited(form.get("password", ""), "password", MAX_PASSWORD_INPUT)
    ip = keys.client_ip(request)
    user = await keys.providers(request.app).password_sign_in(
        slug, username, password, await base_url(request), ip=ip
    )
    cookie = await keys.auth(request.app).create_session(
        user, ip=ip, user_agent=request.headers.get("User-Agent", "")
    )
    response = web.HTTPSeeOther(safe_next(form.get("next")))
    set_session_cookie(response, cookie)
    raise response


# --- administering ----------------------------------------------------------


async def _index_context(request: web.Request, **extra: Any) -> dict[str, Any]:
    service = keys.providers(request.app)
    records = await service.all()
    context: dict[str, Any] = {
        "providers": [(r, await service.user_count(r.id)) for r in records],
        "types": await keys.providers(request.app).types(),
        "public_url": await service.public_url(),
        "derived_url": await base_url(request),
        "error": None,
    }
    context.update(extra)
    return context


@admin
async def providers_page(request: web.Request) -> web.StreamResponse:
    """Every sign-in provider, and adding one."""
    return aiohttp_jinja2.render_template(
        "auth_providers/index.html", request, await _index_context(request)
    )


@admin
async def providers_settings(request: web.Request) -> web.StreamResponse:
    """The appliance's sign-in address and the default provider."""
    form = await form_fields(request)
    service = keys.providers(request.app)
    actor = keys.require_user(request).username
    ip = keys.client_ip(request)

    async def save() -> None:
        await service.set_public_url(form.get("public_url", ""), actor=actor, ip=ip)
        default = form.get("default", "")
        await service.set_default(int(default) if default.isdigit() else None, actor=actor, ip=ip)

    done = await attempt(save())
    if isinstance(done, FormError):
        context = await _index_context(request, error=done.message)
        return aiohttp_jinja2.render_template(
            "auth_providers/index.html", request, context, status=done.status
        )
    redirect_to(request, "auth_providers", "Sign-in settings saved.", "success")


async def _form_context(
    request: web.Request,
    *,
    kind: str,
    record: ProviderRecord | None,
    values: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    ptype = await keys.providers(request.app).provider_type(kind)
    service = keys.providers(request.app)
    shown: dict[str, Any] = {"name": "", "slug": "", "enabled": False}
    env = None
    if record is not None:
        shown = {"name": record.name, "slug": record.slug, "enabled": record.enabled}
        shown |= shown_config(record, ptype)
        env = service.env(record, await base_url(request))
    else:
        shown |= {f.name: f.default for f in ptype.fields}
    if values:
        shown |= {k: v for k, v in values.items() if k in shown}
    mappings = [] if record is None else await service.mappings(record.id)
    context: dict[str, Any] = {
        "ptype": ptype,
        "record": record,
        "values": shown,
        "env": env,
        "mappings_text": "\n".join(f"{m.external_group} = {m.group_name}" for m in mappings),
        "error": None,
        "field_error": None,
        "check": None,
        "test_user": "",
    }
    context.update(extra)
    return context


def _form(request: web.Request, context: dict[str, Any], status: int = 200) -> web.StreamResponse:
    return aiohttp_jinja2.render_template(
        "auth_providers/form.html", request, context, status=status
    )


@admin
async def provider_new(request: web.Request) -> web.StreamResponse:
    """The form for a new provider of a kind."""
    kind = request.query.get("kind", "")
    return _form(request, await _form_context(request, kind=kind, record=None))


@admin
async def provider_create(request: web.Request) -> web.StreamResponse:
    """Save a new provider."""
    form = await form_fields(request)
    kind = form.get("kind", "")
    ptype = await keys.providers(request.app).provider_type(kind)
    values = form_values(form, ptype)
    created = await attempt(
        keys.providers(request.app).create(
            kind, values, actor=keys.require_user(request).username, ip=keys.client_ip(request)
        )
    )
    if isinstance(created, FormError):
        context = await _form_context(
            request,
            kind=kind,
            record=None,
            values=values,
            error=created.message,
            field_error=created.field,
        )
        return _form(request, context, created.status)
    redirect_to(
        request,
        "auth_provider",
        f"{created.name} was added. Test it before you enable it.",
        "success",
        provider_id=created.id,
    )


@admin
async def provider_edit(request: web.Request) -> web.StreamResponse:
    """A provider's settings, mappings, test and removal."""
    record = await keys.providers(request.app).get(int_param(request, "provider_id"))
    return _form(request, await _form_context(request, kind=record.kind, record=record))


@admin
async def provider_update(request: web.Request) -> web.StreamResponse:
    """Save a provider's settings."""
    service = keys.providers(request.app)
    record = await service.get(int_param(request, "provider_id"))
    form = await form_fields(request)
    values = form_values(form, await keys.providers(request.app).provider_type(record.kind))
    saved = await attempt(
        service.update(
            record.id, values, actor=keys.require_user(request).username, ip=keys.client_ip(request)
        )
    )
    if isinstance(saved, FormError):
        context = await _form_context(
            request,
            kind=record.kind,
            record=record,
            values=values,
            error=saved.message,
            field_error=saved.field,
        )
        return _form(request, context, saved.status)
    redirect_to(request, "auth_provider", "Saved.", "success", provider_id=record.id)


@admin
async def provider_mappings(request: web.Request) -> web.StreamResponse:
    """Save a provider's group mappings."""
    service = keys.providers(request.app)
    record = await service.get(int_param(request, "provider_id"))
    form = await form_fields(request)
    text = limited(form.get("mappings", ""), "mappings", 64 * 1024)
    saved = await attempt(
        service.set_mappings_text(
            record.id, text, actor=keys.require_user(request).username, ip=keys.client_ip(request)
        )
    )
    if isinstance(saved, FormError):
        context = await _form_context(
            request, kind=record.kind, record=record, error=saved.message, mappings_text=text
        )
        return _form(request, context, saved.status)
    redirect_to(request, "auth_provider", "Group mappings saved.", "success", provider_id=record.id)


@admin
async def provider_test(request: web.Request) -> web.StreamResponse:
    """Test a provider's saved configuration (and look a user up, for LDAP)."""
    service = keys.providers(request.app)
    record = await service.get(int_param(request, "provider_id"))
    form = await form_fields(request)
    username = limited(form.get("username", ""), "username", MAX_USERNAME_INPUT)
    password = limited(form.get("password", ""), "password", MAX_PASSWORD_INPUT)
    result: CheckResult | FormError = await attempt(
        service.check(
            record.id,
            await base_url(request),
            username=username,
            password=password,
            actor=keys.require_user(request).username,
            ip=keys.client_ip(request),
        )
    )
    if isinstance(result, FormError):
        context = await _form_context(
            request, kind=record.kind, record=record, error=result.message, test_user=username
        )
        return _form(request, context, result.status)
    context = await _form_context(
        request, kind=record.kind, record=record, check=result, test_user=username
    )
    return _form(request, context)


@admin
async def provider_delete_page(request: web.Request) -> web.StreamResponse:
    """Ask before removing a provider: its accounts go with it."""
    service = keys.providers(request.app)
    record = await service.get(int_param(request, "provider_id"))
    return aiohttp_jinja2.render_template(
        "auth_providers/delete.html",
        request,
        {"record": record, "users": await service.user_count(record.id), "error": None},
    )


@admin
async def provider_delete(request: web.Request) -> web.StreamResponse:
    """Remove a provider once its name was typed to confirm."""
    service = keys.providers(request.app)
    record = await service.get(int_param(request, "provider_id"))
    form = await form_fields(request)
    users = await service.user_count(record.id)
    if users and form.get("confirm", "").strip() != record.name:
        return aiohttp_jinja2.render_template(
            "auth_providers/delete.html",
            request,
            {
                "record": record,
                "users": users,
                "error": f"type {record.name!r} to confirm: {users} accounts will be removed",
            },
            status=400,
        )
    removed = await service.delete(
        record.id, actor=keys.require_user(request).username, ip=keys.client_ip(request)
    )
    redirect_to(
        request,
        "auth_providers",
        f"{record.name} was removed" + (f", with {removed} accounts." if removed else "."),
        "success",
    )
