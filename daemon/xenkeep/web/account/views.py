"""The account pages: overview, password, two-factor sign-in, recovery
codes, sessions and API tokens. Each acts on the signed-in user only."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.grants import parse_role
from xenkeep.errors import XenKeepError
from xenkeep.web import keys
from xenkeep.web.access import signed_in, while_password_change
from xenkeep.web.cookies import clear_auth_cookies
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import (
    MAX_PASSWORD_INPUT,
    FormError,
    attempt,
    form_fields,
    limited,
    whole_number,
)

from .common import account_facts, issuer


async def _account_page(request: web.Request, *, status: int = 200, **extra: Any) -> web.Response:
    user = keys.require_user(request)
    context: dict[str, Any] = {
        **await account_facts(request, user),
        "new_token": None,
        "new_codes": None,
        "error": None,
        "codes_error": None,
    }
    context.update(extra)
    return aiohttp_jinja2.render_template("account/index.html", request, context, status=status)


@signed_in
async def account_page(request: web.Request) -> web.StreamResponse:
    """The user's own account: password, two-factor, sessions, API tokens."""
    return await _account_page(request)


@signed_in
async def account_token_create(request: web.Request) -> web.StreamResponse:
    """Create an API token and show it, once."""
    user = keys.require_user(request)
    form = await form_fields(request)

    async def create() -> str:
        cap = form.get("max_role", "")
        return await keys.auth(request.app).create_api_token(
            user,
            form.get("name", "")[:256],
            ip=keys.client_ip(request),
            max_role=parse_role(cap) if cap else None,
        )

    token = await attempt(create())
    if isinstance(token, FormError):
        return await _account_page(request, error=token.message, status=token.status)
    return await _account_page(request, new_token=token)


@signed_in
async def account_token_revoke(request: web.Request) -> web.StreamResponse:
    """Revoke one of the user's API tokens."""
    token_id = whole_number(request.match_info["token_id"], "token_id", "not a token id")
    await keys.auth(request.app).revoke_api_token(
        keys.require_user(request), token_id, ip=keys.client_ip(request)
    )
    redirect_to(request, "account", "The API token was revoked.", "success")


@signed_in
async def account_session_revoke(request: web.Request) -> web.StreamResponse:
    """End one of the user's sessions (another browser, a forgotten one)."""
    await keys.auth(request.app).revoke_session(
        keys.require_user(request), request.match_info["session_id"], ip=keys.client_ip(request)
    )
    redirect_to(request, "account", "That session was signed out.", "success")


@signed_in
async def account_sign_out_all(request: web.Request) -> web.StreamResponse:
    """End every session of this user, this one included."""
    await keys.auth(request.app).end_all_sessions(
        keys.require_user(request), ip=keys.client_ip(request)
    )
    response = web.HTTPSeeOther("/login")
    clear_auth_cookies(response)
    raise response


@signed_in
async def account_recovery_codes(request: web.Request) -> web.StreamResponse:
    """Make a new set of recovery codes and show them, once."""
    form = await form_fields(request)
    codes = await attempt(
        keys.auth(request.app).new_recovery_codes(
            keys.require_user(request),
            limited(form.get("password", ""), "password", MAX_PASSWORD_INPUT),
            ip=keys.client_ip(request),
        )
    )
    if isinstance(codes, FormError):
        return await _account_page(request, codes_error=codes.message, status=codes.status)
    return await _account_page(request, new_codes=codes)


# --- the password ---------------------------------------------------------------------


def _password_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    return aiohttp_jinja2.render_template(
        "account/password.html", request, {"error": error}, status=status
    )


@signed_in
@while_password_change
async def account_password(request: web.Request) -> web.StreamResponse:
    """Change the password (the only page a temporary password opens)."""
    return _password_page(request)


@signed_in
@while_password_change
async def account_password_submit(request: web.Request) -> web.StreamResponse:
    """Change the password: the current one, the new one twice."""
    form = await form_fields(request)
    try:
        old, new, confirm = (
            limited(form.get(name, ""), name, MAX_PASSWORD_INPUT)
            for name in ("old", "new", "confirm")
        )
    except XenKeepError as exc:
        return _password_page(request, error=exc.message, status=exc.status)
    done = await attempt(
        keys.auth(request.app).change_password(
            keys.require_user(request),
            old,
            new,
            confirm,
            keep=keys.current_session(request),
            ip=keys.client_ip(request),
        )
    )
    if isinstance(done, FormError):
        return _password_page(request, error=done.message, status=done.status)
    redirect_to(
        request, "account", "Password changed; your other sessions were signed out.", "success"
    )


# --- two-factor sign-in ------------------------------------------------------------------


async def _totp_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    offer = await keys.enrolment(request.app).begin(
        keys.require_user(request), await issuer(request)
    )
    context = {"secret": offer.secret, "qr_svg": offer.qr_svg, "uri": offer.uri, "error": error}
    return aiohttp_jinja2.render_template("account/totp.html", request, context, status=status)


@signed_in
async def account_totp(request: web.Request) -> web.StreamResponse:
    """Enrol an authenticator, or replace the one enrolled."""
    return await _totp_page(request)


@signed_in
async def account_totp_submit(request: web.Request) -> web.StreamResponse:
    """Switch two-factor sign-in on with the first code of the new authenticator."""
    form = await form_fields(request)
    done = await attempt(
        keys.enrolment(request.app).confirm(
            keys.require_user(request),
            form.get("code", "")[:32],
            password=limited(form.get("password", ""), "password", MAX_PASSWORD_INPUT),
            ip=keys.client_ip(request),
        )
    )
    if isinstance(done, FormError):
        return await _totp_page(request, error=done.message, status=done.status)
    redirect_to(
        request, "account", "Two-factor sign-in is on with the new authenticator.", "success"
    )


@signed_in
async def account_ssh_key_create(request: web.Request) -> web.StreamResponse:
    """Add an SSH public key to the user's profile."""
    user = keys.require_user(request)
    form = await form_fields(request)
    made = await attempt(
        keys.ssh_keys(request.app).add(user.id, form.get("name", ""), form.get("key", ""))
    )
    if isinstance(made, FormError):
        return await _account_page(request, error=made.message, status=made.status)
    await keys.audit(request.app).record(
        AuditEvent.SSH_KEY_ADDED,
        username=user.username,
        ip=keys.client_ip(request),
        name=made.name,
        fingerprint=made.fingerprint,
    )
    redirect_to(request, "account", f"SSH key {made.name} added")


@signed_in
async def account_ssh_key_delete(request: web.Request) -> web.StreamResponse:
    """Remove one of the user's SSH keys."""
    user = keys.require_user(request)
    key_id = whole_number(request.match_info["key_id"], "key_id", "not a key id")
    await keys.ssh_keys(request.app).delete(user.id, key_id)
    await keys.audit(request.app).record(
        AuditEvent.SSH_KEY_REMOVED, username=user.username, ip=keys.client_ip(request), id=key_id
    )
    redirect_to(request, "account", "SSH key removed")
