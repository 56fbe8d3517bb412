"""The provider store: secrets sealed, a flow's state used once, replays refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xenkeep.auth.errors import ProviderExistsError
from xenkeep.auth.providers.base import ProviderKind
from xenkeep.auth.providers.store import FLOW_SECONDS, ProviderStore
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


async def test_secrets_are_sealed_and_names_unique(db: Database, tmp_path: Path) -> None:
    store = ProviderStore(db, await box(tmp_path / "k"))
    pid = await store.create(
        ProviderKind.LDAP,
        "Corp",
        "corp",
        enabled=False,
        config={"url": "ldaps://x"},
        secrets={"bind_password": "hunter2-very-secret"},
    )
    raw = await db.fetchone("SELECT * FROM auth_providers WHERE id = ?", (pid,))
    assert raw is not None and "hunter2" not in str(dict(raw))
    record = await store.get(pid)
    assert record.secrets["bind_password"] == "hunter2-very-secret"
    assert "hunter2" not in repr(record)
    with pytest.raises(ProviderExistsError):
        await store.create(ProviderKind.LDAP, "corp", "other", enabled=False, config={}, secrets={})


async def test_a_flow_is_taken_once_and_expires(db: Database, tmp_path: Path) -> None:
    now = [1000.0]
    store = ProviderStore(db, await box(tmp_path / "k"), clock=lambda: now[0])
    pid = await store.create(ProviderKind.OIDC, "O", "o", enabled=True, config={}, secrets={})
    await store.save_flow(pid, "state-1", {"nonce": "n1"})
    assert await store.take_flow(pid, "state-1") == {"nonce": "n1"}
    assert await store.take_flow(pid, "state-1") is None
    await store.save_flow(pid, "state-2", {"nonce": "n2"})
    now[0] += FLOW_SECONDS + 1
    assert await store.take_flow(pid, "state-2") is None
    other = await store.create(ProviderKind.OIDC, "P", "p", enabled=True, config={}, secrets={})
    await store.save_flow(pid, "state-3", {})
    assert await store.take_flow(other, "state-3") is None


async def test_an_answer_is_accepted_once(db: Database, tmp_path: Path) -> None:
    now = [1000.0]
    store = ProviderStore(db, await box(tmp_path / "k"), clock=lambda: now[0])
    pid = await store.create(ProviderKind.SAML, "S", "s", enabled=True, config={}, secrets={})
    assert await store.first_use(pid, "assertion-1", 2000.0)
    assert not await store.first_use(pid, "assertion-1", 2000.0)
    now[0] = 5000.0  # long expired: forgotten, and by then refused by its own dates
    assert await store.first_use(pid, "assertion-1", 6000.0)
