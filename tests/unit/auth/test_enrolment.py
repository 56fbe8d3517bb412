"""Two-factor enrolment: the waiting secret is encrypted at rest, a clear one
left by an older XenKeep is never enrolled, a code switches TOTP on."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

from tests.support.web import make_settings
from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import Role
from xenkeep.auth.enrolment import TOTP_PENDING_PREFIX, TotpEnrolment
from xenkeep.auth.errors import AuthError
from xenkeep.auth.manager import AuthManager, User
from xenkeep.errors import ValidationError
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database, open_database


@dataclass
class Setup:
    db: Database
    path: Path
    auth: AuthManager
    enrolment: TotpEnrolment
    user: User


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    path = tmp_path / "xenkeep.db"
    db = await open_database(path)
    auth = AuthManager(db, AuditLog(db), make_settings(tmp_path))
    user = await auth.create_user("alice", "a long enough passphrase", Role.ADMIN)
    box = SecretBox(tmp_path / "secret.key")
    await asyncio.to_thread(box.load)  # as the daemon does at start
    enrolment = TotpEnrolment(db, box, auth)
    yield Setup(db, path, auth, enrolment, user)
    await db.close()


def raw_setting(path: Path, key: str) -> str | None:
    """The row as a copy of the database file shows it (no key file)."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


async def test_the_waiting_secret_is_encrypted_at_rest(setup: Setup) -> None:
    offer = await setup.enrolment.begin(setup.user, "Site A")
    assert offer.uri.startswith("otpauth://") and offer.qr_svg.startswith("<svg")
    stored = raw_setting(setup.path, f"{TOTP_PENDING_PREFIX}{setup.user.id}")
    assert stored is not None and offer.secret not in stored
    # The page shown again offers the same secret (a scanned QR stays valid).
    assert (await setup.enrolment.begin(setup.user, "Site A")).secret == offer.secret


async def test_a_code_switches_totp_on(setup: Setup) -> None:
    offer = await setup.enrolment.begin(setup.user, "Site A")
    with pytest.raises(ValidationError):
        await setup.enrolment.confirm(setup.user, "000000")
    await setup.enrolment.confirm(setup.user, pyotp.TOTP(offer.secret).now())
    user = await setup.auth.get_user(setup.user.id)
    assert user is not None and user.totp_enabled
    assert await setup.enrolment.done(user)
    assert raw_setting(setup.path, f"{TOTP_PENDING_PREFIX}{user.id}") is None
    # Nothing waits any more: a second confirmation is refused.
    with pytest.raises(AuthError):
        await setup.enrolment.confirm(user, pyotp.TOTP(offer.secret).now())


async def test_a_clear_secret_from_an_older_version_is_replaced(setup: Setup) -> None:
    key = f"{TOTP_PENDING_PREFIX}{setup.user.id}"
    old = pyotp.random_base32()
    await setup.db.set_setting(key, old)
    # It may sit in a copy of the database: it is never enrolled...
    with pytest.raises(ValidationError, match="no enrolment"):
        await setup.enrolment.confirm(setup.user, pyotp.TOTP(old).now())
    assert raw_setting(setup.path, key) is None
    # ...and the page offers a new one, stored encrypted.
    offer = await setup.enrolment.begin(setup.user, "Site A")
    stored = raw_setting(setup.path, key)
    assert offer.secret != old and stored is not None and old not in stored
    assert offer.secret not in stored


async def test_skipping_counts_as_done(setup: Setup) -> None:
    assert not await setup.enrolment.done(setup.user)
    await setup.enrolment.skip(setup.user)
    assert await setup.enrolment.done(setup.user)
