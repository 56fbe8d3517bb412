"""Fixtures shared by the whole suite: settings under tmp_path, the real
daemon behind its real TLS listener on a loopback port, and a client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from tests.support.web import Browser, make_settings
from xenkeep.app import create_app
from xenkeep.config import Settings
from xenkeep.web.server import RunningServer, start_server

#: loop_disks and appliance: a real privileged helper serving loop disks.
pytest_plugins = ["tests.support.privhelper"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, object, None]:
    """Under ``XENKEEP_NO_SKIPS=1`` (set by .ci/run) a skipped test fails.

    Tests skip when the machine lacks root or a tool; CI has both, so a skip
    there means a test that silently stopped testing.
    """
    outcome = yield
    if os.environ.get("XENKEEP_NO_SKIPS") != "1":
        return
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped where skips are not allowed: {report.longrepr}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of a daemon living under tmp_path."""
    return make_settings(tmp_path)


@pytest.fixture
async def daemon(settings: Settings) -> AsyncIterator[RunningServer]:
    """The real daemon app behind its real HTTPS listener."""
    app = create_app(settings)
    async with start_server(app) as server:
        yield server


@pytest.fixture
async def browser(daemon: RunningServer) -> AsyncIterator[Browser]:
    """A client of ``daemon``."""
    client = Browser(daemon)
    yield client
    await client.close()
