"""Simulator fixtures shared by the XAPI and the web tests: a demo pool
seeded once per run, copied for each test, served on a loopback port over
HTTP or, behind a self-signed certificate, over HTTPS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from xapisim import RunningSimulator, start_simulator
from xapisim.pool import SimPool
from xapisim.server import create_app
from xenkeep.system.tls import TlsMaterial, ensure_certificate

PASSWORD = "demo"


@pytest.fixture(scope="session")
def demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo pool's state directory, seeded once for the whole run."""
    state = tmp_path_factory.mktemp("demo") / "pool"

    async def seed() -> None:
        running = await start_simulator(state, demo=True)
        await running.close()

    asyncio.run(seed())
    return state


async def copy_demo(demo_state: Path, dest: Path) -> Path:
    """A private copy of the demo pool (sparse: 184 GB apparent, 40 MB used)."""
    proc = await asyncio.create_subprocess_exec(
        "cp", "-a", "--sparse=always", str(demo_state), str(dest)
    )
    assert await proc.wait() == 0, f"cp {demo_state} {dest} failed"
    return dest


@pytest.fixture
async def sim(demo_state: Path, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    """A fresh copy of the demo pool (2 hosts, SRs, VMs) on a loopback port."""
    running = await start_simulator(await copy_demo(demo_state, tmp_path / "pool"))
    yield running
    await running.close()


@dataclass
class TlsSimulator:
    """The simulator served over HTTPS with a self-signed certificate."""

    pool: SimPool
    url: str
    tls: TlsMaterial


@pytest.fixture
async def tls_sim(demo_state: Path, tmp_path: Path) -> AsyncIterator[TlsSimulator]:
    """A demo pool behind HTTPS, as a real pool master is."""
    pool = SimPool(await copy_demo(demo_state, tmp_path / "tls-pool"))
    await pool.open()
    tls = await asyncio.to_thread(ensure_certificate, tmp_path / "pool-tls", "localhost")
    runner = web.AppRunner(create_app(pool), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, "127.0.0.1", 0, ssl_context=tls.server_context(), shutdown_timeout=1.0
    )
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield TlsSimulator(pool, f"https://127.0.0.1:{port}", tls)
    finally:
        await runner.cleanup()
        await pool.close()
