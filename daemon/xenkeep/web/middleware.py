"""Middlewares: errors, authentication, authorization, CSRF, headers.

Order (outermost first): security headers → errors → auth. So every error,
including an authorization refusal, is rendered by one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from xenkeep.auth.const import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    AuditEvent,
)
from xenkeep.auth.errors import PasswordChangeRequiredError
from xenkeep.auth.manager import Session, User
from xenkeep.auth.permissions import ObjectRole, Principal
from xenkeep.auth.secrets import random_token, same
from xenkeep.errors import (
    AuthenticationError,
    CsrfError,
    PermissionDeniedError,
    RateLimitedError,
    XenKeepError,
)
from xenkeep.web import keys
from xenkeep.web.access import (
    Need,
    allowed_while_password_change,
    authorize,
    is_csrf_exempt,
    permission_of,
)
from xenkeep.web.flash import FLASH_COOKIE, redirect_to
from xenkeep.web.forms import read_form
from xenkeep.web.templating import base_context

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def is_api(request: web.Request) -> bool:
    """True for the JSON API, which answers errors in JSON."""
    return request.path.startswith("/api/")


def error_payload(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON error envelope."""
    error: dict[str, Any] = {"code": code, "message": message}
    error.update({k: v for k, v in extra.items() if v is not None})
    return {"error": error}


async def _render_error(
    request: web.Request, status: int, code: str, message: str, **extra: Any
) -> web.Response:
    if is_api(request):
        response = web.json_response(error_payload(code, message, **extra), status=status)
    else:
        # Outside the template middleware: build the page context here.
        context = await base_context(request)
        context.update(
            {"status": status, "code": code, "message": message, "hint": extra.get("hint")}
        )
        response = aiohttp_jinja2.render_template("error.html", request, context, status=status)
    if isinstance(extra.get("retry_after"), int):
        response.headers["Retry-After"] = str(extra["retry_after"])
    return response


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every response."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(exc)
        raise
    _secure(response)
    return response


def _secure(response: web.StreamResponse) -> None:
    if response.prepared:
        return
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map the error tree (and stray exceptions) to pages or JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return await _render_error(
            request, exc.status, exc.reason.lower().replace(" ", "_"), exc.reason
        )
    except RateLimitedError as exc:
        return await _render_error(
            request, exc.status, exc.code, exc.message, retry_after=exc.retry_after
        )
    except XenKeepError as exc:
        if exc.status >= 500:
            log.error("%s: %s", request.path, exc.message)
        return await _render_error(
            request, exc.status, exc.code, exc.message, field=exc.field, hint=exc.hint
        )
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return await _render_error(
            request, 500, "internal_error", "something went wrong; the details are in the log"
        )


@dataclass(frozen=True, slots=True)
class _Identity:
    """Who the credentials of a request stand for."""

    user: User | None
    session: Session | None = None
    cap: ObjectRole | None = None
    via_token: bool = False


async def _identify(request: web.Request) -> _Identity:
    """The API token (API routes) or else the session cookie of a request."""
    auth = keys.auth(request.app)
    bearer = request.headers.get("Authorization", "")
    if is_api(request) and bearer.lower().startswith("bearer "):
        use = await auth.user_for_api_token(bearer[7:].strip())
        if use is None:
            return _Identity(None, via_token=True)
        return _Identity(use.user, cap=use.max_role, via_token=True)
    session = await auth.load_session(request.cookies.get(SESSION_COOKIE))
    return _Identity(session.user if session else None, session)


async def principal_now(request: web.Request) -> Principal | None:
    """For a long stream: who the request's credentials stand for now, with
    their grants as they are now; None once the session or token has ended
    (signed out, the account disabled or deleted)."""
    identity = await _identify(request)
    if identity.user is None or identity.user.must_change_password:
        return None
    return await keys.grants(request.app).principal(identity.user, identity.cap)


async def still_authorized(request: web.Request) -> bool:
    """For a long stream: whether the request would still be allowed now."""
    principal = await principal_now(request)
    permission = permission_of(request.match_info.handler)
    if principal is None or permission is None:
        return False
    try:
        await authorize(request, permission, principal, keys.places(request.app))
    except PermissionDeniedError:
        return False
    return True


async def _csrf_token_given(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await read_form(request)
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is asking, may they, and did the request come from our own pages.

    The one place requests are allowed or refused: every route's declared
    permission (see :mod:`xenkeep.web.access`) is checked here, before the
    CSRF token, so a refusal changes nothing whatever the request carries.
    """
    match_info = request.match_info
    if match_info.http_exception is not None:
        return await handler(request)
    resource = match_info.route.resource
    if isinstance(resource, web.StaticResource):
        return await handler(request)
    permission = permission_of(match_info.handler)
    if permission is None:
        log.error("route %s declares no permission; refusing", request.path)
        raise PermissionDeniedError("this page is not available")

    identity = await _identify(request)
    via_token = identity.via_token
    if via_token and identity.user is None:
        raise AuthenticationError("the API token is not valid")
    if identity.user is not None:
        request["xk_user"] = identity.user
    if identity.session is not None:
        request["xk_session"] = identity.session

    anon_csrf = request.cookies.get(CSRF_COOKIE) or ""
    new_anon_csrf = None
    if not anon_csrf:
        anon_csrf = new_anon_csrf = random_token()
    session = keys.current_session(request)
    request["xk_csrf"] = session.csrf_token if session else anon_csrf

    user = keys.current_user(request)
    principal = None
    if user is not None:
        principal = await keys.grants(request.app).principal(user, identity.cap)
        request["xk_principal"] = principal
    if permission.need is not Need.PUBLIC and user is None:
        if is_api(request):
            raise AuthenticationError("sign in first")
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
    if (
        user is not None
        and user.must_change_password
        and not allowed_while_password_change(match_info.handler)
    ):
        if is_api(request):
            raise PasswordChangeRequiredError(
                "you signed in with a temporary password: choose your own first",
                hint="PUT /api/v1/account/password with old, new and confirm",
            )
        redirect_to(request, "account_password")
    try:
        await authorize(request, permission, principal, keys.places(request.app))
    except PermissionDeniedError:
        await keys.audit(request.app).record(
            AuditEvent.PERMISSION_DENIED,
            username=user.username if user else "",
            ip=keys.client_ip(request),
            method=request.method,
            path=request.path,
        )
        raise

    if (
        request.method not in SAFE_METHODS
        and not via_token
        and not is_csrf_exempt(match_info.handler)
    ):
        expected = session.csrf_token if session else request.cookies.get(CSRF_COOKIE, "")
        given = await _csrf_token_given(request)
        if not expected or not given or not same(expected, given):
            await keys.audit(request.app).record(
                AuditEvent.CSRF_REJECTED,
                username=user.username if user else "",
                ip=keys.client_ip(request),
                path=request.path,
            )
            raise CsrfError(
                "the form was stale or did not come from this appliance; reload and try again"
            )

    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _finish(request, exc, new_anon_csrf)
        raise
    _finish(request, response, new_anon_csrf)
    return response


def _finish(request: web.Request, response: web.StreamResponse, new_csrf: str | None) -> None:
    if response.prepared:
        return
    if new_csrf:
        response.set_cookie(
            CSRF_COOKIE, new_csrf, secure=True, httponly=True, samesite="Strict", path="/"
        )
    # A rendered page has shown the flash message: drop it.
    if (
        request.cookies.get(FLASH_COOKIE)
        and FLASH_COOKIE not in response.cookies
        and response.status < 300
        and response.content_type == "text/html"
    ):
        response.del_cookie(FLASH_COOKIE, path="/")
