"""The appliance's own backup page (``/backup/appliance``): its key, its copies,
the pools' databases, and restoring a copy over this appliance's configuration."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import FormError, attempt, form_fields

from .common import owner, send_pool_dump


async def _page(
    request: web.Request,
    *,
    error: str | None = None,
    error_section: str = "",
    status: int = 200,
    recovery_key: str = "",
) -> web.Response:
    service = keys.appliance_backup(request.app)
    context: dict[str, Any] = {
        "status": await service.status(),
        "opened": await service.opened(owner(request)),
        "error": error,
        "error_section": error_section,
        "recovery_key": recovery_key,
        "restore_word": "RESTORE",
    }
    return aiohttp_jinja2.render_template(
        "appliance_backup/index.html", request, context, status=status
    )


async def _submit(
    request: web.Request, section: str, work: Awaitable[Any], message: str
) -> web.StreamResponse:
    done = await attempt(work)
    if isinstance(done, FormError):
        return await _page(request, error=done.message, error_section=section, status=done.status)
    redirect_to(request, "appliance_backup", message, "success")


@admin
async def appliance_backup_page(request: web.Request) -> web.StreamResponse:
    """The appliance's own backup: key, copies, pool databases, restore."""
    return await _page(request)


@admin
async def passphrase_submit(request: web.Request) -> web.StreamResponse:
    """Seal the copies from now on with a key derived from a passphrase."""
    form = await form_fields(request)
    user = keys.require_user(request)
    work = keys.appliance_backup(request.app).set_passphrase(
        form.get("passphrase", ""),
        form.get("confirm", ""),
        actor=user.username,
        ip=keys.client_ip(request),
    )
    return await _submit(
        request,
        "key",
        work,
        "Passphrase set: the copies from now on need it to be restored. Keep it safe.",
    )


@admin
async def recovery_key_submit(request: web.Request) -> web.StreamResponse:
    """Seal the copies from now on with a new random key, shown on this page only."""
    user = keys.require_user(request)
    text = await keys.appliance_backup(request.app).create_recovery_key(
        actor=user.username, ip=keys.client_ip(request)
    )
    # Rendered, not redirected: the key is shown once and never stored in clear.
    return await _page(request, recovery_key=text)


@admin
async def retention_submit(request: web.Request) -> web.StreamResponse:
    """How many copies are kept."""
    form = await form_fields(request)
    user = keys.require_user(request)
    work = keys.appliance_backup(request.app).set_retention(
        form.get("retention", ""), actor=user.username, ip=keys.client_ip(request)
    )
    return await _submit(request, "retention", work, "Retention saved.")


@admin
async def run_submit(request: web.Request) -> web.StreamResponse:
    """Write a copy now (configuration and pool databases); its progress page."""
    op_id = await attempt(keys.appliance_backup(request.app).start_copy(trigger="manual"))
    if isinstance(op_id, FormError):
        return await _page(
            request, error=op_id.message, error_section="copies", status=op_id.status
        )
    redirect_to(request, "operation", op_id=op_id)


@admin
async def open_submit(request: web.Request) -> web.StreamResponse:
    """Open a copy with its passphrase: checked whole, what it holds shown."""
    form = await form_fields(request)
    work = keys.appliance_backup(request.app).open_copy(
        owner(request), form.get("copy", ""), form.get("secret", "")
    )
    done = await attempt(work)
    if isinstance(done, FormError):
        return await _page(request, error=done.message, error_section="restore", status=done.status)
    return await _page(request)


@admin
async def discard_submit(request: web.Request) -> web.StreamResponse:
    """Close the opened copy without restoring it."""
    await keys.appliance_backup(request.app).discard(owner(request))
    redirect_to(request, "appliance_backup", "The copy was closed; nothing changed.")


@admin
async def restore_submit(request: web.Request) -> web.StreamResponse:
    """Replace this appliance's configuration with the opened copy (typed confirmation)."""
    form = await form_fields(request)
    user = keys.require_user(request)
    work = keys.appliance_backup(request.app).restore(
        owner(request),
        confirm=form.get("confirm", ""),
        actor=user.username,
        ip=keys.client_ip(request),
        where="storage page",
    )
    summary = await attempt(work)
    if isinstance(summary, FormError):
        return await _page(
            request, error=summary.message, error_section="restore", status=summary.status
        )
    redirect_to(
        request,
        "login",
        f"The configuration of {summary['appliance']} is restored. Every session ended: "
        "sign in with an account of that configuration.",
        "success",
    )


@admin
async def pool_dump_download(request: web.Request) -> web.StreamResponse:
    """A pool database dump, decrypted, as XML."""
    return await send_pool_dump(request)
