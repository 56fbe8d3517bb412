"""Checks of what an admin types to register a pool."""

from __future__ import annotations

from xenkeep.pools.const import MAX_FIELD
from xenkeep.pools.errors import PoolInputError


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
