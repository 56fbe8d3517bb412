"""The pool manager with a real database and the simulator: registration,
reconnection across daemon restarts, last errors kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.integration.pools.listener import CountingListener, listener
from tests.integration.xapi.simfixtures import demo_state, sim
from xapisim import RunningSimulator, start_simulator
from xenkeep.errors import ConflictError, NotFoundError, ValidationError
from xenkeep.pools.errors import PoolInputError
from xenkeep.pools.manager import PoolManager
from xenkeep.pools.registry import PoolRegistry
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database, open_database
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiAuthenticationError

__all__ = ["demo_state", "listener", "sim"]

WAIT = 30.0


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path / "xenkeep.db")
    yield database
    await database.close()


async def make_manager(db: Database, tmp_path: Path, *, allow_http: bool = True) -> PoolManager:
    """A manager as the daemon builds it; plain http allowed (as in
    development mode) unless told, because the simulator speaks http."""
    box = SecretBox(tmp_path / "secret.key")
    await asyncio.to_thread(box.load)  # as the daemon does at start
    return PoolManager(
        PoolRegistry(db), box, poll_seconds=1.0, backoff_max=0.2, allow_http=allow_http
    )


async def until(predicate: object) -> None:
    for _ in range(int(WAIT * 20)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never met")


async def test_add_reconnect_and_remember_errors(
    db: Database, tmp_path: Path, sim: RunningSimulator
) -> None:
    manager = await make_manager(db, tmp_path)
    await manager.start()
    try:
        with pytest.raises(XapiAuthenticationError):
            await manager.add(sim.url, "root", "nope")
        with pytest.raises(ValidationError):
            await manager.add(sim.url, "", "demo")
        pool = await manager.add(sim.url, "root", "demo")
        with pytest.raises(ConflictError):
            await manager.add(sim.url.rstrip("/"), "root", "demo")
        await until(lambda: manager.status(pool.id)["synced"])
        assert manager.summary(pool.id)["name"] == pool.name
    finally:
        await manager.close()

    # A new daemon: the pool is reconnected with the stored (encrypted) password.
    manager = await make_manager(db, tmp_path)
    await manager.start()
    restarted: RunningSimulator | None = None
    try:
        await until(lambda: manager.status(pool.id)["state"] == "connected")
        state, port = sim.state_dir, sim.port
        await sim.close()
        await until(lambda: manager.status(pool.id)["state"] == "reconnecting")
        for _ in range(int(WAIT * 20)):
            stored = await manager.get(pool.id)
            if stored.last_error:
                break
            await asyncio.sleep(0.05)
        assert "cannot talk to" in stored.last_error and stored.last_error_at
        restarted = await start_simulator(state, "127.0.0.1", port)
        await until(lambda: manager.status(pool.id)["state"] == "connected")
        await manager.remove(pool.id)
        with pytest.raises(NotFoundError):
            await manager.get(pool.id)
        assert manager.status(pool.id)["state"] == "stopped"
    finally:
        await manager.close()
        if restarted is not None:
            await restarted.close()


async def test_a_lost_key_does_not_stop_the_start(
    db: Database, tmp_path: Path, sim: RunningSimulator
) -> None:
    manager = await make_manager(db, tmp_path)
    await manager.start()
    try:
        pool = await manager.add(sim.url, "root", "demo")
    finally:
        await manager.close()
    await asyncio.to_thread((tmp_path / "secret.key").unlink)
    manager = await make_manager(db, tmp_path)
    await manager.start()
    try:
        assert manager.status(pool.id)["state"] == "stopped"
        assert "cannot be decrypted" in (await manager.get(pool.id)).last_error
    finally:
        await manager.close()


async def test_plain_http_is_refused_before_anything_is_sent(
    db: Database, tmp_path: Path, listener: CountingListener
) -> None:
    manager = await make_manager(db, tmp_path, allow_http=False)
    await manager.start()
    try:
        attempts: dict[str, Callable[[], Awaitable[object]]] = {
            "probe": lambda: manager.probe(listener.url),
            "stage": lambda: manager.stage("user:1", listener.url, "root", "demo"),
            "test": lambda: manager.test(listener.url, "root", "demo", ""),
            "add": lambda: manager.add(listener.url, "root", "demo"),
        }
        for name, attempt in attempts.items():
            with pytest.raises(PoolInputError) as refused:
                await attempt()
            assert refused.value.field == "url", name
            assert "must start with https://" in refused.value.message, name
            assert "in clear" in refused.value.message, name
        assert manager.pending("user:1") is None
        assert await manager.pools() == []
        assert listener.connections == 0
    finally:
        await manager.close()


async def test_a_plain_http_pool_is_not_connected_outside_development(
    db: Database, tmp_path: Path, sim: RunningSimulator
) -> None:
    # Registered in development mode, then the appliance runs without it: the
    # stored password must not go out in clear at the next start either.
    manager = await make_manager(db, tmp_path)
    await manager.start()
    try:
        pool = await manager.add(sim.url, "root", "demo")
    finally:
        await manager.close()
    manager = await make_manager(db, tmp_path, allow_http=False)
    await manager.start()
    try:
        assert manager.status(pool.id)["state"] == "stopped"
        assert "must start with https://" in (await manager.get(pool.id)).last_error
    finally:
        await manager.close()


async def test_a_pool_is_named_by_its_uuid_and_registered_once(
    db: Database, tmp_path: Path, sim: RunningSimulator
) -> None:
    manager = await make_manager(db, tmp_path)
    await manager.start()
    try:
        pool = await manager.add(sim.url, "root", "demo")
        client_uuid = await _pool_uuid(sim)
        assert pool.uuid == client_uuid
        # Another URL of the same master is the same pool.
        other = sim.url.replace("127.0.0.1", "localhost")
        with pytest.raises(ConflictError, match="already connected, as"):
            await manager.add(other, "root", "demo")
        # A registration made before pools had uuids gets it at its first sync.
        await db.execute("UPDATE pools SET uuid = '' WHERE id = ?", (pool.id,))
    finally:
        await manager.close()
    manager = await make_manager(db, tmp_path)
    await manager.start()
    try:
        await until(lambda: manager.connections() and manager.connections()[0].pool.uuid)
        assert (await manager.get(pool.id)).uuid == client_uuid
    finally:
        await manager.close()


async def _pool_uuid(sim: RunningSimulator) -> str:
    async with XapiClient(sim.url, "root", "demo") as client:
        records = await client.call("pool.get_all_records")
        return str(next(iter(records.values()))["uuid"])
