"""HTML pages other than the wizard, the account and people: sign-in,
dashboard, audit log, appliance settings."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep import __version__
from xenkeep.auth.permissions import Action
from xenkeep.errors import AuthenticationError, NotFoundError, UnavailableError, ValidationError
from xenkeep.system.identity import known_timezones
from xenkeep.web import keys
from xenkeep.web.access import admin, public, signed_in, while_password_change
from xenkeep.web.auth_providers.views import password_sign_in
from xenkeep.web.choices import replicas_for, vms_for
from xenkeep.web.cookies import clear_auth_cookies, set_session_cookie
from xenkeep.web.flash import redirect, redirect_to
from xenkeep.web.forms import (
    MAX_USERNAME_INPUT,
    FormError,
    attempt,
    form_fields,
    int_query,
    safe_next,
    sign_in_fields,
)


@public
async def login_page(request: web.Request) -> web.StreamResponse:
    """The sign-in form (or the wizard while no administrator exists)."""
    if await keys.auth(request.app).setup_required():
        redirect_to(request, "setup")
    if keys.current_user(request) is not None:
        redirect(safe_next(request.query.get("next")))
    return aiohttp_jinja2.render_template(
        "login.html",
        request,
        {
            "next": safe_next(request.query.get("next")),
            "username": "",
            "providers": await keys.providers(request.app).enabled(),
        },
    )


@public
async def login_submit(request: web.Request) -> web.StreamResponse:
    """Check the credentials and start a session."""
    form = await form_fields(request)
    auth = keys.auth(request.app)
    ip = keys.client_ip(request)
    target = safe_next(form.get("next"))
    provider = form.get("provider", "")
    try:
        if provider:
            # A directory (LDAP) account: its own door, the same form.
            return await password_sign_in(request, provider, form)
        # Bounded before anything is hashed, stored or logged.
        username, password, code = sign_in_fields({"username": "", "password": ""} | form)
        sign_in = await auth.authenticate(username, password, code, ip=ip)
    except (AuthenticationError, ValidationError, NotFoundError, UnavailableError) as exc:
        shown = form.get("username", "")
        return aiohttp_jinja2.render_template(
            "login.html",
            request,
            {
                "next": target,
                "username": shown if len(shown) <= MAX_USERNAME_INPUT else "",
                "error": exc.message + (f" ({exc.hint})" if exc.hint else ""),
                "providers": await keys.providers(request.app).enabled(),
                "chosen": provider,
            },
            status=exc.status,
        )
    cookie = await auth.create_session(
        sign_in.user, ip=ip, user_agent=request.headers.get("User-Agent", "")
    )
    failed = sign_in.failed_since_last_visit
    # The first page after sign-in tells the owner of an attack on the account.
    notice = f"{failed} failed sign-ins since your last visit." if failed else None
    if sign_in.user.must_change_password:
        # A temporary password opens nothing else (see the auth middleware).
        target = str(request.app.router["account_password"].url_for())
    try:
        redirect(target, notice, "error")
    except web.HTTPSeeOther as response:
        set_session_cookie(response, cookie)
        raise


@signed_in
@while_password_change
async def logout(request: web.Request) -> web.StreamResponse:
    """End this browser's session."""
    session = keys.current_session(request)
    if session is not None:
        await keys.auth(request.app).end_session(session, ip=keys.client_ip(request))
    response = web.HTTPSeeOther("/login")
    clear_auth_cookies(response)
    raise response


@signed_in
async def dashboard(request: web.Request) -> web.StreamResponse:
    """The home page."""
    if await keys.auth(request.app).setup_required():
        redirect_to(request, "setup")
    wizard = keys.wizard(request.app)
    principal = keys.principal(request)
    # Administrators and support staff see when a health check fails.
    health = await keys.diagnostics(request.app).summary() if principal.may_support else None
    # Each backed-up VM the user may see: last backup, age, result, and
    # whether its RPO is exceeded.
    backups: list[dict[str, Any]] = []
    late_replicas: list[dict[str, Any]] = []
    if principal.sees_objects:
        view = await keys.places(request.app).view()
        overview = await keys.backup(request.app).vm_overview()
        backups = vms_for(principal, view, overview, Action.VIEW)
        late = await keys.replication(request.app).rpo_exceeded()
        late_replicas = replicas_for(principal, view, late)
    context: dict[str, Any] = {
        "health": health,
        "backups": backups,
        "identity": await keys.identity(request.app).get(),
        "fingerprint": keys.tls(request.app).fingerprint,
        "version": __version__,
        # Once finished, the wizard stays finished: a pool removed later is
        # the Pools page's business, not a setup left undone.
        "wizard_pending": not await keys.setup_state(request.app).completed()
        and await wizard.current(request) is not None,
        # Replicas the user may view older than their job's schedule allows.
        "replica_rpo_exceeded": len(late_replicas),
    }
    return aiohttp_jinja2.render_template("dashboard.html", request, context)


#: Audit entries per page.
AUDIT_PAGE = 100


@admin
async def audit_page(request: web.Request) -> web.StreamResponse:
    """The security audit log."""
    before = int_query(request, "before", 0) or None
    entries = await keys.audit(request.app).entries(AUDIT_PAGE + 1, before=before)
    older = entries[AUDIT_PAGE - 1]["id"] if len(entries) > AUDIT_PAGE else None
    return aiohttp_jinja2.render_template(
        "audit.html",
        request,
        {"entries": entries[:AUDIT_PAGE], "older": older, "paged": before is not None},
    )


@admin
async def settings_page(request: web.Request) -> web.StreamResponse:
    """Appliance settings."""
    ident = await keys.identity(request.app).get()
    return aiohttp_jinja2.render_template(
        "settings.html",
        request,
        {"identity": ident, "timezones": known_timezones(), "error": None},
    )


@admin
async def settings_submit(request: web.Request) -> web.StreamResponse:
    """Change the appliance name and time zone."""
    form = await form_fields(request)
    user = keys.require_user(request)
    done = await attempt(
        keys.identity(request.app).set(
            form.get("name", ""),
            form.get("timezone", ""),
            actor=user.username,
            ip=keys.client_ip(request),
        )
    )
    if isinstance(done, FormError):
        ident = await keys.identity(request.app).get()
        return aiohttp_jinja2.render_template(
            "settings.html",
            request,
            {"identity": ident, "timezones": known_timezones(), "error": done.message},
            status=done.status,
        )
    redirect_to(request, "settings", "Settings saved.", "success")
