"""Fixtures of the appliance backup tests: the real daemon (in this process),
the simulator's demo pool added to it, a test VM, a directory as the backup
storage and a job; helpers to wait for copies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.xapi.client import XapiClient

__all__ = ["backup_demo_state", "client", "sim"]

PASSPHRASE = "quiet orange tractor meadow"


@dataclass
class Configured:
    """An appliance with a pool, a backup storage, a job and a VM."""

    browser: Browser
    settings: Settings
    pool_id: int
    job: dict[str, Any]
    vm: TestVm
    store: Path


@pytest.fixture
async def configured(
    browser: Browser,
    settings: Settings,
    sim: RunningSimulator,
    client: XapiClient,
    tmp_path: Path,
) -> Configured:
    await complete_setup(browser, settings)
    app = browser.server.app
    pool = await keys.pools(app).add(sim.url, "root", "demo")
    vm = await make_vm(client, sim, "cfg-vm-01")
    store = tmp_path / "store"
    job = await storage_and_job(browser, pool.id, store, "nightly")
    # Copies follow changes within a fraction of a second here (10 s on an appliance).
    service = keys.appliance_backup(app)
    service.debounce = 0.2
    return Configured(browser, settings, pool.id, job, vm, store)


class ApiClient(Protocol):
    """A signed-in client of a daemon's API: an in-process one or a subprocess's."""

    def api(self, method: str, path: str, body: Any = None, /) -> Awaitable[tuple[int, Any]]: ...


async def set_passphrase(client: ApiClient, passphrase: str = PASSPHRASE) -> None:
    status, body = await client.api(
        "PUT",
        "/api/v1/appliance-backup/passphrase",
        {"passphrase": passphrase, "confirm": passphrase},
    )
    assert status == 200, body


async def copies_done(client: ApiClient, *, after: int = 0) -> list[dict[str, Any]]:
    """The appliance backup operations newer than ``after``, once none runs."""
    for _ in range(600):
        status, body = await client.api("GET", "/api/v1/operations?kind=appliance-backup")
        assert status == 200, body
        ops = [o for o in body["operations"] if o["id"] > after]
        if ops and all(o["status"] not in ("pending", "running") for o in ops):
            return list(ops)
        await asyncio.sleep(0.1)
    raise AssertionError("no appliance backup finished")


async def copies(client: ApiClient) -> list[dict[str, Any]]:
    status, body = await client.api("GET", "/api/v1/appliance-backup/copies")
    assert status == 200, body
    return list(body["copies"])


async def first_copy(client: ApiClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set the passphrase and wait for the copy that follows: (its operation, the copy)."""
    await set_passphrase(client)
    [op] = await copies_done(client)
    assert op["status"] == "success", op
    [copy] = await copies(client)
    return op, copy
