"""Our cookies: always Secure, HttpOnly and SameSite=Strict."""

from __future__ import annotations

from aiohttp import web

from xenkeep.auth.const import SESSION_COOKIE, SETUP_COOKIE


def set_cookie(response: web.StreamResponse, name: str, value: str) -> None:
    """Set a cookie only our own pages over HTTPS ever send back."""
    response.set_cookie(name, value, secure=True, httponly=True, samesite="Strict", path="/")


def set_session_cookie(response: web.StreamResponse, value: str) -> None:
    """Sign the browser in (the server enforces the session's expiry)."""
    set_cookie(response, SESSION_COOKIE, value)


def clear_auth_cookies(response: web.StreamResponse) -> None:
    """Forget the session and any setup session."""
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(SETUP_COOKIE, path="/")
