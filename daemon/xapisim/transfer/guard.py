"""What every transfer request goes through: authentication, refs, its task, errors.

A request authenticates with a ``session_id`` (query or cookie) or HTTP
basic auth, which opens a session for this request only. ``guarded`` runs a
transfer handler with the request's ``task_id`` (if that task exists) and
turns its failures into what XAPI answers: the task fails with the error,
HANDLE_INVALID is a 404, any other XAPI error a 500 with the error list as
text, and a transfer cut short (fault, cancellation) leaves the connection
closed.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import XapiError
from ..pool import SimPool
from .meter import TransferAborted

log = logging.getLogger(__name__)

#: A transfer handler: the pool, the request and its task (or None).
TransferHandler = Callable[[SimPool, web.Request, str | None], Awaitable[web.StreamResponse]]


def unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="Unauthorized",
        headers={"WWW-Authenticate": 'Basic realm="xapi"'},
    )


def authenticate(pool: SimPool, request: web.Request) -> tuple[str, bool] | None:
    """The session for this request and whether it is a temporary one."""
    sid = request.query.get("session_id")
    if sid is None:
        sid = request.cookies.get("session_id")
    if sid is not None:
        try:
            return pool.check_session(sid), False
        except XapiError:
            return None
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            user, _, pwd = base64.b64decode(auth[6:]).decode().partition(":")
            return pool.login(user, pwd, "http-basic"), True
        except (XapiError, ValueError):
            return None
    return None


def resolve(pool: SimPool, cls: str, value: str | None) -> str:
    """A ref from a ``ref`` or ``uuid`` query value; HANDLE_INVALID otherwise."""
    if value is None:
        raise XapiError("HANDLE_INVALID", cls, "")
    if pool.db.cls_of.get(value) == cls:
        return value
    ref = pool.db.by_uuid.get(value)
    if ref is not None and pool.db.cls_of.get(ref) == cls:
        return ref
    raise XapiError("HANDLE_INVALID", cls, value)


def _task_of(pool: SimPool, request: web.Request) -> str | None:
    task = request.query.get("task_id")
    if task is not None and pool.db.exists("task", task):
        return task
    return None


def _error_response(e: XapiError, status: int = 500) -> web.Response:
    return web.Response(status=status, text="\n".join(e.description), content_type="text/plain")


async def guarded(
    pool: SimPool, request: web.Request, handler: TransferHandler
) -> web.StreamResponse:
    """Run ``handler`` for an authenticated request, answering errors as XAPI does."""
    auth = authenticate(pool, request)
    if auth is None:
        return unauthorized()
    session, temporary = auth
    task = _task_of(pool, request)
    try:
        return await handler(pool, request, task)
    except TransferAborted as e:
        log.info("%s aborted: %s", request.path, e)
        if task is not None and pool.db.get("task", task)["status"] == "pending":
            pool.tasks.task_failed(task, ["INTERNAL_ERROR", str(e)])
        # The connection is already cut; hand aiohttp something to discard.
        return e.response or web.Response(status=500, text=str(e))
    except XapiError as e:
        if task is not None:
            pool.tasks.task_failed(task, e.description)
        return _error_response(e, 404 if e.code == "HANDLE_INVALID" else 500)
    finally:
        if temporary and pool.db.exists("session", session):
            pool.db.destroy("session", session)


def route(
    pool: SimPool, handler: TransferHandler
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler running ``handler`` guarded, for one pool."""

    async def serve(request: web.Request) -> web.StreamResponse:
        return await guarded(pool, request, handler)

    return serve
