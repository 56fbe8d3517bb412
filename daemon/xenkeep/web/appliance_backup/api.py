"""The appliance backup's JSON API under ``/api/v1/appliance-backup``."""

from __future__ import annotations

from aiohttp import web

from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.forms import json_body, text_field

from .common import owner, send_pool_dump


@admin
async def api_status(request: web.Request) -> web.StreamResponse:
    """Key (never the key itself), retention, copies, pool databases, recent copies."""
    return web.json_response(await keys.appliance_backup(request.app).status())


@admin
async def api_passphrase(request: web.Request) -> web.StreamResponse:
    """``{"passphrase", "confirm"}``: seal the copies from now on with it."""
    body = await json_body(request)
    user = keys.require_user(request)
    key = await keys.appliance_backup(request.app).set_passphrase(
        text_field(body, "passphrase", max_length=1024),
        text_field(body, "confirm", max_length=1024),
        actor=user.username,
        ip=keys.client_ip(request),
    )
    return web.json_response({"key": key})


@admin
async def api_recovery_key(request: web.Request) -> web.StreamResponse:
    """A new random key for the copies from now on, answered this once only."""
    user = keys.require_user(request)
    text = await keys.appliance_backup(request.app).create_recovery_key(
        actor=user.username, ip=keys.client_ip(request)
    )
    return web.json_response({"recovery_key": text}, status=201)


@admin
async def api_retention(request: web.Request) -> web.StreamResponse:
    """``{"retention": N}``: how many copies are kept."""
    body = await json_body(request)
    value = body.get("retention")
    user = keys.require_user(request)
    keep = await keys.appliance_backup(request.app).set_retention(
        str(value) if isinstance(value, int) and not isinstance(value, bool) else "x",
        actor=user.username,
        ip=keys.client_ip(request),
    )
    return web.json_response({"retention": keep})


@admin
async def api_run(request: web.Request) -> web.StreamResponse:
    """Write a copy now (configuration and pool databases): 202 and its operation."""
    op_id = await keys.appliance_backup(request.app).start_copy(trigger="manual")
    return web.json_response({"operation_id": op_id}, status=202)


@admin
async def api_copies(request: web.Request) -> web.StreamResponse:
    """The configuration copies in the backup storage, newest first."""
    return web.json_response({"copies": await keys.appliance_backup(request.app).copies()})


@admin
async def api_open(request: web.Request) -> web.StreamResponse:
    """``{"secret": passphrase or recovery key}``: check the whole copy and keep
    it ready for a restore; what it holds. Nothing changes."""
    body = await json_body(request)
    summary = await keys.appliance_backup(request.app).open_copy(
        owner(request),
        request.match_info["copy_id"],
        text_field(body, "secret", max_length=1024),
    )
    return web.json_response(summary)


@admin
async def api_restore(request: web.Request) -> web.StreamResponse:
    """``{"confirm": "RESTORE"}``: replace the configuration with the opened copy.
    Every session and token of the old accounts ends with it."""
    body = await json_body(request)
    user = keys.require_user(request)
    summary = await keys.appliance_backup(request.app).restore(
        owner(request),
        confirm=text_field(body, "confirm", max_length=64),
        actor=user.username,
        ip=keys.client_ip(request),
        where="api",
    )
    return web.json_response(summary)


@admin
async def api_pool_dump(request: web.Request) -> web.StreamResponse:
    """A pool database dump, decrypted, as XML."""
    return await send_pool_dump(request)
