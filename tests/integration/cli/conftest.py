"""Fixtures for the console tool: the real daemon with a simulator pool, a
datastore directory, a job and a test VM, and a settings file the CLI reads."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.backup.conftest import (
    TestVm,
    backup_demo_state,
    client,
    make_vm,
    sim,
    storage_and_job,
)
from tests.support.web import Browser, complete_setup
from xapisim import RunningSimulator
from xenkeep import cli
from xenkeep.app import database
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.web.server import RunningServer
from xenkeep.xapi.client import XapiClient

# The backup tests' simulator fixtures, shared rather than copied.
__all__ = ["backup_demo_state", "client", "sim"]


def write_cli_config(settings: Settings, port: int, path: Path) -> Path:
    """A settings file that points the CLI at a daemon's state and port."""
    path.write_text(
        f'state_dir = "{settings.state_dir}"\n'
        f'run_dir = "{settings.run_dir}"\n'
        f'listen = "{settings.listen}"\n'
        f"https_port = {port}\n"
        "http_port = 0\n"
    )
    return path


@dataclass
class Console:
    """Runs ``xenkeep`` against one settings file."""

    config: Path

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        """``xenkeep --config CONFIG args...`` in a worker thread: (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()

        def call() -> int:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                return cli.main(["--config", str(self.config), *args])

        # The CLI blocks on urllib; the daemon it talks to runs on this loop.
        code = await asyncio.to_thread(call)
        return code, out.getvalue(), err.getvalue()


@dataclass
class Appliance:
    """A set-up daemon with one pool, storage, a job on the test tag and a VM."""

    __test__ = False
    server: RunningServer
    browser: Browser
    settings: Settings
    client: XapiClient
    sim: RunningSimulator
    vm: TestVm
    pool_id: int
    job_id: int
    store: Path
    xenkeep: Console

    async def token_count(self) -> int:
        """API tokens left in the database."""
        row = await database(self.server.app).fetchone("SELECT count(*) AS n FROM api_tokens")
        assert row is not None
        return int(row["n"])

    async def sr_uuid(self) -> str:
        """The pool's default SR."""
        pool = (await self.client.call("pool.get_all"))[0]
        sr = await self.client.call("pool.get_default_SR", pool)
        return str(await self.client.call("SR.get_uuid", sr))


@pytest.fixture
def console(settings: Settings, daemon: RunningServer, tmp_path: Path) -> Console:
    """The CLI pointed at the running ``daemon``."""
    return Console(write_cli_config(settings, daemon.https_port, tmp_path / "cli.toml"))


@pytest.fixture
async def appliance(
    daemon: RunningServer,
    browser: Browser,
    settings: Settings,
    sim: RunningSimulator,
    client: XapiClient,
    console: Console,
    tmp_path: Path,
) -> AsyncIterator[Appliance]:
    """The daemon after the wizard, with a pool, storage, a test VM and job "nightly"."""
    await complete_setup(browser, settings)
    pool = await keys.pools(daemon.app).add(sim.url, "root", "demo")
    vm = await make_vm(client, sim, "cli-backup-01")
    store = tmp_path / "store"
    job = await storage_and_job(
        browser, pool.id, store, "nightly", schedule="0 3 * * *", retention=3
    )
    yield Appliance(
        server=daemon,
        browser=browser,
        settings=settings,
        client=client,
        sim=sim,
        vm=vm,
        pool_id=pool.id,
        job_id=int(job["id"]),
        store=store,
        xenkeep=console,
    )
