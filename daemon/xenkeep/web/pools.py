"""Pools: the Pools page, the wizard's "Connect a pool" step, their JSON API
and the live event stream the dashboard listens to.

Registering a pool takes two steps everywhere: first the URL and the
credentials, after which only the certificate's fingerprint is read and
shown; then the admin confirms it, and only then is the password sent, over
a connection pinned to that fingerprint (trust on first use).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.auth.const import Role
from xenkeep.errors import ValidationError
from xenkeep.pools.pool import Pending, Pool
from xenkeep.web import keys
from xenkeep.web.access import admin, viewer
from xenkeep.web.flash import redirect
from xenkeep.web.forms import FormError, attempt, form_fields, json_body, text_field
from xenkeep.web.sse import KEEPALIVE, KEEPALIVE_SECONDS, open_event_stream, sse_event
from xenkeep.web.wizard import Wizard, WizardStep

log = logging.getLogger(__name__)

#: The wizard step's name (its skipped flag is kept under it, see SetupState).
STEP_NAME = "pool"
#: Changes are gathered this long before the stream sends them.
COALESCE_SECONDS = 0.3


def pool_json(pool: Pool, status: Mapping[str, Any]) -> dict[str, Any]:
    """A pool as the API shows it: never the password."""
    return {
        "id": pool.id,
        "name": pool.name,
        "url": pool.url,
        "username": pool.username,
        "fingerprint": pool.fingerprint,
        "created_at": pool.created_at,
        "updated_at": pool.updated_at,
        "last_error": pool.last_error,
        "last_error_at": pool.last_error_at,
        "last_connected_at": pool.last_connected_at,
        "status": dict(status),
    }


def pending_json(pending: Pending) -> dict[str, Any]:
    """A staged registration (the fingerprint to confirm)."""
    return {
        "url": pending.url,
        "username": pending.username,
        "tls": pending.tls,
        "fingerprint": pending.fingerprint,
    }


def _pool_id(request: web.Request) -> int:
    try:
        return int(request.match_info["pool_id"])
    except ValueError:
        raise ValidationError("not a pool id", field="pool_id") from None


def _owner(request: web.Request) -> str:
    return f"user:{keys.require_user(request).id}"


async def _handle_form(request: web.Request, form: Mapping[str, str]) -> Pool | None:
    """The two-step registration form shared by the wizard and the Pools page.

    Returns the pool once saved; None while the fingerprint awaits confirmation.
    """
    manager = keys.pools(request.app)
    owner = _owner(request)
    action = form.get("action", "check")
    if action == "cancel":
        manager.discard(owner)
        return None
    if action == "confirm":
        pending = manager.pending(owner)
        if pending is not None and pending.tls and form.get("fingerprint") != pending.fingerprint:
            manager.discard(owner)
            raise ValidationError("the fingerprint changed while you were checking it; start again")
        return await manager.confirm(
            owner, actor=keys.require_user(request).username, ip=keys.client_ip(request)
        )
    await manager.stage(
        owner, form.get("url", ""), form.get("username", ""), form.get("password", "")
    )
    return None


# --- the wizard step -------------------------------------------------------------


async def _step_done(request: web.Request) -> bool:
    if await keys.setup_state(request.app).skipped(STEP_NAME):
        return True
    return bool(await keys.pools(request.app).pools())


async def _step_context(request: web.Request) -> dict[str, Any]:
    user = keys.current_user(request)
    pending = keys.pools(request.app).pending(_owner(request)) if user else None
    return {"pending": pending, "form_url": "", "form_username": "root"}


async def _step_submit(request: web.Request, form: Mapping[str, str]) -> None:
    if form.get("action") == "skip":
        keys.pools(request.app).discard(_owner(request))
        await keys.setup_state(request.app).skip(STEP_NAME)
        return
    # Until the fingerprint is confirmed the step is not done: the
    # wizard shows it again, now with the fingerprint to check.
    refused = await attempt(_handle_form(request, form))
    if isinstance(refused, FormError):
        # Pool trouble (unreachable, wrong password...) is shown on the form.
        raise ValidationError(refused.message, field=refused.field)


def register_pool_step(wizard: Wizard) -> None:
    """The wizard's "Connect a pool" step, between the appliance and the summary."""
    wizard.register(
        WizardStep(
            STEP_NAME,
            "Connect a pool",
            "pools/setup_step.html",
            True,
            _step_done,
            _step_context,
            _step_submit,
            order=50,
            skippable=True,
            description="URL, user and password of the pool master",
        )
    )


# --- the Pools page ----------------------------------------------------------------


async def _page(
    request: web.Request, *, error: str | None = None, status: int = 200, **form: str
) -> web.Response:
    manager = keys.pools(request.app)
    pools = await manager.pools()
    context = {
        "pools": [(p, manager.status(p.id)) for p in pools],
        "pending": manager.pending(_owner(request)),
        "error": error,
        "form_url": form.get("url", ""),
        "form_username": form.get("username", "root"),
    }
    return aiohttp_jinja2.render_template("pools/index.html", request, context, status=status)


@admin
async def pools_page(request: web.Request) -> web.StreamResponse:
    """Registered pools, their connection state, and the form to add one."""
    return await _page(request)


@admin
async def pools_submit(request: web.Request) -> web.StreamResponse:
    """Add a pool (check the fingerprint, then confirm), or cancel."""
    form = await form_fields(request)
    pool = await attempt(_handle_form(request, form))
    if isinstance(pool, FormError):
        return await _page(
            request,
            error=pool.message,
            status=pool.status,
            url=form.get("url", ""),
            username=form.get("username", "root"),
        )
    if pool is not None:
        redirect("/pools", f"Pool {pool.name} connected.", "success")
    redirect("/pools")


@admin
async def pools_remove(request: web.Request) -> web.StreamResponse:
    """Disconnect and forget a pool."""
    manager = keys.pools(request.app)
    pool = await manager.get(_pool_id(request))
    user = keys.require_user(request)
    await manager.remove(pool.id, actor=user.username, ip=keys.client_ip(request))
    redirect("/pools", f"Pool {pool.name} removed.", "success")


# --- JSON API ------------------------------------------------------------------------


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
    pool = await manager.get(_pool_id(request))
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
        _pool_id(request), actor=user.username, ip=keys.client_ip(request)
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


def can_see_pools(role: Role) -> bool:
    """Whether a role sees the pools on the dashboard."""
    return role in (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
