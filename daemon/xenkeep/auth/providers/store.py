"""Saved sign-in providers: their settings (secrets encrypted), their group
mappings, the one-time state of redirect sign-ins and the replay cache."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from xenkeep.auth.errors import ProviderExistsError, ProviderNotFoundError
from xenkeep.auth.providers.base import ProviderKind, ProviderRecord
from xenkeep.auth.secrets import token_hash
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database
from xenkeep.store.db import Row

#: A redirect sign-in must come back within this long.
FLOW_SECONDS = 10 * 60


@dataclass(frozen=True, slots=True)
class GroupMapping:
    """A provider's group mapped to a XenKeep group."""

    id: int
    external_group: str
    group_id: int
    group_name: str


class ProviderStore:
    """SQL of ``auth_providers``, ``group_mappings``, ``auth_flows``, ``auth_replay``."""

    def __init__(
        self, db: Database, box: SecretBox, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._box = box
        self._clock = clock

    def _record(self, row: Row) -> ProviderRecord:
        enc = str(row["secrets_enc"])
        secrets: dict[str, str] = json.loads(self._box.decrypt(enc)) if enc else {}
        return ProviderRecord(
            id=int(row["id"]),
            kind=ProviderKind(row["kind"]),
            name=str(row["name"]),
            slug=str(row["slug"]),
            enabled=bool(row["enabled"]),
            is_default=bool(row["is_default"]),
            config=json.loads(row["config"]),
            secrets=secrets,
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
        )

    def _seal(self, secrets: Mapping[str, str]) -> str:
        return self._box.encrypt(json.dumps(dict(secrets), sort_keys=True)) if secrets else ""

    async def all(self) -> list[ProviderRecord]:
        """Every provider, the default first, then by name."""
        rows = await self._db.fetchall(
            "SELECT * FROM auth_providers ORDER BY is_default DESC, name"
        )
        return [self._record(r) for r in rows]

    async def get(self, provider_id: int) -> ProviderRecord:
        """One provider by id."""
        row = await self._db.fetchone("SELECT * FROM auth_providers WHERE id = ?", (provider_id,))
        if row is None:
            raise ProviderNotFoundError(f"no sign-in provider {provider_id}")
        return self._record(row)

    async def by_slug(self, slug: str) -> ProviderRecord:
        """One provider by the name it has in URLs."""
        row = await self._db.fetchone("SELECT * FROM auth_providers WHERE slug = ?", (slug,))
        if row is None:
            raise ProviderNotFoundError(f"no sign-in provider {slug[:64]!r}")
        return self._record(row)

    async def create(
        self,
        kind: ProviderKind,
        name: str,
        slug: str,
        *,
        enabled: bool,
        config: Mapping[str, Any],
        secrets: Mapping[str, str],
    ) -> int:
        """Save a new provider; ProviderExistsError when the name or slug is taken."""
        now = self._clock()
        try:
            return await self._db.insert(
                "INSERT INTO auth_providers (kind, name, slug, enabled, config, secrets_enc, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    str(kind),
                    name,
                    slug,
                    int(enabled),
                    json.dumps(dict(config), sort_keys=True),
                    self._seal(secrets),
                    now,
                    now,
                ),
            )
        except sqlite3.IntegrityError:
            raise ProviderExistsError(
                f"a sign-in provider named {name!r} (or {slug!r}) already exists",
                hint="choose another name",
            ) from None

    async def update(
        self,
        provider_id: int,
        *,
        name: str,
        enabled: bool,
        config: Mapping[str, Any],
        secrets: Mapping[str, str],
    ) -> None:
        """Change a provider's settings (its kind and slug stay)."""
        try:
            count = await self._db.execute(
                "UPDATE auth_providers SET name = ?, enabled = ?, config = ?, secrets_enc = ?, "
                "is_default = CASE WHEN ? THEN is_default ELSE 0 END, updated_at = ? "
                "WHERE id = ?",
                (
                    name,
                    int(enabled),
                    json.dumps(dict(config), sort_keys=True),
                    self._seal(secrets),
                    int(enabled),
                    self._clock(),
                    provider_id,
                ),
            )
        except sqlite3.IntegrityError:
            raise ProviderExistsError(
                f"a sign-in provider named {name!r} already exists", hint="choose another name"
            ) from None
        if not count:
            raise ProviderNotFoundError(f"no sign-in provider {provider_id}")

    async def set_default(self, provider_id: int | None) -> None:
        """Make one enabled provider the sign-in page's default (None: local accounts)."""
        async with self._db.transaction() as tx:
            await tx.execute("UPDATE auth_providers SET is_default = 0 WHERE is_default = 1")
            if provider_id is not None:
                count = await tx.execute(
                    "UPDATE auth_providers SET is_default = 1 WHERE id = ? AND enabled = 1",
                    (provider_id,),
                )
                if not count:
                    raise ProviderNotFoundError(
                        f"no enabled sign-in provider {provider_id} to make the default"
                    )

    async def delete(self, provider_id: int) -> int:
        """Remove a provider and the accounts it brought; how many accounts went."""
        async with self._db.transaction() as tx:
            users = await tx.execute("DELETE FROM users WHERE provider_id = ?", (provider_id,))
            count = await tx.execute("DELETE FROM auth_providers WHERE id = ?", (provider_id,))
            if not count:
                raise ProviderNotFoundError(f"no sign-in provider {provider_id}")
        return users

    async def user_count(self, provider_id: int) -> int:
        """How many accounts this provider brought."""
        row = await self._db.fetchone(
            "SELECT count(*) AS n FROM users WHERE provider_id = ?", (provider_id,)
        )
        return 0 if row is None else int(row["n"])

    async def setting(self, key: str) -> str | None:
        """An appliance setting of sign-in (the public address)."""
        return await self._db.get_setting(key)

    async def set_setting(self, key: str, value: str) -> None:
        """Change an appliance setting of sign-in."""
        await self._db.set_setting(key, value)

    # --- group mappings ------------------------------------------------------

    async def mappings(self, provider_id: int) -> list[GroupMapping]:
        """The provider's group mappings, by external group."""
        rows = await self._db.fetchall(
            "SELECT m.id, m.external_group, m.group_id, g.name FROM group_mappings m "
            "JOIN groups g ON g.id = m.group_id WHERE m.provider_id = ? "
            "ORDER BY m.external_group, g.name",
            (provider_id,),
        )
        return [
            GroupMapping(int(r["id"]), str(r["external_group"]), int(r["group_id"]), str(r["name"]))
            for r in rows
        ]

    async def set_mappings(self, provider_id: int, pairs: Iterable[tuple[str, int]]) -> None:
        """Replace the provider's mappings with ``(external group, group id)`` pairs."""
        wanted = sorted(set(pairs))
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM group_mappings WHERE provider_id = ?", (provider_id,))
            for external, group_id in wanted:
                await tx.execute(
                    "INSERT INTO group_mappings (provider_id, external_group, group_id) "
                    "VALUES (?, ?, ?)",
                    (provider_id, external, group_id),
                )

    async def group_ids(self, names: Iterable[str]) -> dict[str, int]:
        """XenKeep groups by name (case-insensitive), for mappings typed by name."""
        wanted = sorted({n.strip() for n in names if n.strip()})
        found: dict[str, int] = {}
        for name in wanted:
            row = await self._db.fetchone("SELECT id FROM groups WHERE name = ?", (name,))
            if row is not None:
                found[name.casefold()] = int(row["id"])
        return found

    # --- redirect flows and replays ------------------------------------------

    async def save_flow(self, provider_id: int, flow_id: str, data: Mapping[str, str]) -> None:
        """Keep a started redirect sign-in's state until its callback."""
        now = self._clock()
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM auth_flows WHERE created_at < ?", (now - FLOW_SECONDS,))
            await tx.execute(
                "INSERT INTO auth_flows (state_hash, provider_id, data_enc, created_at) "
                "VALUES (?, ?, ?, ?)",
                (token_hash(flow_id), provider_id, self._box.encrypt(json.dumps(dict(data))), now),
            )

    async def take_flow(self, provider_id: int, flow_id: str) -> dict[str, str] | None:
        """A flow's state, once: a second callback with the same state finds
        nothing (the row is deleted by the same statement that finds it)."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "DELETE FROM auth_flows WHERE state_hash = ? AND provider_id = ? "
                "RETURNING data_enc, created_at",
                (token_hash(flow_id), provider_id),
            )
        if row is None or self._clock() - float(row["created_at"]) > FLOW_SECONDS:
            return None
        data: dict[str, str] = json.loads(self._box.decrypt(str(row["data_enc"])))
        return data

    async def first_use(self, provider_id: int, token_id: str, expires_at: float) -> bool:
        """Record that an assertion or token was accepted; False if it was before."""
        now = self._clock()
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM auth_replay WHERE expires_at < ?", (now,))
            try:
                await tx.execute(
                    "INSERT INTO auth_replay (provider_id, token_id, expires_at) VALUES (?, ?, ?)",
                    (provider_id, token_id[:512], max(expires_at, now + 60)),
                )
            except sqlite3.IntegrityError:
                return False
        return True
