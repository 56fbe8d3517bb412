"""The checks of each pool, against the simulator on the wire: reachable
(then stopped), latency (then slowed), certificate (then changed), session
(then the password changed), XAPI version (then an old one), clock (then
skewed), and the snapshots a dead run left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from tests.integration.diagnostics.conftest import Diag
from tests.integration.xapi.simfixtures import copy_demo
from xapisim import RunningSimulator
from xapisim.pool import SimPool
from xapisim.server import create_app
from xenkeep.diagnostics import CheckStatus, Result
from xenkeep.system.tls import TlsMaterial, ensure_certificate
from xenkeep.web import keys

OK, WARNING, FAILURE = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.FAILURE


def only(results: list[Result], pool_id: int) -> Result:
    (r,) = [r for r in results if r.id.endswith(f":pool:{pool_id}")]
    return r


async def test_no_pool_is_ok_for_every_pool_check(diag: Diag) -> None:
    for check in ("pool.reachable", "pool.latency", "pool.session", "time.skew", "pool.snapshots"):
        (r,) = await diag.run(check)
        assert r.status is OK and r.value == "no pool is connected"


async def test_a_pool_in_each_state(diag: Diag, sim: RunningSimulator) -> None:
    pools = keys.pools(diag.server.app)
    pool = await pools.add(sim.url, "root", "demo")
    for check in ("pool.reachable", "pool.latency", "pool.session", "pool.version", "time.skew"):
        r = only(await diag.run(check), pool.id)
        assert r.status is OK, r
        assert r.title.endswith(f"({pool.name})")
    assert "XAPI 2." in only(await diag.run("pool.version"), pool.id).value
    # Plain http (development): no certificate to compare.
    r = only(await diag.run("pool.certificate"), pool.id)
    assert r.status is WARNING and "plain http" in r.value

    # A slow master: every call takes 0.3 s.
    sim.pool.faults.inject("delay_call", {"method": "pool.get_all", "seconds": 0.3})
    r = only(await diag.run("pool.latency"), pool.id)
    assert r.status is WARNING and "ms per XAPI call" in r.value
    sim.pool.faults.clear()

    # A master whose clock runs five minutes ahead, then 30 s behind.
    sim.pool.faults.inject("clock_skew", {"seconds": 300})
    r = only(await diag.run("time.skew"), pool.id)
    assert r.status is FAILURE and "ahead" in r.value and "NTP" not in r.value
    sim.pool.faults.clear()
    sim.pool.faults.inject("clock_skew", {"seconds": -30})
    r = only(await diag.run("time.skew"), pool.id)
    assert r.status is WARNING and "behind" in r.value
    sim.pool.faults.clear()

    # An old XAPI on the master.
    master = next(iter(sim.pool.db.refs("host")))
    for ref in sim.pool.db.refs("host"):
        sim.pool.db.get("host", ref)["API_version_minor"] = 5
    r = only(await diag.run("pool.version"), pool.id)
    assert r.status is FAILURE and "changed block tracking" in r.remedy
    assert master

    # The pool's password changed: the next login is refused.
    sim.pool.password = "changed elsewhere"
    await pools.connection(pool.id).client.logout()
    r = only(await diag.run("pool.session"), pool.id)
    assert r.status is FAILURE and "password" in r.remedy

    # The master goes away.
    await sim.close()
    r = only(await diag.run("pool.reachable"), pool.id)
    assert r.status is FAILURE and "does not accept connections" in r.value


async def test_leftover_snapshots_of_a_dead_run(diag: Diag, sim: RunningSimulator) -> None:
    pools = keys.pools(diag.server.app)
    pool = await pools.add(sim.url, "root", "demo")
    assert only(await diag.run("pool.snapshots"), pool.id).status is OK
    client = pools.connection(pool.id).client
    vms = await client.call("VM.get_all_records")
    vm = next(
        ref
        for ref, rec in vms.items()
        if not rec["is_a_template"] and not rec["is_control_domain"] and not rec["is_a_snapshot"]
    )
    await client.call("VM.snapshot", vm, "[XenKeep nightly] 2024-05-01 xk-run-4242")
    await client.call("VM.snapshot", vm, "someone else's snapshot")
    r = only(await diag.run("pool.snapshots"), pool.id)
    assert r.status is WARNING and "xk-run-4242" in r.value and "1 snapshot" in r.value


@dataclass
class ReplaceableTls:
    """The simulator behind HTTPS whose certificate can be replaced on the same port."""

    pool: SimPool
    runner: web.AppRunner
    port: int
    site: web.TCPSite
    tls: TlsMaterial

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def new_certificate(self, where: Path) -> TlsMaterial:
        await self.site.stop()
        self.tls = await asyncio.to_thread(ensure_certificate, where, "localhost")
        self.site = web.TCPSite(
            self.runner, "127.0.0.1", self.port, ssl_context=self.tls.server_context()
        )
        await self.site.start()
        return self.tls


@pytest.fixture
async def tls_pool(backup_demo_state: Path, tmp_path: Path) -> AsyncIterator[ReplaceableTls]:
    pool = SimPool(await copy_demo(backup_demo_state, tmp_path / "tls-pool"))
    await pool.open()
    tls = await asyncio.to_thread(ensure_certificate, tmp_path / "tls-a", "localhost")
    runner = web.AppRunner(create_app(pool), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context())
    await site.start()
    try:
        yield ReplaceableTls(pool, runner, int(runner.addresses[0][1]), site, tls)
    finally:
        await runner.cleanup()
        await pool.close()


async def test_the_pool_certificate_changes(
    diag: Diag, tls_pool: ReplaceableTls, tmp_path: Path
) -> None:
    pools = keys.pools(diag.server.app)
    pool = await pools.add(tls_pool.url, "root", "demo", tls_pool.tls.fingerprint)
    r = only(await diag.run("pool.certificate"), pool.id)
    assert r.status is OK and tls_pool.tls.fingerprint in r.value
    new = await tls_pool.new_certificate(tmp_path / "tls-b")
    r = only(await diag.run("pool.certificate"), pool.id)
    assert r.status is FAILURE
    assert new.fingerprint in r.value and pool.fingerprint in r.value
    assert "remove the pool and add it again" in r.remedy
