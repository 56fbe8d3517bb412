"""API tokens with a lifetime stop working after it and are then deleted."""

from __future__ import annotations

from pathlib import Path

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import Role
from xenkeep.auth.manager import AuthManager
from xenkeep.config import Settings
from xenkeep.store import open_database


async def test_a_token_with_a_lifetime_expires(tmp_path: Path, settings: Settings) -> None:
    now = [1_000_000.0]
    db = await open_database(tmp_path / "x.db")
    try:
        auth = AuthManager(db, AuditLog(db), settings, clock=lambda: now[0])
        user = await auth.create_user("ops", "a long enough passphrase", Role.ADMIN)
        short = await auth.create_api_token(user, "console: backup run", lifetime=3600)
        forever = await auth.create_api_token(user, "script")

        now[0] += 3599
        assert (await auth.user_for_api_token(short)) is not None
        now[0] += 2
        assert await auth.user_for_api_token(short) is None
        assert (await auth.user_for_api_token(forever)) is not None
        # The expired one is gone from the table, the other stays.
        assert [t.name for t in await auth.list_api_tokens(user)] == ["script"]
    finally:
        await db.close()
