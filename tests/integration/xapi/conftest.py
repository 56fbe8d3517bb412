"""Fixtures: the XAPI simulator on a loopback port and a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.xapi.simfixtures import PASSWORD, demo_state, sim, tls_sim
from xapisim import RunningSimulator
from xenkeep.xapi.client import XapiClient

__all__ = ["demo_state", "sim", "tls_sim"]


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[XapiClient]:
    """A client of ``sim`` (it logs in on its first call)."""
    c = XapiClient(sim.url, "root", PASSWORD, timeout=30)
    yield c
    await c.close()
