"""The JSON API under /api/v1: the same operations as the pages.

Errors come back as ``{"error": {"code", "message"}}`` (see middleware).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep import __version__
from xenkeep.auth.const import CSRF_COOKIE, SETUP_COOKIE
from xenkeep.auth.grants import parse_role
from xenkeep.auth.manager import User
from xenkeep.web import keys
from xenkeep.web.access import admin, public, signed_in, while_password_change
from xenkeep.web.account.common import token_json
from xenkeep.web.cookies import clear_auth_cookies, set_cookie, set_session_cookie
from xenkeep.web.forms import (
    MAX_PASSWORD_INPUT,
    MAX_USERNAME_INPUT,
    int_query,
    json_body,
    sign_in_fields,
    text_field,
    whole_number,
)


def user_json(user: User) -> dict[str, Any]:
    """A user as the API shows it (never a secret)."""
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "role": str(user.role),
        "source": user.source,
        "totp_enabled": user.totp_enabled,
        "disabled": user.disabled,
        "must_change_password": user.must_change_password,
        "last_sign_in": user.last_sign_in,
        "created_at": user.created_at,
    }


@public
async def health(request: web.Request) -> web.StreamResponse:
    """Liveness for load balancers, `make run` and the image tests."""
    return web.json_response({"status": "ok", "version": __version__})


@public
async def csrf(request: web.Request) -> web.StreamResponse:
    """The CSRF token to send as X-CSRF-Token (anonymous or session-bound)."""
    return web.json_response({"csrf_token": request["xk_csrf"]})


@public
async def setup_status(request: web.Request) -> web.StreamResponse:
    """Whether the wizard still has to run, and its steps."""
    wizard = keys.wizard(request.app)
    return web.json_response(
        {
            "setup_required": await keys.auth(request.app).setup_required(),
            "steps": await wizard.progress(request),
        }
    )


@public
async def setup_token(request: web.Request) -> web.StreamResponse:
    """Exchange the setup token for a setup session (cookie ``xk_setup``)."""
    body = await json_body(request)
    setup_id = await keys.auth(request.app).begin_setup(
        text_field(body, "token"), keys.client_ip(request)
    )
    response = web.json_response({"ok": True})
    set_cookie(response, SETUP_COOKIE, setup_id)
    return response


@public
async def setup_admin(request: web.Request) -> web.StreamResponse:
    """Create the first administrator and sign it in."""
    body = await json_body(request)
    auth = keys.auth(request.app)
    ip = keys.client_ip(request)
    password = text_field(body, "password", max_length=MAX_PASSWORD_INPUT)
    user = await auth.create_first_admin(
        request.cookies.get(SETUP_COOKIE),
        text_field(body, "username", max_length=MAX_USERNAME_INPUT),
        password,
        text_field(
            body, "confirm", required=False, default=password, max_length=MAX_PASSWORD_INPUT
        ),
        ip,
    )
    cookie = await auth.create_session(
        user, ip=ip, user_agent=request.headers.get("User-Agent", "")
    )
    session = await auth.load_session(cookie)
    assert session is not None
    response = web.json_response(
        {"user": user_json(user), "csrf_token": session.csrf_token}, status=201
    )
    set_session_cookie(response, cookie)
    response.del_cookie(SETUP_COOKIE, path="/")
    return response


@public
async def session_create(request: web.Request) -> web.StreamResponse:
    """Sign in: ``{"username", "password", "code"?}``."""
    body = await json_body(request)
    auth = keys.auth(request.app)
    ip = keys.client_ip(request)
    username, password, code = sign_in_fields(body)
    sign_in = await auth.authenticate(username, password, code, ip=ip)
    cookie = await auth.create_session(
        sign_in.user, ip=ip, user_agent=request.headers.get("User-Agent", "")
    )
    session = await auth.load_session(cookie)
    assert session is not None
    response = web.json_response(
        {
            "user": user_json(sign_in.user),
            "csrf_token": session.csrf_token,
            # A sign of an attack on the account, for the owner to see.
            "failed_sign_ins_since_last_visit": sign_in.failed_since_last_visit,
        }
    )
    set_session_cookie(response, cookie)
    response.del_cookie(CSRF_COOKIE, path="/")
    return response


@signed_in
@while_password_change
async def session_get(request: web.Request) -> web.StreamResponse:
    """Who is signed in, and the session's CSRF token."""
    return web.json_response(
        {"user": user_json(keys.require_user(request)), "csrf_token": request["xk_csrf"]}
    )


