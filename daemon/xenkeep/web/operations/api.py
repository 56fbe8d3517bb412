"""The operations JSON API: list, detail, event stream, cancel."""

from __future__ import annotations

from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import Action
from xenkeep.auth.places import Via
from xenkeep.web.access import listing, needs
from xenkeep.web.audit import audit
from xenkeep.web.forms import int_param, int_query
from xenkeep.web.middleware import still_authorized
from xenkeep.web.sse import KEEPALIVE_SECONDS, send_watch

from .common import KINDS, STATUSES, choices, ops_of, visible_to


@listing
async def api_operations(request: web.Request) -> web.StreamResponse:
    """Recent operations the caller may view, newest first, filtered by kind,
    status and target."""
    ops = await ops_of(request).find(
        kinds=choices(request, "kind", KINDS),
        statuses=choices(request, "status", STATUSES),
        target=request.query.get("target") or None,
        only=await visible_to(request),
        limit=int_query(request, "limit", 50),
    )
    return web.json_response({"operations": ops})


@needs(Action.VIEW, Via.OPERATION, match="op_id")
async def api_operation(request: web.Request) -> web.StreamResponse:
    """One operation with its sub-tasks and log lines (``?log_after=``)."""
    detail = await ops_of(request).detail(
        int_param(request, "op_id"), log_after=int_query(request, "log_after", 0)
    )
    return web.json_response(detail)


@needs(Action.VIEW, Via.OPERATION, match="op_id")
async def api_operation_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events ``operation`` after each change, until it has finished
    (or the caller may no longer see it)."""
    ops = ops_of(request)
    op_id = int_param(request, "op_id")
    after = int_query(request, "log_after", 0)
    await ops.get(op_id)  # 404 before the stream starts
    watch = ops.watch(op_id, log_after=after, keepalive=KEEPALIVE_SECONDS)
    return await send_watch(request, "operation", watch, lambda: still_authorized(request))


@needs(Action.RUN, Via.OPERATION, match="op_id")
async def api_operation_cancel(request: web.Request) -> web.StreamResponse:
    """Cancel a running operation of any kind."""
    op_id = int_param(request, "op_id")
    await ops_of(request).cancel(op_id)
    await audit(request, AuditEvent.OPERATION_CANCELLED, operation=op_id)
    return web.json_response({"ok": True}, status=202)
