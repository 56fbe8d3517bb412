"""Accounts a sign-in provider brings: found by subject, never by name;
new ones without rights; mapped groups synced, manual memberships kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xenkeep.auth.const import Role
from xenkeep.auth.errors import CredentialsRejectedError
from xenkeep.auth.external import ExternalAccounts, username_candidates
from xenkeep.auth.providers.base import ExternalIdentity, ProviderKind, ProviderRecord
from xenkeep.auth.providers.store import ProviderStore
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database, open_database


async def box(path: Path) -> SecretBox:
    """The appliance's box with its key read (file I/O: off the loop)."""
    secrets = SecretBox(path)
    await asyncio.to_thread(secrets.load)
    return secrets


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path / "x.db")
    yield database
    await database.close()


async def provider(db: Database, tmp_path: Path, slug: str = "corp") -> ProviderRecord:
    store = ProviderStore(db, await box(tmp_path / "secret.key"))
    provider_id = await store.create(
        ProviderKind.OIDC, slug.title(), slug, enabled=True, config={}, secrets={"k": "v"}
    )
    return await store.get(provider_id)


async def group(db: Database, name: str) -> int:
    return await db.insert("INSERT INTO groups (name, created_at) VALUES (?, 0)", (name,))


async def members(db: Database, user_id: int) -> set[tuple[str, str]]:
    rows = await db.fetchall(
        "SELECT g.name, m.source FROM group_members m JOIN groups g ON g.id = m.group_id "
        "WHERE m.user_id = ?",
        (user_id,),
    )
    return {(str(r["name"]), str(r["source"])) for r in rows}


async def test_first_sign_in_makes_an_account_without_rights(db: Database, tmp_path: Path) -> None:
    corp = await provider(db, tmp_path)
    accounts = ExternalAccounts(db, clock=lambda: 100.0)
    alice = ExternalIdentity("sub-1", "alice", "Alice A.", "alice@example.org")
    user, created = await accounts.sign_in(corp, alice)
    assert created
    assert (user.username, user.role, user.source) == ("alice", Role.USER, "oidc")
    assert await db.fetchone("SELECT 1 FROM grants") is None
    again, created = await accounts.sign_in(corp, alice)
    assert (again.id, created) == (user.id, False)


async def test_found_by_subject_not_by_name(db: Database, tmp_path: Path) -> None:
    """A name reassigned at the provider, or already local here, never
    reaches someone else's account."""
    corp = await provider(db, tmp_path)
    await db.insert("INSERT INTO users (username, role, created_at) VALUES ('alice', 'admin', 0)")
    accounts = ExternalAccounts(db)
    user, _ = await accounts.sign_in(corp, ExternalIdentity("sub-1", "alice"))
    assert user.username == "alice@corp" and user.role is Role.USER
    other, created = await accounts.sign_in(corp, ExternalIdentity("sub-2", "alice"))
    assert created and other.id != user.id and other.username == "alice@corp-2"
    renamed, _ = await accounts.sign_in(corp, ExternalIdentity("sub-1", "alicia", "New Name"))
    assert renamed.id == user.id and renamed.display_name == "New Name"


async def test_a_disabled_account_is_refused(db: Database, tmp_path: Path) -> None:
    corp = await provider(db, tmp_path)
    accounts = ExternalAccounts(db)
    user, _ = await accounts.sign_in(corp, ExternalIdentity("sub-1", "bob"))
    await db.execute("UPDATE users SET disabled = 1 WHERE id = ?", (user.id,))
    with pytest.raises(CredentialsRejectedError, match="disabled"):
        await accounts.sign_in(corp, ExternalIdentity("sub-1", "bob"))


async def test_mapped_groups_follow_the_provider_manual_ones_stay(
    db: Database, tmp_path: Path
) -> None:
    corp = await provider(db, tmp_path)
    store = ProviderStore(db, await box(tmp_path / "secret.key"))
    devs, ops, manual = await group(db, "devs"), await group(db, "ops"), await group(db, "m")
    await store.set_mappings(corp.id, [("cn=Developers,ou=g", devs), ("ops-team", ops)])
    accounts = ExternalAccounts(db)
    user, _ = await accounts.sign_in(
        corp, ExternalIdentity("s", "carol", groups=("CN=developers,ou=g", "unmapped"))
    )
    await db.insert(
        "INSERT INTO group_members (group_id, user_id, source, added_at) "
        "VALUES (?, ?, 'manual', 0)",
        (manual, user.id),
    )
    assert await members(db, user.id) == {("devs", "provider"), ("m", "manual")}
    await accounts.sign_in(corp, ExternalIdentity("s", "carol", groups=("ops-team",)))
    assert await members(db, user.id) == {("ops", "provider"), ("m", "manual")}
    await accounts.sign_in(corp, ExternalIdentity("s", "carol", groups=()))
    assert await members(db, user.id) == {("m", "manual")}


async def test_control_characters_and_huge_fields_do_not_reach_the_account(
    db: Database, tmp_path: Path
) -> None:
    corp = await provider(db, tmp_path)
    accounts = ExternalAccounts(db)
    user, _ = await accounts.sign_in(
        corp, ExternalIdentity("s", "eve\n\x1b[31m", "Eve\r\nInjected" + "x" * 5000, "e\x00@x")
    )
    assert user.username == "eve-31m"  # the escape sequence lost its control characters
    assert "\n" not in user.display_name and len(user.display_name) <= 128
    with pytest.raises(CredentialsRejectedError):
        await accounts.sign_in(corp, ExternalIdentity("", "nobody"))
    with pytest.raises(CredentialsRejectedError):
        await accounts.sign_in(corp, ExternalIdentity("x" * 600, "nobody"))


def test_username_candidates_are_valid_names() -> None:
    names = username_candidates(ExternalIdentity("s", "Jean Dupont/Admin"), "corp")
    assert names[0] == "Jean-Dupont-Admin" and names[1] == "Jean-Dupont-Admin@corp"
    assert username_candidates(ExternalIdentity("s", "///"), "corp")[0] == "user"
