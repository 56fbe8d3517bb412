"""What every page's template can use."""

from __future__ import annotations

import asyncio
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from xenkeep import __version__, units
from xenkeep.system.identity import DEFAULT_TIMEZONE
from xenkeep.web import keys
from xenkeep.web.flash import read_flash

#: The context key of the appliance's time zone (IANA name).
TIMEZONE = "appliance_timezone"


@jinja2.pass_context
def when(context: jinja2.runtime.Context, ts: float | None, seconds: bool = False) -> str:
    """Filter ``when``: a time in the appliance's zone, the zone named."""
    return units.local_time(ts, context.get(TIMEZONE, DEFAULT_TIMEZONE), seconds=seconds)


@jinja2.pass_context
def log_time(context: jinja2.runtime.Context, ts: float | None) -> str:
    """Filter ``log_time``: a log line's time in the appliance's zone."""
    return units.log_time(ts, context.get(TIMEZONE, DEFAULT_TIMEZONE))


def status_badge(status: object) -> Markup:
    """Filter ``status``: an operation's, task's or result's status as a
    coloured badge (success green, warning amber, failed red, ...)."""
    word = str(status or "")
    if not word:
        return Markup('<span class="status status-none">—</span>')
    # The class only: the row an item stands in carries its data-status.
    return Markup('<span class="status status-{0}">{1}</span>').format(word.lower(), word)


def power_badge(state: object) -> Markup:
    """Filter ``power``: a VM's power state (Running, Halted...) as a badge."""
    word = str(state or "unknown")
    return Markup('<span class="status power-{0}" data-power="{1}">{1}</span>').format(
        word.lower(), word
    )


async def appliance_timezone(request: web.Request) -> str:
    """The zone pages show times in, read from tzdata off the loop once."""
    zone = (await keys.identity(request.app).get()).timezone
    if not units.zone_loaded(zone):
        await asyncio.to_thread(units.load_zone, zone)
    return zone


async def base_context(request: web.Request) -> dict[str, Any]:
    """The signed-in user and what they may do, CSRF token, appliance name,
    flash message."""
    user = keys.current_user(request)
    try:
        name = (await keys.identity(request.app).get()).name
        zone = await appliance_timezone(request)
    except KeyError:  # an error page rendered before start-up finished
        name, zone = "XenKeep", DEFAULT_TIMEZONE
    return {
        TIMEZONE: zone,
        "current_user": user,
        # What the pages' links and buttons follow (the routes decide anyway).
        "principal": request.get("xk_principal"),
        "csrf_token": request.get("xk_csrf", ""),
        "appliance_name": name,
        "version": __version__,
        "flash": read_flash(request),
        "path": request.path,
        "path_qs": request.path_qs,
    }
