"""The network and NTP settings under ``/api/v1/network``.

A change answers 202 with the checkpoint waiting for confirmation
(``pending``: its ``id``, ``summary``, ``deadline`` and ``seconds_left``);
``POST .../confirm`` with that id, sent to wherever the appliance answers
afterwards, keeps it; ``POST .../revert`` puts the previous settings back
at once; nothing at all puts them back when the time is over.
"""

from __future__ import annotations

from aiohttp import web

from xenkeep.errors import ValidationError
from xenkeep.system.helper_protocol import CONFIRM_SECONDS
from xenkeep.system.network import ADDRESS_CHANGE_DELAY
from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.forms import json_body, number_field, string_list, text_field

#: Long enough for an address and its prefix, a host name; far below abuse.
MAX_FIELD = 256


@admin
async def api_network(request: web.Request) -> web.StreamResponse:
    """``available``, and when it is: settings, live state, the change waiting, the last one."""
    service = keys.network(request.app)
    if not await service.is_available():
        return web.json_response({"available": False})
    return web.json_response({"available": True, **await service.show()})


@admin
async def api_network_put(request: web.Request) -> web.StreamResponse:
    """``{"mode": "dhcp"}`` or ``{"mode": "static", "address", "gateway", "dns": [...]}``,
    with an optional ``timeout`` (seconds to confirm)."""
    body = await json_body(request)
    service = keys.network(request.app)
    mode = text_field(body, "mode", max_length=16)
    timeout = number_field(body, "timeout", CONFIRM_SECONDS)
    actor, ip = keys.require_user(request).username, keys.client_ip(request)
    if mode == "dhcp":
        if set(body) - {"mode", "timeout"}:
            raise ValidationError("DHCP takes no address, gateway or DNS", field="mode")
        result = await service.set_dhcp(
            confirm_within=timeout, delay=ADDRESS_CHANGE_DELAY, actor=actor, ip=ip
        )
    elif mode == "static":
        result = await service.set_static(
            text_field(body, "address", max_length=MAX_FIELD),
            text_field(body, "gateway", required=False, max_length=MAX_FIELD),
            string_list(body, "dns", max_items=8),
            confirm_within=timeout,
            delay=ADDRESS_CHANGE_DELAY,
            actor=actor,
            ip=ip,
        )
    else:
        raise ValidationError('mode must be "dhcp" or "static"', field="mode")
    return web.json_response(result, status=202)


@admin
async def api_network_ntp_put(request: web.Request) -> web.StreamResponse:
    """``{"servers": [...]}`` (empty: the image's defaults), optional ``timeout``."""
    body = await json_body(request)
    result = await keys.network(request.app).set_ntp(
        string_list(body, "servers", max_items=8),
        confirm_within=number_field(body, "timeout", CONFIRM_SECONDS),
        actor=keys.require_user(request).username,
        ip=keys.client_ip(request),
    )
    return web.json_response(result, status=202)


async def _decide(request: web.Request, keep: bool) -> web.StreamResponse:
    checkpoint = text_field(await json_body(request), "checkpoint", max_length=64)
    service = keys.network(request.app)
    actor, ip = keys.require_user(request).username, keys.client_ip(request)
    if keep:
        via = keys.local_address(request)
        return web.json_response(await service.keep(checkpoint, actor=actor, ip=ip, via=via))
    return web.json_response(await service.revert(checkpoint, actor=actor, ip=ip))


@admin
async def api_network_confirm(request: web.Request) -> web.StreamResponse:
    """``{"checkpoint": id}``: keep the change waiting; the settings kept."""
    return await _decide(request, keep=True)


@admin
async def api_network_revert(request: web.Request) -> web.StreamResponse:
    """``{"checkpoint": id}``: the previous settings back now."""
    return await _decide(request, keep=False)
