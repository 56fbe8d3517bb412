"""Fixtures: two simulated pools (site A and site B, each a copy of the demo
pool, with two hosts and three SRs), a small test VM on site A with random
data, and a ReplicationManager over a real database and real operations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.backup.conftest import TestVm, make_vm, vdi_sha256
from tests.integration.xapi.simfixtures import copy_demo
from xapisim import RunningSimulator, start_simulator
from xenkeep.ops import Operations, Scheduler
from xenkeep.pools.access import StaticPools
from xenkeep.replication.const import REFERENCE_KEY
from xenkeep.replication.manager import ReplicationManager
from xenkeep.store import open_database
from xenkeep.xapi.client import XapiClient

MiB = 1 << 20
SITE_A = "1"
SITE_B = "2"


@pytest.fixture(scope="session")
def replication_demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo pool's state directory, seeded once."""
    state = tmp_path_factory.mktemp("replication-demo") / "pool"

    async def seed() -> None:
        running = await start_simulator(state, demo=True)
        await running.close()

    asyncio.run(seed())
    return state


@pytest.fixture(scope="session")
def replication_demo_state_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Site B's demo pool state, seeded on its own: a copy of site A's would
    carry the same pool uuid, and the daemon registers one pool once."""
    state = tmp_path_factory.mktemp("replication-demo-b") / "pool"

    async def seed() -> None:
        running = await start_simulator(state, demo=True)
        await running.close()

    asyncio.run(seed())
    return state


async def _pool(state: Path, dest: Path, name: str) -> RunningSimulator:
    sim = await start_simulator(await copy_demo(state, dest))
    [pool] = await sim.call("pool.get_all", [await _session(sim)])
    await sim.call("pool.set_name_label", [await _session(sim), pool, name])
    return sim


async def _session(sim: RunningSimulator) -> str:
    return str(await sim.call("session.login_with_password", ["root", "demo", "1.0", "test"]))


@pytest.fixture
async def sim_a(replication_demo_state: Path, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    """Site A."""
    sim = await _pool(replication_demo_state, tmp_path / "site-a", "Site A")
    yield sim
    await sim.close()


@pytest.fixture
async def sim_b(replication_demo_state_b: Path, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    """Site B (its own pool uuid)."""
    sim = await _pool(replication_demo_state_b, tmp_path / "site-b", "Site B")
    yield sim
    await sim.close()


@pytest.fixture
async def client_a(sim_a: RunningSimulator) -> AsyncIterator[XapiClient]:
    c = XapiClient(sim_a.url, "root", "demo", timeout=30)
    yield c
    await c.close()


@pytest.fixture
async def client_b(sim_b: RunningSimulator) -> AsyncIterator[XapiClient]:
    c = XapiClient(sim_b.url, "root", "demo", timeout=30)
    yield c
    await c.close()


@dataclass
class Sites:
    """Both pools, the manager, and what tests read back."""

    __test__ = False
    manager: ReplicationManager
    a: XapiClient
    b: XapiClient
    sim_a: RunningSimulator
    sim_b: RunningSimulator

    async def wait(self, op_id: int) -> dict[str, Any]:
        """Wait for an operation; its detail (tasks, log)."""
        await self.manager.wait(op_id)
        return await self.manager.ops.detail(op_id)

    async def run(self, job_id: int) -> dict[str, Any]:
        """Run a job and wait; its detail."""
        return await self.wait(await self.manager.run_job(job_id))


@pytest.fixture
async def sites(
    tmp_path: Path,
    client_a: XapiClient,
    client_b: XapiClient,
    sim_a: RunningSimulator,
    sim_b: RunningSimulator,
) -> AsyncIterator[Sites]:
    """A ReplicationManager over both pools (no scheduler loop: runs are started by hand)."""
    db = await open_database(tmp_path / "xenkeep.db")
    ops = Operations(db)
    await ops.start_up()

    async def name() -> str:
        return "xk-test"

    manager = ReplicationManager(
        db,
        StaticPools({SITE_A: ("Site A", client_a), SITE_B: ("Site B", client_b)}),
        ops=ops,
        scheduler=Scheduler(),
        appliance_name=name,
    )
    yield Sites(manager, client_a, client_b, sim_a, sim_b)
    await ops.stop()
    await db.close()


@pytest.fixture
async def vm(client_a: XapiClient, sim_a: RunningSimulator) -> TestVm:
    """One small test VM on site A, tagged xk-test."""
    return await make_vm(client_a, sim_a, "rep-test-01")


async def default_sr(client: XapiClient) -> str:
    """The uuid of a pool's default SR."""
    pool = (await client.call("pool.get_all"))[0]
    return str(await client.call("SR.get_uuid", await client.call("pool.get_default_SR", pool)))


async def sr_named(client: XapiClient, name: str) -> str:
    """The uuid of the first SR called ``name``."""
    for rec in (await client.call("SR.get_all_records")).values():
        if rec["name_label"] == name:
            return str(rec["uuid"])
    raise AssertionError(f"no SR {name!r}")


def job_input(target_sr: str, **over: Any) -> dict[str, Any]:
    """A replication job of the tagged test VMs from site A to ``target_sr`` of site B."""
    base: dict[str, Any] = {
        "name": "dr",
        "selector": "tag",
        "targets": ["xk-test"],
        "pool_id": SITE_A,
        "target_pool_id": SITE_B,
        "target_sr_uuid": target_sr,
        "schedule": "",
        "retention": 3,
        "concurrency": 2,
    }
    base.update(over)
    return base


async def reference_snapshots(client: XapiClient, vm_ref: str) -> list[dict[str, Any]]:
    """The source VM's snapshots kept as replication references."""
    out = []
    for snap in await client.call("VM.get_snapshots", vm_ref):
        rec = await client.call("VM.get_record", snap)
        if REFERENCE_KEY in rec["other_config"]:
            out.append(rec)
    return out


async def first_disk_sha(client: XapiClient, vm_ref: str) -> str:
    """sha256 of the disk at userdevice 0 of a VM or snapshot."""
    for vbd in await client.call("VM.get_VBDs", vm_ref):
        rec = await client.call("VBD.get_record", vbd)
        if rec["type"] == "Disk" and rec["userdevice"] == "0":
            return await vdi_sha256(client, rec["VDI"])
    raise AssertionError(f"{vm_ref} has no disk 0")


async def inventory(client: XapiClient) -> dict[str, int]:
    """How many VMs (snapshots included) and VDIs a pool has: nothing left behind
    means these are as before."""
    vms = await client.call("VM.get_all_records")
    vdis = await client.call("VDI.get_all_records")
    return {
        "vms": sum(1 for r in vms.values() if not r["is_a_snapshot"]),
        "snapshots": sum(1 for r in vms.values() if r["is_a_snapshot"]),
        "vdis": len(vdis),
    }
