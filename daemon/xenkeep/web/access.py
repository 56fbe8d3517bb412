"""Declaring what each route requires.

Every handler carries an access level; the middleware refuses a route that
declares none, so a new route cannot be forgotten open (deny by default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from xenkeep.auth.const import Access

ACCESS_ATTR = "__xenkeep_access__"
CSRF_EXEMPT_ATTR = "__xenkeep_csrf_exempt__"
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def access(level: Access) -> Callable[[Handler], Handler]:
    """Mark a handler with the access level it requires."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, ACCESS_ATTR, level)
        return handler

    return mark


def access_of(handler: object) -> Access | None:
    """The declared access level of a handler, if any."""
    level = getattr(handler, ACCESS_ATTR, None)
    return level if isinstance(level, Access) else None


public = access(Access.PUBLIC)
signed_in = access(Access.SIGNED_IN)
viewer = access(Access.VIEWER)
operator = access(Access.OPERATOR)
admin = access(Access.ADMIN)


def csrf_exempt(handler: Handler) -> Handler:
    """Let a public handler take cross-site POSTs: only a sign-in provider's
    callback (a SAML IdP posts its response from its own origin), which is
    protected instead by its one-time state, never by a session."""
    setattr(handler, CSRF_EXEMPT_ATTR, True)
    return handler


def is_csrf_exempt(handler: object) -> bool:
    """True for a handler marked with :func:`csrf_exempt` (and public)."""
    return getattr(handler, CSRF_EXEMPT_ATTR, False) is True and access_of(handler) is Access.PUBLIC
