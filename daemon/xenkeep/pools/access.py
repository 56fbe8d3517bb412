"""How the job services (backup, replication) reach pools.

A service needs a logged-in client per registered pool and the pool's
name (for reports); :class:`PoolAccess` is that narrow contract, so the
service does not depend on how pools are registered. :class:`StaticPools`
serves fixed clients (tests, tools).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from xenkeep.errors import NotFoundError
from xenkeep.xapi.client import XapiClient

if TYPE_CHECKING:
    from xenkeep.pools.manager import PoolManager


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


class ManagedPools:
    """:class:`PoolAccess` over the daemon's PoolManager (one live client per pool)."""

    def __init__(self, manager: PoolManager) -> None:
        self._manager = manager

    @staticmethod
    def _id(pool_id: str) -> int:
        try:
            number = int(pool_id)
        except ValueError:
            raise NotFoundError(f"there is no pool {pool_id[:40]}") from None
        # Registration ids are SQLite integers: a larger number names no pool
        # (and SQLite would refuse to compare it at all).
        if not 0 < number < 2**63:
            raise NotFoundError(f"there is no pool {pool_id[:40]}")
        return number

    async def client(self, pool_id: str) -> XapiClient:
        return self._manager.connection(self._id(pool_id)).client

    async def pool_name(self, pool_id: str) -> str:
        return (await self._manager.get(self._id(pool_id))).name

    async def pool_ids(self) -> list[str]:
        return [str(p.id) for p in await self._manager.pools()]
