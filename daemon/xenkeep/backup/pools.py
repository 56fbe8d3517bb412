"""How the backup service reaches pools.

The service needs a logged-in client per registered pool and the pool's
name (for reports); :class:`PoolAccess` is that narrow contract, so the
service does not depend on how pools are registered. :class:`StaticPools`
serves fixed clients (tests, tools).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from xenkeep.errors import NotFoundError
from xenkeep.xapi.client import XapiClient


class PoolAccess(Protocol):
    """Clients of the registered pools, by pool id."""

    async def client(self, pool_id: str) -> XapiClient:
        """A client of the pool, or NotFoundError."""
        ...

    async def pool_name(self, pool_id: str) -> str:
        """The pool's display name."""
        ...

    async def pool_ids(self) -> list[str]:
        """Every registered pool."""
        ...


class StaticPools:
    """A fixed set of pools with already-built clients."""

    def __init__(self, clients: Mapping[str, tuple[str, XapiClient]]) -> None:
        self._clients = dict(clients)

    async def client(self, pool_id: str) -> XapiClient:
        try:
            return self._clients[pool_id][1]
        except KeyError:
            raise NotFoundError(f"no pool {pool_id}") from None

    async def pool_name(self, pool_id: str) -> str:
        try:
            return self._clients[pool_id][0]
        except KeyError:
            raise NotFoundError(f"no pool {pool_id}") from None

    async def pool_ids(self) -> list[str]:
        return list(self._clients)
