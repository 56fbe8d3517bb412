"""A TOTP code is burnt atomically: two checks of one code at once accept it once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pyotp

from tests.support.web import make_settings
from xenkeep.auth import totp
from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import Role
from xenkeep.auth.manager import AuthManager
from xenkeep.store import open_database

PASSWORD = "a long enough passphrase"


async def test_one_code_checked_twice_at_once_is_accepted_once(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "xenkeep.db")
    try:
        auth = AuthManager(db, AuditLog(db), make_settings(tmp_path))
        user = await auth.create_user("alice", PASSWORD, Role.ADMIN)
        secret = totp.new_secret()
        gen = pyotp.TOTP(secret)
        await auth.enable_totp(user, secret, gen.now())
        code = gen.at(time.time() + 30)
        results = await asyncio.gather(*(auth.accept_totp(user.id, secret, code) for _ in range(4)))
        assert sorted(results) == [False, False, False, True]
        # An older step than the one burnt is refused too.
        assert not await auth.accept_totp(user.id, secret, gen.now())
    finally:
        await db.close()
