"""Checks of what an admin types to register a pool."""

from __future__ import annotations

from xenkeep.pools.const import MAX_FIELD
from xenkeep.pools.errors import PoolInputError
from xenkeep.xapi.client import normalize_url

#: Why a plain http:// pool is refused, for the admin who typed one.
PLAIN_HTTP_REFUSED = (
    "the pool URL must start with https://: over http:// the pool's password "
    "and every session would travel in clear (plain http is accepted only in "
    "development mode, for the simulator)"
)


def clean_field(value: str, name: str, label: str) -> str:
    """``value`` stripped; PoolInputError when empty, too long or with control characters."""
    text = value.strip()
    if not text:
        raise PoolInputError(f"{label} is required", field=name)
    if len(text) > MAX_FIELD or any(ord(c) < 32 for c in text):
        raise PoolInputError(f"{label} is not valid", field=name)
    return text


def require_password(password: str) -> None:
    """PoolInputError when no password was given."""
    if not password:
        raise PoolInputError("the password is required", field="password")


def pool_url(url: str, *, allow_http: bool) -> str:
    """``scheme://host[:port]`` of a pool master; PoolInputError (field ``url``)
    for what is not one, and for plain http unless ``allow_http``.

    Checked before anything is sent: the first request to a pool is the login
    that carries its password.
    """
    base = normalize_url(url)
    if base.startswith("http://") and not allow_http:
        raise PoolInputError(PLAIN_HTTP_REFUSED, field="url")
    return base
