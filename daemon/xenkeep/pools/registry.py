"""The ``pools`` table: one row per registered pool, the password encrypted.

Only SQL lives here; encryption, connections and the audit log are the
manager's. The last connection error and time are written by the manager as
the pools' watchers report them, so the Pools page can show them after a
restart.
"""

from __future__ import annotations

import sqlite3
import time

from xenkeep.pools.const import MAX_ERROR
from xenkeep.pools.errors import PoolExistsError
from xenkeep.pools.pool import Pool
from xenkeep.store import Database


class PoolRegistry:
    """Rows of the ``pools`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def all(self) -> list[Pool]:
        """Every registered pool, by name."""
        rows = await self._db.fetchall("SELECT * FROM pools ORDER BY name COLLATE NOCASE, id")
        return [Pool.from_row(r) for r in rows]

    async def get(self, pool_id: int) -> Pool | None:
        """One pool, or None."""
        row = await self._db.fetchone("SELECT * FROM pools WHERE id = ?", (pool_id,))
        return None if row is None else Pool.from_row(row)

    async def has_url(self, url: str) -> bool:
        """True when a pool with this (normalized) URL is registered."""
        return await self._db.fetchone("SELECT id FROM pools WHERE url = ?", (url,)) is not None

    async def password_enc(self, pool_id: int) -> str | None:
        """The stored (encrypted) password of a pool, or None."""
        row = await self._db.fetchone("SELECT password_enc FROM pools WHERE id = ?", (pool_id,))
        return None if row is None else str(row["password_enc"])

    async def has_uuid(self, uuid: str) -> Pool | None:
        """The registration of the pool with this XAPI uuid, if any."""
        row = await self._db.fetchone("SELECT * FROM pools WHERE uuid = ? AND uuid != ''", (uuid,))
        return None if row is None else Pool.from_row(row)

    async def add(
        self,
        *,
        uuid: str,
        name: str,
        url: str,
        username: str,
        password_enc: str,
        fingerprint: str,
    ) -> int:
        """Insert a pool; PoolExistsError when its URL or its uuid is taken."""
        now = time.time()
        try:
            return await self._db.insert(
                "INSERT INTO pools (uuid, name, url, username, password_enc, fingerprint, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (uuid, name, url, username, password_enc, fingerprint, now, now),
            )
        except sqlite3.IntegrityError as exc:  # a UNIQUE url or uuid lost a race
            if "UNIQUE" in str(exc):
                raise PoolExistsError(f"{url} (pool {uuid}) is already connected") from None
            raise

    async def record_uuid(self, pool_id: int, uuid: str) -> None:
        """Keep the pool's XAPI uuid as its connection reports it."""
        try:
            await self._db.execute(
                "UPDATE pools SET uuid = ?, updated_at = ? WHERE id = ?",
                (uuid, time.time(), pool_id),
            )
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise PoolExistsError(
                    f"pool {uuid} is registered twice (under two URLs); remove one"
                ) from None
            raise

    async def remove(self, pool_id: int) -> None:
        """Forget a pool."""
        await self._db.execute("DELETE FROM pools WHERE id = ?", (pool_id,))

    async def record_error(self, pool_id: int, message: str) -> None:
        """Keep the pool's last connection error."""
        await self._db.execute(
            "UPDATE pools SET last_error = ?, last_error_at = ? WHERE id = ?",
            (message[:MAX_ERROR], time.time(), pool_id),
        )

    async def record_connected(self, pool_id: int) -> None:
        """The pool is connected: clear its error, keep the time."""
        await self._db.execute(
            "UPDATE pools SET last_connected_at = ?, last_error = '' WHERE id = ?",
            (time.time(), pool_id),
        )
