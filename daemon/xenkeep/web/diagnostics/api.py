"""The diagnostics JSON API: results, a run, the bundle, the journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from xenkeep.web import keys
from xenkeep.web.access import support
from xenkeep.web.sse import KEEPALIVE_SECONDS, send_watch

from .common import log_query, send_bundle


@support
async def api_diagnostics(request: web.Request) -> web.StreamResponse:
    """The latest result of each check (id, status, value, remedy), the summary
    and the run in progress."""
    return web.json_response(await keys.diagnostics(request.app).view())


@support
async def api_diagnostics_run(request: web.Request) -> web.StreamResponse:
    """Run every check now; 202 with the operation's id."""
    op_id = await keys.diagnostics(request.app).start()
    return web.json_response({"operation_id": op_id}, status=202)


@support
async def api_diagnostics_bundle(request: web.Request) -> web.StreamResponse:
    """The support bundle (tar.gz), streamed."""
    return await send_bundle(request)


@support
async def api_logs(request: web.Request) -> web.StreamResponse:
    """Journal entries filtered by ``unit``, ``priority``, ``since``, ``until``
    and ``limit``; with ``follow=1`` server-sent events ``entries`` as they come."""
    query = await log_query(request)
    journal = keys.journal(request.app)
    if request.query.get("follow") in ("1", "true", "yes"):

        async def batches() -> AsyncIterator[list[dict[str, Any]] | None]:
            async for batch in journal.follow(query, keepalive=KEEPALIVE_SECONDS):
                yield None if batch is None else [e.as_dict() for e in batch]

        return await send_watch(request, "entries", batches())
    entries = await journal.read(query)
    return web.json_response(
        {
            "entries": [e.as_dict() for e in entries],
            "available": (await journal.unavailable()) is None,
            "unavailable": await journal.unavailable(),
        }
    )
