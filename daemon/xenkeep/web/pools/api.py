"""The pools JSON API under ``/api/v1/pools`` and the live event stream
``/api/v1/events`` the dashboard listens to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from xenkeep.auth.permissions import Action
from xenkeep.auth.places import Via
from xenkeep.pools.tree import pool_path
from xenkeep.web import keys
from xenkeep.web.access import admin, listing, needs
from xenkeep.web.forms import json_body, text_field
from xenkeep.web.middleware import principal_now
from xenkeep.web.sse import KEEPALIVE, KEEPALIVE_SECONDS, open_event_stream, sse_event

from .common import pool_id_param, pool_json, visible_overview

log = logging.getLogger(__name__)

#: Changes are gathered this long before the stream sends them.
COALESCE_SECONDS = 0.3


@listing
async def api_pools(request: web.Request) -> web.StreamResponse:
    """Every pool the caller may view, with its connection state."""
    manager = keys.pools(request.app)
    principal = keys.principal(request)
    pools = [p for p in await manager.pools() if principal.may(Action.VIEW, pool_path(p.uuid))]
    return web.json_response({"pools": [pool_json(p, manager.status(p.id)) for p in pools]})


@needs(Action.VIEW, Via.POOL_ID, match="pool_id")
async def api_pool(request: web.Request) -> web.StreamResponse:
    """One pool with its hosts, SRs and VMs."""
    manager = keys.pools(request.app)
    pool = await manager.get(pool_id_param(request))
    body = pool_json(pool, manager.status(pool.id))
    body.update(manager.summary(pool.id))
    body["name"] = pool.name
    return web.json_response(body)


@listing
async def api_overview(request: web.Request) -> web.StreamResponse:
    """Every pool with its hosts, SRs and VMs: what the dashboard shows, of
    what the caller may view."""
    return web.json_response(
        {"pools": await visible_overview(request.app, keys.principal(request))}
    )


@admin
async def api_pools_probe(request: web.Request) -> web.StreamResponse:
    """The certificate fingerprint of a pool, to confirm before adding it."""
    body = await json_body(request)
    probe = await keys.pools(request.app).probe(text_field(body, "url"))
    return web.json_response({"url": probe.url, "tls": probe.tls, "fingerprint": probe.fingerprint})


@admin
async def api_pools_add(request: web.Request) -> web.StreamResponse:
    """Register a pool: ``{url, username, password, fingerprint}``.

    ``fingerprint`` is the one the caller confirmed (from ``/pools/probe``);
    the connection is pinned to it, so a different certificate is refused.
    """
    body = await json_body(request)
    manager = keys.pools(request.app)
    user = keys.require_user(request)
    pool = await manager.add(
        text_field(body, "url"),
        text_field(body, "username"),
        text_field(body, "password"),
        text_field(body, "fingerprint", required=False),
        actor=user.username,
        ip=keys.client_ip(request),
    )
    return web.json_response({"pool": pool_json(pool, manager.status(pool.id))}, status=201)


@admin
async def api_pools_delete(request: web.Request) -> web.StreamResponse:
    """Disconnect and forget a pool."""
    user = keys.require_user(request)
    await keys.pools(request.app).remove(
        pool_id_param(request), actor=user.username, ip=keys.client_ip(request)
    )
    return web.json_response({"ok": True})


@listing
async def api_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``overview`` (every pool) first and after a resync,
    then ``pool`` (one pool's new state) and ``removed`` as things change.

    Only what the caller may view: each batch is cut for who they are at
    that moment (a grant taken back hides its objects from the next one), a
    pool nothing of which they see is sent as ``removed`` if it was shown,
    and the stream ends once their session or token has ended.
    """
    app = request.app
    sub = keys.pools(app).subscribe()
    response = await open_event_stream(request)

    async def visible() -> dict[str, dict[str, Any]] | None:
        principal = await principal_now(request)
        if principal is None:
            return None
        return {str(p["id"]): p for p in await visible_overview(app, principal)}

    try:
        await _follow(response, lambda seconds: asyncio.wait_for(sub.get(), seconds), visible)
    except ConnectionResetError:
        pass  # the browser went away: nothing to tell it
    finally:
        sub.close()
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def _follow(
    response: web.StreamResponse,
    next_change: Callable[[float], Awaitable[Any]],
    visible: Callable[[], Awaitable[dict[str, dict[str, Any]] | None]],
) -> None:
    """Send the overview, then what changes (``next_change(timeout)``; None
    once the pools stop), until ``visible`` says the caller may no longer
    see anything (None)."""
    current = await visible()
    if current is None:
        return
    await response.write(sse_event("overview", {"pools": list(current.values())}))
    #: The pools (ids) this stream has shown and not removed since.
    shown = set(current)
    while True:
        try:
            change = await next_change(KEEPALIVE_SECONDS)
        except TimeoutError:
            if await visible() is None:
                return
            await response.write(KEEPALIVE)
            continue
        if change is None:
            return
        dirty = {change.source}
        full = change.source == ""
        deadline = time.monotonic() + COALESCE_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                more = await next_change(left)
            except TimeoutError:
                break
            if more is None:
                break
            dirty.add(more.source)
            full = full or more.source == ""
        current = await visible()
        if current is None:
            return
        if full:
            await response.write(sse_event("overview", {"pools": list(current.values())}))
            shown = set(current)
            continue
        for source in sorted(dirty):
            if source in current:
                await response.write(sse_event("pool", current[source]))
                shown.add(source)
            elif source in shown:
                await response.write(sse_event("removed", {"id": int(source)}))
                shown.discard(source)
