"""The pools table on a real SQLite file: rows, last errors, a taken URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xenkeep.errors import ConflictError
from xenkeep.pools.errors import PoolExistsError
from xenkeep.pools.registry import PoolRegistry
from xenkeep.store import Database, open_database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path / "xenkeep.db")
    yield database
    await database.close()


async def test_rows_errors_and_a_taken_url(db: Database) -> None:
    registry = PoolRegistry(db)
    fields = {"url": "https://a.example", "username": "root", "fingerprint": "AA"}
    first = await registry.add(uuid="uuid-1", name="b-pool", password_enc="enc-1", **fields)
    second = await registry.add(
        uuid="",
        name="A-pool",
        url="https://b.example",
        username="root",
        password_enc="enc-2",
        fingerprint="",
    )
    assert [p.name for p in await registry.all()] == ["A-pool", "b-pool"]
    assert await registry.has_url("https://a.example")
    assert await registry.password_enc(first) == "enc-1"
    # A second registration of the same URL (a lost race past has_url) is a conflict.
    with pytest.raises(PoolExistsError) as info:
        await registry.add(uuid="", name="again", password_enc="enc-3", **fields)
    assert isinstance(info.value, ConflictError)
    # One pool is registered once, whatever URL reaches it.
    with pytest.raises(PoolExistsError):
        await registry.add(
            **{**fields, "url": "https://c.example"}, uuid="uuid-1", name="c", password_enc="enc-4"
        )
    with pytest.raises(PoolExistsError):
        await registry.record_uuid(second, "uuid-1")
    assert (await registry.has_uuid("uuid-1")).id == first  # type: ignore[union-attr]
    assert await registry.has_uuid("") is None
    await registry.record_uuid(second, "uuid-2")
    assert (await registry.get(second)).uuid == "uuid-2"  # type: ignore[union-attr]

    await registry.record_error(second, "x" * 5000)
    pool = await registry.get(second)
    assert pool is not None and len(pool.last_error) == 1000 and pool.last_error_at
    await registry.record_connected(second)
    pool = await registry.get(second)
    assert pool is not None and pool.last_error == "" and pool.last_connected_at

    await registry.remove(first)
    assert await registry.get(first) is None
    assert await registry.password_enc(first) is None
