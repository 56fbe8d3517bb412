"""The diagnostics pages: the checks with their remedies, the log view."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from xenkeep.system.journal import PRIORITIES
from xenkeep.web import keys
from xenkeep.web.access import support
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import FormError, attempt

from .common import log_query


@support
async def diagnostics_page(request: web.Request) -> web.StreamResponse:
    """Every check's latest result, worst first in the summary; run, logs, bundle."""
    view = await keys.diagnostics(request.app).view()
    ident = await keys.identity(request.app).get()
    return aiohttp_jinja2.render_template(
        "diagnostics/index.html", request, {**view, "timezone": ident.timezone}
    )


@support
async def diagnostics_run(request: web.Request) -> web.StreamResponse:
    """Start a run from the page and follow it on the operation's page."""
    started = await attempt(keys.diagnostics(request.app).start())
    if isinstance(started, FormError):
        redirect_to(request, "diagnostics", started.message, "error")
    redirect_to(request, "operation", op_id=started)


@support
async def logs_page(request: web.Request) -> web.StreamResponse:
    """The journal, filtered; the page follows new entries live with JavaScript."""
    query = await log_query(request, default_limit=200)
    journal = keys.journal(request.app)
    ident = await keys.identity(request.app).get()
    return aiohttp_jinja2.render_template(
        "diagnostics/logs.html",
        request,
        {
            "entries": await journal.read(query),
            "unavailable": await journal.unavailable(),
            "query": query,
            "form": dict(request.query),
            "priorities": list(enumerate(PRIORITIES)),
            "timezone": ident.timezone,
        },
    )
