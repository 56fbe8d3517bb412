"""The Pools page: registered pools, their state, the form to add one."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import FormError, attempt, form_fields

from .common import handle_form, owner, pool_id_param


async def _page(
    request: web.Request, *, error: str | None = None, status: int = 200, **form: str
) -> web.Response:
    manager = keys.pools(request.app)
    pools = await manager.pools()
    context = {
        "pools": [(p, manager.status(p.id)) for p in pools],
        "pending": manager.pending(owner(request)),
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
    pool = await attempt(handle_form(request, form))
    if isinstance(pool, FormError):
        return await _page(
            request,
            error=pool.message,
            status=pool.status,
            url=form.get("url", ""),
            username=form.get("username", "root"),
        )
    if pool is not None:
        redirect_to(request, "pools", f"Pool {pool.name} connected.", "success")
    redirect_to(request, "pools")


@admin
async def pools_remove_page(request: web.Request) -> web.StreamResponse:
    """Confirm removing a pool: what goes, and the backup jobs that use it."""
    pool = await keys.pools(request.app).get(pool_id_param(request))
    jobs = await keys.backup(request.app).jobs_of_pool(str(pool.id))
    return aiohttp_jinja2.render_template(
        "pools/remove.html", request, {"pool": pool, "jobs": jobs}
    )


@admin
async def pools_remove(request: web.Request) -> web.StreamResponse:
    """Disconnect and forget a pool."""
    manager = keys.pools(request.app)
    pool = await manager.get(pool_id_param(request))
    user = keys.require_user(request)
    await manager.remove(pool.id, actor=user.username, ip=keys.client_ip(request))
    redirect_to(request, "pools", f"Pool {pool.name} removed.", "success")
