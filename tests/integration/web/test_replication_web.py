"""Replication through the daemon's pages and JSON API, between two
simulated pools: a job, a run followed to its end, the replicas with their
RPO, a failover from the page's confirmation, and a failback."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.backup.conftest import make_vm
from tests.integration.replication.conftest import (
    _pool,
    default_sr,
    replication_demo_state,
    replication_demo_state_b,
)
from tests.support.web import Browser, complete_setup
from xapisim import RunningSimulator
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.xapi.client import XapiClient

__all__ = ["replication_demo_state", "replication_demo_state_b"]


@pytest.fixture
async def two_pools(
    browser: Browser,
    settings: Settings,
    replication_demo_state: Any,
    replication_demo_state_b: Any,
    tmp_path: Any,
) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
    """After the wizard, site A and site B added; per site its pool id, client, simulator."""
    await complete_setup(browser, settings)
    sims = [
        await _pool(replication_demo_state, tmp_path / "a", "Site A"),
        await _pool(replication_demo_state_b, tmp_path / "b", "Site B"),
    ]
    sites = []
    for sim in sims:
        pool = await keys.pools(browser.server.app).add(sim.url, "root", "demo")
        sites.append(
            {"id": str(pool.id), "client": XapiClient(sim.url, "root", "demo"), "sim": sim}
        )
    yield sites[0], sites[1]
    for site in sites:
        await site["client"].close()
        await site["sim"].close()


async def _wait(browser: Browser, op_id: int) -> dict[str, Any]:
    return await browser.until_finished(f"/api/v1/operations/{op_id}", tries=1200)


async def test_a_job_its_run_replicas_failover_and_failback(
    browser: Browser, two_pools: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    a, b = two_pools
    sim_a: RunningSimulator = a["sim"]
    vm = await make_vm(a["client"], sim_a, "web-rep-01")
    sr = await default_sr(b["client"])
    job_body = {
        "name": "dr web",
        "selector": "tag",
        "targets": ["xk-test"],
        "pool_id": a["id"],
        "target_pool_id": b["id"],
        "target_sr_uuid": sr,
        "schedule": "*/10 * * * *",
        "retention": 2,
    }
    status, bad = await browser.api(
        "POST", "/api/v1/replication/jobs", {**job_body, "target_sr_uuid": "no-such-sr"}
    )
    assert status == 400 and bad["error"]["field"] == "target_sr_uuid", bad
    status, job = await browser.api("POST", "/api/v1/replication/jobs", job_body)
    assert status == 201, job
    assert job["next_run"] is not None and job["target_sr_uuid"] == sr

    status, started = await browser.api("POST", f"/api/v1/replication/jobs/{job['id']}/run")
    assert status == 202, started
    run = await _wait(browser, started["operation_id"])
    assert run["status"] == "success", run["error"]
    assert run["kind"] == "replication" and run["report"]["kind"] == "replication"
    status, listed = await browser.api("GET", f"/api/v1/replication/replicas?job_id={job['id']}")
    [replica] = listed["replicas"]
    assert replica["source_vm_uuid"] == vm.uuid and replica["target_sr_uuid"] == sr
    assert replica["latest_point_uuid"] and replica["rpo"]["exceeded"] is False
    assert replica["rpo"]["age"] is not None and replica["target_pool_id"] == b["id"]
    status, points = await browser.api(
        "GET", f"/api/v1/replication/replicas/{replica['id']}/points"
    )
    assert status == 200 and len(points["points"]) == 1

    # The pages: the list, the job with its replicas and history, the forms.
    for path, words in [
        ("/replication", "dr web"),
        (f"/replication/jobs/{job['id']}", "Run history"),
        (f"/replication/jobs/{job['id']}/edit", 'value="dr web"'),
        ("/replication/jobs/new", "Replicas go to"),
        (f"/operations/{run['id']}", "replica point"),
    ]:
        status, text, _ = await browser.get(path)
        assert status == 200 and words in text, (path, text[:400])
    status, text, _ = await browser.post_form(
        "/replication/jobs",
        {
            "name": "typo",
            "selector": "name",
            "targets": "web-rep-01, no-such-vm",
            "pool_id": a["id"],
            "target": f"{b['id']}:{sr}",
            "schedule": "",
            "timezone": "UTC",
            "retention": "2",
            "concurrency": "1",
        },
    )
    assert status == 400 and "no VM named" in text and "no-such-vm" in text

    # A replica older than its schedule allows: its job, its row and the dashboard say so.
    status, text, _ = await browser.get("/")
    assert 'id="replica-rpo-badge"' not in text
    store = keys.replication(browser.server.app).store
    fresh = replica["latest_point_at"]
    await store.update_replica(replica["id"], latest_point_at=fresh - 3 * 3600)
    status, text, _ = await browser.get("/")
    assert 'id="replica-rpo-badge"' in text and "1 replica older than its job" in text
    status, text, _ = await browser.get("/replication")
    assert "RPO exceeded" in text
    status, listed = await browser.api("GET", f"/api/v1/replication/replicas/{replica['id']}")
    assert listed["rpo"]["exceeded"] is True and listed["rpo"]["age"] > 3 * 3600 - 60
    await store.update_replica(replica["id"], latest_point_at=fresh)

    # Failover from the page: refused without the box ticked, then started.
    start = f"/replication/replicas/{replica['id']}/start"
    status, text, _ = await browser.get(start)
    assert status == 200 and "pause the job" in text
    status, text, _ = await browser.post_form(start, {"point": ""})
    assert status == 400 and "tick the box" in text
    status, _, resp = await browser.post_form(start, {"point": "", "confirm": "on"})
    assert status == 303, resp
    op_id = int(re.search(r"/operations/(\d+)", resp.headers["Location"]).group(1))  # type: ignore[union-attr]
    op = await _wait(browser, op_id)
    assert op["status"] == "success", op["error"]
    status, text, _ = await browser.get(f"/replication/jobs/{job['id']}")
    assert 'id="paused-banner"' in text and "was started on pool Site B" in text
    status, listed = await browser.api("GET", f"/api/v1/replication/replicas/{replica['id']}")
    assert listed["state"] == "started"
    # Starting it again is refused, saying why.
    status, again = await browser.api("POST", f"/api/v1/replication/replicas/{replica['id']}/start")
    assert status == 409 and "already started" in again["error"]["message"]

    status, body = await browser.api(
        "POST", f"/api/v1/replication/replicas/{replica['id']}/failback", {"start_source": "yes"}
    )
    assert status == 400 and body["error"]["field"] == "start_source"
    status, body = await browser.api(
        "POST", f"/api/v1/replication/replicas/{replica['id']}/failback", {"start_source": True}
    )
    assert status == 202, body
    op = await _wait(browser, body["operation_id"])
    assert op["status"] == "success", op["error"]
    assert await a["client"].call("VM.get_power_state", vm.ref) == "Running"
    status, listed = await browser.api("GET", f"/api/v1/replication/replicas/{replica['id']}")
    assert listed["state"] == "replicating" and not listed["job_paused"]
