"""Fixtures: the XAPI simulator served on the test's event loop, on a free
loopback port, and a client logged in to it."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xapisim import RunningSimulator, start_simulator
from xenkeep.xapi.client import XapiClient

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


@pytest.fixture
async def sim(demo_state: Path, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    """A fresh copy of the demo pool (2 hosts, SRs, VMs) on a loopback port."""
    # Sparse copy: the demo disks are mostly holes (184 GB apparent, 40 MB used).
    subprocess.run(
        ["cp", "-a", "--sparse=always", str(demo_state), str(tmp_path / "pool")], check=True
    )
    running = await start_simulator(tmp_path / "pool")
    yield running
    await running.close()


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[XapiClient]:
    """A client of ``sim`` (it logs in on its first call)."""
    c = XapiClient(sim.url, "root", PASSWORD, timeout=30)
    yield c
    await c.close()


async def restart(sim: RunningSimulator) -> RunningSimulator:
    """Stop the simulator and serve the same state on the same port again."""
    state, port = sim.state_dir, sim.port
    await sim.close()
    return await start_simulator(state, "127.0.0.1", port)
