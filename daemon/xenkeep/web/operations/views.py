"""The operations pages: the list, and one page that renders any kind live."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import Action
from xenkeep.auth.places import Via
from xenkeep.web.access import listing, needs
from xenkeep.web.audit import audit
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import int_param

from .common import COLUMNS, DEFAULT_COLUMNS, KINDS, STATUSES, choices, ops_of, visible_to


def page_context(detail: dict[str, Any]) -> dict[str, Any]:
    """What the operation page needs to render ``detail``."""
    return {"op": detail, "columns": COLUMNS.get(detail["kind"], DEFAULT_COLUMNS)}


@listing
async def operations_page(request: web.Request) -> web.StreamResponse:
    """The recent operations of every kind the user may view."""
    ops = await ops_of(request).find(
        kinds=choices(request, "kind", KINDS),
        statuses=choices(request, "status", STATUSES),
        only=await visible_to(request),
        limit=100,
    )
    return aiohttp_jinja2.render_template(
        "operations/index.html", request, {"operations": ops, "kinds": sorted(KINDS)}
    )


async def _operation_page(request: web.Request, op_id: int) -> web.StreamResponse:
    detail = await ops_of(request).detail(op_id)
    return aiohttp_jinja2.render_template(
        "operations/operation.html", request, page_context(detail)
    )


@needs(Action.VIEW, Via.OPERATION, match="op_id")
async def operation_page(request: web.Request) -> web.StreamResponse:
    """Any operation: live progress, sub-tasks, log, report."""
    return await _operation_page(request, int_param(request, "op_id"))


@needs(Action.VIEW, Via.OPERATION, match="run_id")
async def run_page(request: web.Request) -> web.StreamResponse:
    """A backup run or restore: its operation's page."""
    return await _operation_page(request, int_param(request, "run_id"))


@needs(Action.RUN, Via.OPERATION, match="op_id")
async def operation_cancel(request: web.Request) -> web.StreamResponse:
    """Cancel from the operation's page."""
    op_id = int_param(request, "op_id")
    await ops_of(request).cancel(op_id)
    await audit(request, AuditEvent.OPERATION_CANCELLED, operation=op_id)
    redirect_to(request, "operation", "Cancel requested.", op_id=op_id)