@signed_in
@while_password_change
async def session_delete(request: web.Request) -> web.StreamResponse:
    """Sign out this session."""
    session = keys.current_session(request)
    if session is not None:
        await keys.auth(request.app).end_session(session, ip=keys.client_ip(request))
    response = web.json_response({"ok": True})
    clear_auth_cookies(response)
    return response


@signed_in
async def sessions_delete_all(request: web.Request) -> web.StreamResponse:
    """Sign the user out everywhere."""
    count = await keys.auth(request.app).end_all_sessions(
        keys.require_user(request), ip=keys.client_ip(request)
    )
    response = web.json_response({"ended": count})
    clear_auth_cookies(response)
    return response


@signed_in
async def tokens_list(request: web.Request) -> web.StreamResponse:
    """The user's API tokens (never the tokens themselves)."""
    tokens = await keys.auth(request.app).list_api_tokens(keys.require_user(request))
    return web.json_response({"tokens": [token_json(t) for t in tokens]})


@signed_in
async def tokens_create(request: web.Request) -> web.StreamResponse:
    """Create an API token; the response is the only time it is shown.

    ``{"name", "max_role"?}``: with ``max_role`` (viewer, operator, admin)
    the token acts with at most that role on the objects its owner reaches,
    and on nothing appliance-wide; without it, with the owner's rights.
    """
    body = await json_body(request)
    cap = text_field(body, "max_role", required=False)
    token = await keys.auth(request.app).create_api_token(
        keys.require_user(request),
        text_field(body, "name", max_length=64),
        ip=keys.client_ip(request),
        max_role=parse_role(cap) if cap else None,
    )
    return web.json_response({"token": token}, status=201)


@signed_in
async def tokens_delete(request: web.Request) -> web.StreamResponse:
    """Revoke an API token."""
    token_id = whole_number(request.match_info["token_id"], "token_id", "not a token id")
    await keys.auth(request.app).revoke_api_token(
        keys.require_user(request), token_id, ip=keys.client_ip(request)
    )
    return web.json_response({"ok": True})


#: The most audit entries one request returns; older ones by ``before``.
MAX_AUDIT_PAGE = 500


@admin
async def audit_list(request: web.Request) -> web.StreamResponse:
    """Audit log entries, newest first, a page at a time: ``?limit=&before=``
    (``before`` is the ``next_before`` of the previous page)."""
    limit = min(max(int_query(request, "limit", 200), 1), MAX_AUDIT_PAGE)
    before = int_query(request, "before", 0) or None
    entries = await keys.audit(request.app).entries(limit + 1, before=before)
    more = len(entries) > limit
    entries = entries[:limit]
    return web.json_response(
        {"entries": entries, "next_before": entries[-1]["id"] if more else None}
    )


@admin
async def appliance_get(request: web.Request) -> web.StreamResponse:
    """The appliance name, time zone and certificate fingerprint."""
    ident = await keys.identity(request.app).get()
    return web.json_response(
        {
            "name": ident.name,
            "timezone": ident.timezone,
            "configured": ident.configured,
            "tls_fingerprint": keys.tls(request.app).fingerprint,
            "version": __version__,
        }
    )


@admin
async def appliance_put(request: web.Request) -> web.StreamResponse:
    """Change the appliance name and time zone."""
    body = await json_body(request)
    user = keys.require_user(request)
    ident = await keys.identity(request.app).set(
        text_field(body, "name"),
        text_field(body, "timezone"),
        actor=user.username,
        ip=keys.client_ip(request),
    )
    return web.json_response({"name": ident.name, "timezone": ident.timezone})
