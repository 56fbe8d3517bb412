"""Fixtures: a demo pool from the simulator, a small test VM with random
data, a datastore under tmp_path and a BackupManager over a real database."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.xapi.simfixtures import copy_demo
from tests.support.web import Browser
from xapisim import RunningSimulator, start_simulator
from xenkeep.backup.manager import BackupManager
from xenkeep.pools.access import StaticPools
from xenkeep.store import open_database
from xenkeep.xapi.client import XapiClient

MiB = 1 << 20
POOL_ID = "1"


@pytest.fixture(scope="session")
def backup_demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo pool's state directory, seeded once."""
    state = tmp_path_factory.mktemp("backup-demo") / "pool"

    async def seed() -> None:
        running = await start_simulator(state, demo=True)
        await running.close()

    asyncio.run(seed())
    return state


@pytest.fixture
async def sim(backup_demo_state: Path, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    """A fresh copy of the demo pool on a loopback port."""
    running = await start_simulator(await copy_demo(backup_demo_state, tmp_path / "pool"))
    yield running
    await running.close()


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[XapiClient]:
    """A client of ``sim``."""
    c = XapiClient(sim.url, "root", "demo", timeout=30)
    yield c
    await c.close()


@dataclass
class TestVm:
    """A small VM in the pool, with helpers to change and read its disk."""

    __test__ = False
    sim: RunningSimulator
    client: XapiClient
    ref: str
    uuid: str
    vdi: str
    size: int
    rng: random.Random
    #: 2 MiB blocks written since :meth:`clear_touched`.
    touched: set[int] = dataclasses.field(default_factory=set)

    async def write(self, offset: int, data: bytes) -> None:
        first, last = offset >> 21, (offset + len(data) - 1) >> 21
        self.touched.update(range(first, last + 1))
        for at in range(0, len(data), 256 * 1024):
            piece = base64.b64encode(data[at : at + 256 * 1024]).decode()
            await self.client.call("sim.write_vdi", self.vdi, offset + at, piece)

    async def scribble(self, writes: int = 3) -> None:
        """Random writes: what a guest does between backups."""
        for _ in range(writes):
            length = self.rng.choice([4096, 65536, 300_000])
            offset = self.rng.randrange(0, self.size - length) // 512 * 512
            await self.write(offset, self.rng.randbytes(length))

    async def sha256(self, vdi: str | None = None) -> str:
        return await vdi_sha256(self.client, vdi or self.vdi)


async def vdi_sha256(client: XapiClient, vdi: str) -> str:
    """sha256 of a VDI's whole content, read from the simulator's backing file."""
    path = Path(await client.call("sim.vdi_path", vdi))
    size = int(await client.call("VDI.get_virtual_size", vdi))

    def digest() -> str:
        h = hashlib.sha256()
        with path.open("rb") as f:
            left = size
            while left:
                chunk = f.read(min(left, 4 * MiB))
                if not chunk:
                    h.update(bytes(left))
                    break
                h.update(chunk)
                left -= len(chunk)
        return h.hexdigest()

    return await asyncio.to_thread(digest)


async def make_vm(
    client: XapiClient, sim: RunningSimulator, name: str, size: int = 16 * MiB, seed: int = 7
) -> TestVm:
    """A halted VM tagged ``xk-test`` with one disk of ``size`` bytes of random data."""
    pool = (await client.call("pool.get_all"))[0]
    sr = await client.call("pool.get_default_SR", pool)
    vm = await client.call(
        "VM.create",
        {
            "name_label": name,
            "name_description": "backup test VM",
            "user_version": 1,
            "memory_static_max": 256 * MiB,
            "memory_dynamic_max": 256 * MiB,
            "memory_dynamic_min": 256 * MiB,
            "memory_static_min": 256 * MiB,
            "VCPUs_max": 1,
            "VCPUs_at_startup": 1,
            "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart",
            "actions_after_crash": "restart",
            "HVM_boot_policy": "BIOS order",
            "HVM_boot_params": {"order": "c"},
            "platform": {},
            "other_config": {},
            "tags": ["xk-test"],
        },
    )
    vdi = await client.call(
        "VDI.create",
        {
            "SR": sr,
            "virtual_size": str(size),
            "type": "user",
            "name_label": f"{name} root",
            "sharable": False,
            "read_only": False,
            "other_config": {},
        },
    )
    await client.call(
        "VBD.create",
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": "0",
            "bootable": True,
            "mode": "RW",
            "type": "Disk",
            "empty": False,
            "other_config": {},
        },
    )
    network = (await client.call("network.get_all"))[0]
    await client.call(
        "VIF.create",
        {
            "device": "0",
            "network": network,
            "VM": vm,
            "MAC": "",
            "MTU": 1500,
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        },
    )
    uuid = await client.call("VM.get_uuid", vm)
    t = TestVm(sim, client, vm, uuid, vdi, size, random.Random(seed))
    await t.write(0, t.rng.randbytes(2 * MiB))
    await t.write(size - 3 * MiB, t.rng.randbytes(MiB))
    t.touched.clear()
    return t


@pytest.fixture
async def vm(client: XapiClient, sim: RunningSimulator) -> TestVm:
    """One small test VM."""
    return await make_vm(client, sim, "bk-test-01")


@pytest.fixture
def datastore_dir(tmp_path: Path) -> Path:
    """An empty directory to become the datastore."""
    d = tmp_path / "datastore"
    d.mkdir()
    return d


@pytest.fixture
async def manager(
    tmp_path: Path, client: XapiClient, datastore_dir: Path
) -> AsyncIterator[BackupManager]:
    """A started BackupManager (no scheduler) over a real database."""
    db = await open_database(tmp_path / "xenkeep.db")
    m = BackupManager(db, StaticPools({POOL_ID: ("Demo pool", client)}), appliance_name="xk-test")
    await m.start(scheduler=False)
    await m.use_directory(str(datastore_dir))
    yield m
    await m.stop()
    await db.close()


def job_input(**over: Any) -> dict[str, Any]:
    """A job on the test tag."""
    base: dict[str, Any] = {
        "name": "test job",
        "selector": "tag",
        "targets": "xk-test",
        "pool_id": POOL_ID,
        "schedule": "",
        "retention": 7,
        "concurrency": 2,
    }
    base.update(over)
    return base


async def sr_uuid(client: XapiClient) -> str:
    """The default SR's uuid."""
    pool = (await client.call("pool.get_all"))[0]
    sr = await client.call("pool.get_default_SR", pool)
    return str(await client.call("SR.get_uuid", sr))


async def storage_and_job(
    browser: Browser, pool_id: int, store: Path, name: str, **job: Any
) -> dict[str, Any]:
    """Through the API: make ``store`` the backup storage and create a job over
    the tagged test VMs (``job`` adds fields); the job as the API returns it."""
    await asyncio.to_thread(store.mkdir)
    status, body = await browser.api("POST", "/api/v1/backup/storage", {"path": str(store)})
    assert status == 200, body
    status, created = await browser.api(
        "POST",
        "/api/v1/backup/jobs",
        {"name": name, "selector": "tag", "targets": ["xk-test"], "pool_id": str(pool_id), **job},
    )
    assert status == 201, created
    return dict(created)
