"""Fixtures of the web tests that talk to a pool: the simulator and an
administrator who has added it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.web import Browser, complete_setup
from xapisim import RunningSimulator, start_simulator
from xenkeep.config import Settings
from xenkeep.pools.pool import Pool
from xenkeep.web import keys
from xenkeep.xapi.client import XapiClient


@pytest.fixture
async def pool_sim(tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(tmp_path / "pool", demo=True)
    yield running
    await running.close()


@pytest.fixture
async def admin_pool(
    browser: Browser, settings: Settings, pool_sim: RunningSimulator
) -> AsyncIterator[tuple[Pool, XapiClient]]:
    """After the wizard, with the simulator's pool added; a client of that pool."""
    await complete_setup(browser, settings)
    pool = await keys.pools(browser.server.app).add(pool_sim.url, "root", "demo")
    client = XapiClient(pool_sim.url, "root", "demo")
    yield pool, client
    await client.close()
