"""network: creating and destroying networks (a network with VIFs or PIFs stays)."""

from __future__ import annotations

from typing import Any

from ..errors import XapiError
from ..model.records import record_arg
from ..pool import SimPool
from .registry import Registry

methods = Registry()


@methods.api("network.create")
async def network_create(pool: SimPool, _s: str, args: Any) -> Any:
    rec = record_arg("network", args)
    rec.setdefault("bridge", f"xapi{len(pool.db.refs('network'))}")
    rec.setdefault("MTU", 1500)
    return pool.db.create("network", rec)


@methods.api("network.destroy")
async def network_destroy(pool: SimPool, _s: str, net: Any) -> Any:
    pool.db.get("network", net)
    if pool.db.find("VIF", network=net) or pool.db.find("PIF", network=net):
        raise XapiError("NETWORK_CONTAINS_VIF", *pool.db.find("VIF", network=net))
    pool.db.destroy("network", net)
    return ""
