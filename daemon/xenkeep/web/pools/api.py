"""The pools JSON API under ``/api/v1/pools`` and the live event stream
``/api/v1/events`` the dashboard listens to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web

from xenkeep.web import keys
from xenkeep.web.access import admin, viewer
from xenkeep.web.forms import json_body, text_field
from xenkeep.web.sse import KEEPALIVE, KEEPALIVE_SECONDS, open_event_stream, sse_event

from .common import pool_id_param, pool_json

log = logging.getLogger(__name__)

#: Changes are gathered this long before the stream sends them.
COALESCE_SECONDS = 0.3


@viewer
async def api_pools(request: web.Request) -> web.StreamResponse:
    """Every pool with its connection state."""
    manager = keys.pools(request.app)
    pools = await manager.pools()
    return web.json_response({"pools": [pool_json(p, manager.status(p.id)) for p in pools]})


@viewer
async def api_pool(request: web.Request) -> web.StreamResponse:
    """One pool with its hosts, SRs and VMs."""
    manager = keys.pools(request.app)
    pool = await manager.get(pool_id_param(request))
    body = pool_json(pool, manager.status(pool.id))
    body.update(manager.summary(pool.id))
    body["name"] = pool.name
    return web.json_response(body)


@viewer
async def api_overview(request: web.Request) -> web.StreamResponse:
    """Every pool with its hosts, SRs and VMs: what the dashboard shows."""
    return web.json_response({"pools": await keys.pools(request.app).overview()})


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


@viewer
async def api_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``overview`` (every pool) first and after a resync,
    then ``pool`` (one pool's new state) and ``removed`` as things change."""
    manager = keys.pools(request.app)
    sub = manager.subscribe()
    response = await open_event_stream(request)
    try:
        await response.write(sse_event("overview", {"pools": await manager.overview()}))
        while True:
            try:
                change = await asyncio.wait_for(sub.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(KEEPALIVE)
                continue
            if change is None:
                break
            dirty = {change.source}
            full = change.source == ""
            deadline = time.monotonic() + COALESCE_SECONDS
            while (left := deadline - time.monotonic()) > 0:
                try:
                    more = await asyncio.wait_for(sub.get(), left)
                except TimeoutError:
                    break
                if more is None:
                    break
                dirty.add(more.source)
                full = full or more.source == ""
            if full:
                await response.write(sse_event("overview", {"pools": await manager.overview()}))
                continue
            current = {str(p["id"]): p for p in await manager.overview()}
            for source in sorted(dirty):
                if source in current:
                    await response.write(sse_event("pool", current[source]))
                else:
                    await response.write(sse_event("removed", {"id": int(source)}))
    finally:
        sub.close()
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
