"""session: logging out. Logging in is the dispatcher's (it needs no session)."""

from __future__ import annotations

from typing import Any

from ..pool import SimPool
from .registry import Registry

methods = Registry()


@methods.api("session.logout")
async def session_logout(pool: SimPool, session: str) -> Any:
    pool.db.destroy("session", session)
    return ""


@methods.api("session.local_logout")
async def session_local_logout(pool: SimPool, session: str) -> Any:
    return await session_logout(pool, session)
