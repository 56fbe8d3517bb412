"""The account JSON API under ``/api/v1/account``: the signed-in user's own
password, authenticator, recovery codes and sessions (their API tokens are
under ``/api/v1/tokens``)."""

from __future__ import annotations

from aiohttp import web

from xenkeep.web import keys
from xenkeep.web.access import signed_in, while_password_change
from xenkeep.web.api import user_json
from xenkeep.web.forms import MAX_PASSWORD_INPUT, json_body, text_field

from .common import account_facts, issuer, session_json, token_json


@signed_in
async def api_account(request: web.Request) -> web.StreamResponse:
    """Who the caller is, their groups, sessions, tokens and recovery codes left."""
    user = keys.require_user(request)
    facts = await account_facts(request, user)
    return web.json_response(
        {
            "user": user_json(user),
            "groups": facts["groups"],
            "sessions": [session_json(s) for s in facts["sessions"]],
            "tokens": [token_json(t) for t in facts["tokens"]],
            "recovery_codes_left": facts["recovery_codes_left"],
        }
    )


@signed_in
@while_password_change
async def api_account_password(request: web.Request) -> web.StreamResponse:
    """Change the password: ``{"old", "new", "confirm"}``; the other sessions end."""
    body = await json_body(request)
    new = text_field(body, "new", max_length=MAX_PASSWORD_INPUT)
    await keys.auth(request.app).change_password(
        keys.require_user(request),
        text_field(body, "old", max_length=MAX_PASSWORD_INPUT),
        new,
        text_field(body, "confirm", required=False, default=new, max_length=MAX_PASSWORD_INPUT),
        keep=keys.current_session(request),
        ip=keys.client_ip(request),
    )
    return web.json_response({"ok": True})


@signed_in
async def api_account_totp(request: web.Request) -> web.StreamResponse:
    """Begin enrolling an authenticator: the secret and its ``otpauth://`` URI
    (the same until confirmed)."""
    offer = await keys.enrolment(request.app).begin(
        keys.require_user(request), await issuer(request)
    )
    return web.json_response({"secret": offer.secret, "uri": offer.uri})


@signed_in
async def api_account_totp_confirm(request: web.Request) -> web.StreamResponse:
    """Switch two-factor sign-in on: ``{"code"}`` from the new authenticator,
    and ``"password"`` when it replaces one already enrolled."""
    body = await json_body(request)
    await keys.enrolment(request.app).confirm(
        keys.require_user(request),
        text_field(body, "code", max_length=32),
        password=text_field(body, "password", required=False, max_length=MAX_PASSWORD_INPUT),
        ip=keys.client_ip(request),
    )
    return web.json_response({"ok": True})


@signed_in
async def api_account_recovery_codes(request: web.Request) -> web.StreamResponse:
    """A new set of recovery codes (``{"password"}``); the answer is the only
    time they are shown, and the old set stops working."""
    body = await json_body(request)
    codes = await keys.auth(request.app).new_recovery_codes(
        keys.require_user(request),
        text_field(body, "password", max_length=MAX_PASSWORD_INPUT),
        ip=keys.client_ip(request),
    )
    return web.json_response({"codes": codes}, status=201)


@signed_in
async def api_account_sessions(request: web.Request) -> web.StreamResponse:
    """The caller's sessions: address, browser, when created and last seen."""
    auth = keys.auth(request.app)
    user = keys.require_user(request)
    sessions = await auth.list_sessions(user, keys.current_session(request))
    return web.json_response({"sessions": [session_json(s) for s in sessions]})


@signed_in
async def api_account_session_delete(request: web.Request) -> web.StreamResponse:
    """End one of the caller's sessions."""
    await keys.auth(request.app).revoke_session(
        keys.require_user(request), request.match_info["session_id"], ip=keys.client_ip(request)
    )
    return web.json_response({"ok": True})
