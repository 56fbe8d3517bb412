"""What every page's template can use."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep import __version__
from xenkeep.web import keys
from xenkeep.web.flash import read_flash


async def base_context(request: web.Request) -> dict[str, Any]:
    """The signed-in user and what they may do, CSRF token, appliance name,
    flash message."""
    user = keys.current_user(request)
    try:
        name = (await keys.identity(request.app).get()).name
    except KeyError:  # an error page rendered before start-up finished
        name = "XenKeep"
    return {
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
