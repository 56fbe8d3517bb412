"""Post/Redirect/Get helpers: redirects that carry a one-shot message."""

from __future__ import annotations

import base64
import json
from typing import NoReturn

from aiohttp import web

FLASH_COOKIE = "xk_flash"


def redirect(location: str, message: str | None = None, category: str = "info") -> NoReturn:
    """Redirect (303, so the browser follows with GET), with a flash message."""
    response = web.HTTPSeeOther(location)
    if message:
        payload = json.dumps([category, message[:500]]).encode()
        response.set_cookie(
            FLASH_COOKIE,
            base64.urlsafe_b64encode(payload).decode(),
            secure=True,
            httponly=True,
            samesite="Strict",
            path="/",
        )
    raise response


def read_flash(request: web.Request) -> tuple[str, str] | None:
    """The flash message the previous response left, if any."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        category, message = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError):
        return None
    if category not in ("info", "success", "error"):
        category = "info"
    return str(category), str(message)


def redirect_to(
    request: web.Request,
    route: str,
    message: str | None = None,
    category: str = "info",
    **parts: str | int,
) -> NoReturn:
    """:func:`redirect` to a named route (``redirect_to(request, "operation", op_id=3)``)."""
    url = request.app.router[route].url_for(**{k: str(v) for k, v in parts.items()})
    redirect(str(url), message, category)
