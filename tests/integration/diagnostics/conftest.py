"""Fixtures for the checks: the real daemon (its services are what the checks
look at), the demo pool of the simulator, and one call that runs a check
with some of its sources replaced."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.backup.conftest import backup_demo_state, client, sim
from xenkeep.diagnostics import DiagnosticsService, Result
from xenkeep.web import keys
from xenkeep.web.server import RunningServer

__all__ = ["backup_demo_state", "client", "sim"]


@dataclass
class Diag:
    """The daemon's diagnostics service, and a way to run one check."""

    server: RunningServer
    service: DiagnosticsService

    async def run(self, check_id: str, **sources: Any) -> list[Result]:
        """The results of one check, with ``sources`` replacing the daemon's own."""
        original = self.service.sources
        self.service.sources = dataclasses.replace(original, **sources)
        try:
            return await self.service.run_check(self.service.registry.get(check_id))
        finally:
            self.service.sources = original

    async def one(self, check_id: str, **sources: Any) -> Result:
        """The single result of a check of the appliance (not per pool)."""
        results = await self.run(check_id, **sources)
        assert len(results) == 1, results
        return results[0]


@pytest.fixture
def diag(daemon: RunningServer) -> Diag:
    """The checks of a running daemon."""
    return Diag(daemon, keys.diagnostics(daemon.app))
