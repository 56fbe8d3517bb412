"""Post/Redirect/Get helpers: redirects that carry a one-shot message."""

from __future__ import annotations

import base64
import json
from typing import NoReturn
from urllib.parse import unquote, urlsplit, urlunsplit

from aiohttp import web

FLASH_COOKIE = "xk_flash"
_MAX_FLASH_MESSAGE = 500
# Base64 of a category and a message of at most _MAX_FLASH_MESSAGE characters,
# each of which JSON may write as up to twelve bytes (a surrogate pair of
# \uXXXX escapes).
_MAX_FLASH_COOKIE = 4 * (12 * _MAX_FLASH_MESSAGE + 64) // 3 + 4

# How many layers of percent-encoding we look through. A browser decodes at
# most one, but a proxy or a second redirect may decode another; a target
# still encoded after this many layers is refused rather than trusted.
_DECODE_LAYERS = 4


def _browser_safe(text: str) -> bool:
    """No character a browser's URL parser would drop or reinterpret.

    The WHATWG URL parser removes tab, CR and LF anywhere, strips leading
    C0 controls and spaces, and reads a backslash as a slash: each of these
    can turn a path we checked into ``//host``.
    """
    return not any(ch < " " or "\x7f" <= ch <= "\x9f" or ch == "\\" for ch in text)


def local_target(target: str | None) -> str | None:
    """``target`` if a browser will read it as a path of this appliance, else None.

    Checked as the browser will read it: the form sent must be printable
    ASCII (what a Location header carries as is), every decoded layer must
    be free of characters the URL parser rewrites and must not start with
    ``//`` (a scheme-relative URL naming another host), and the form sent
    must parse with no scheme and no host. The answer is rebuilt from the
    parsed parts, so what is sent is exactly what was checked.
    """
    if not target or not all("!" <= ch <= "~" for ch in target):
        return None
    layer = target
    for _ in range(_DECODE_LAYERS):
        if not _browser_safe(layer) or not layer.startswith("/") or layer.startswith("//"):
            return None
        decoded = unquote(layer)
        if decoded == layer:
            break
        layer = decoded
    else:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    return urlunsplit(("", "", parts.path, parts.query, parts.fragment))


def redirect(location: str, message: str | None = None, category: str = "info") -> NoReturn:
    """Redirect (303, so the browser follows with GET), with a flash message.

    Only to this appliance's own paths: every redirect the pages make goes
    through here, so an unchecked target is a programming error, not a
    redirect to somewhere else.
    """
    checked = local_target(location)
    if checked is None:
        raise ValueError(f"refusing to redirect off the appliance: {location!r}")
    response = web.HTTPSeeOther(checked)
    if message:
        payload = json.dumps([category, message[:_MAX_FLASH_MESSAGE]]).encode()
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
    # The cookie comes back from the browser, so anyone can forge it: what we
    # write is a short pair, and anything longer (a deeply nested array makes
    # the parser raise RecursionError) is ignored, not parsed.
    if not raw or len(raw) > _MAX_FLASH_COOKIE:
        return None
    try:
        category, message = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError, RecursionError):
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
