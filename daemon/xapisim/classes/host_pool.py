"""pool and host: the calls beyond the generic accessors (``classes/generic.py``)."""

from __future__ import annotations

from typing import Any

from ..db import now
from ..pool import SimPool
from .registry import Registry

methods = Registry()


@methods.api("pool.get_master")
async def pool_get_master(pool: SimPool, _s: str, ref: Any) -> Any:
    return pool.db.get("pool", ref)["master"]


@methods.api("host.get_servertime")
async def host_get_servertime(pool: SimPool, _s: str, host: Any) -> Any:
    pool.db.get("host", host)
    return now(pool.faults.clock_skew())
