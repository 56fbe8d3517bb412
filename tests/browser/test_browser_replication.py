"""Replication in Chromium against a real xenkeepd and two simulated pools:
create a job, watch its run move, then start the replica from its page."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By

from tests.browser.test_browser_backup import PROGRESS_TEXT
from tests.browser.ui import UI, Daemon
from tests.integration.backup.conftest import make_vm
from tests.integration.replication.conftest import default_sr, first_disk_sha
from xapisim.testing import SimulatorThread
from xenkeep.xapi.client import XapiClient

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
RITA_PASSWORD = "a fresh operator passphrase"


async def _xapi(site: SimulatorThread, method: str, *args: object) -> Any:
    client = XapiClient(site.url, "root", "demo")
    try:
        return await client.call(method, *args)
    finally:
        await client.close()


async def _name_pool(site: SimulatorThread, name: str) -> None:
    pool = (await _xapi(site, "pool.get_all"))[0]
    await _xapi(site, "pool.set_name_label", pool, name)


async def _make_vm(site: SimulatorThread) -> str:
    """A tagged test VM on ``site``; its uuid."""
    client = XapiClient(site.url, "root", "demo")
    try:
        vm = await make_vm(client, site.sim, "browser-rep-01", size=24 << 20)  # type: ignore[arg-type]
        return vm.uuid
    finally:
        await client.close()


async def _default_sr(site: SimulatorThread) -> str:
    client = XapiClient(site.url, "root", "demo")
    try:
        return await default_sr(client)
    finally:
        await client.close()


async def _power_state(site: SimulatorThread, vm_uuid: str) -> str:
    vm = await _xapi(site, "VM.get_by_uuid", vm_uuid)
    return str(await _xapi(site, "VM.get_power_state", vm))


async def _disk_sha(site: SimulatorThread, vm_uuid: str) -> str:
    client = XapiClient(site.url, "root", "demo")
    try:
        return await first_disk_sha(client, await client.call("VM.get_by_uuid", vm_uuid))
    finally:
        await client.close()


def _watch_the_disk_move(ui: UI) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for row in ui.driver.find_elements(By.CSS_SELECTOR, "#tasks-table tbody tr"):
            try:
                cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
            except WebDriverException:
                continue  # the script redrew the table meanwhile (stale node)
            if len(cells) > 6 and cells[1] == "0" and cells[2] == "transfer" and cells[5]:
                assert PROGRESS_TEXT.fullmatch(cells[5]), cells
                assert cells[4] == "full" and cells[6].endswith("/s"), cells
                return
        time.sleep(0.1)
    raise AssertionError("the disk's copy showed no live progress")


def test_create_a_job_watch_it_run_and_start_the_replica(
    ui: UI, xenkeepd: Daemon, tmp_path: Path
) -> None:
    with (
        SimulatorThread(tmp_path / "site-a", demo=True) as site_a,
        SimulatorThread(tmp_path / "site-b", demo=True) as site_b,
    ):
        site_a.run(_name_pool(site_a, "Site A"))
        site_b.run(_name_pool(site_b, "Site B"))
        vm_uuid = site_a.run(_make_vm(site_a))
        sr_b = site_b.run(_default_sr(site_b))

        ui.open("/login")
        token = {"token": xenkeepd.setup_token()}
        status, body = ui.fetch_json("POST", "/api/v1/setup/token", token)
        assert status == 200, body
        admin = {"username": "alice", "password": PASSWORD, "confirm": PASSWORD}
        status, body = ui.fetch_json("POST", "/api/v1/setup/admin", admin)
        assert status == 201, body
        pool_ids = []
        for site in (site_a, site_b):
            pool = {"url": site.url, "username": "root", "password": "demo"}
            status, body = ui.fetch_json("POST", "/api/v1/pools", pool)
            assert status == 201, body
            pool_ids.append(str(body["pool"]["id"]))

        # A job from the form: the tag on site A, to site B's default SR.
        ui.open("/replication")
        ui.submit(ui.driver.find_element(By.ID, "new-job"))
        ui.fill("name", "browser dr")
        ui.choose("pool_id", "Site A")
        ui.fill("targets", "xk-test")
        ui.choose_value("target", f"{pool_ids[1]}:{sr_b}")
        ui.fill("schedule", "*/10 * * * *")
        ui.fill("retention", "2")
        ui.click_primary()
        assert ui.path().startswith("/replication/jobs/")
        assert "SR " + sr_b in ui.text("#job-facts")
        ui.shot("replication-01-job")

        # Run it, slowly enough to watch the disk move.
        site_b.run(_xapi(site_b, "sim.inject_fault", "throttle", {"bytes_per_second": 512 << 10}))
        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "button.run-now"))
        assert ui.path().startswith("/operations/")
        _watch_the_disk_move(ui)
        ui.shot("replication-02-run-progress")
        site_b.run(_xapi(site_b, "sim.clear_faults"))
        ui.wait_text("#run-status", "success", seconds=120)
        ui.wait_for("#report")
        assert "first replication of this VM" in ui.text("#report")
        ui.shot("replication-03-run-report")

        # Start the replica: its page asks for a confirmation first.
        ui.open("/replication")
        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#replicas-table a.start-replica"))
        ui.click_primary()
        assert "tick the box" in ui.error()
        ui.driver.find_element(By.ID, "f-confirm").click()
        ui.shot("replication-04-start-confirm")
        ui.click_primary()
        assert ui.path().startswith("/operations/")
        ui.wait_text("#run-status", "success", seconds=120)
        ui.shot("replication-05-started")

        ui.open("/replication")
        assert "started" in ui.text("#replicas-table")
        status, listed = ui.fetch_json("GET", "/api/v1/replication/replicas")
        [replica] = listed["replicas"]
        assert replica["state"] == "started" and replica["source_vm_uuid"] == vm_uuid
        started = replica["started_vm_uuid"]
        assert site_b.run(_power_state(site_b, started)) == "Running"
        # The started VM holds the source's data.
        assert site_b.run(_disk_sha(site_b, started)) == site_a.run(_disk_sha(site_a, vm_uuid))
        ui.open(f"/replication/jobs/{replica['job_id']}")
        assert "Schedule paused" in ui.text("#paused-banner")
        ui.shot("replication-06-paused")

        # People → Grants offers the job: operator on it for a new user, who
        # then sees it and may run it, but neither change it nor fail back.
        rita = {"username": "rita", "password": RITA_PASSWORD}
        status, body = ui.fetch_json("POST", "/api/v1/users", rita)
        assert status == 201, body
        ui.open("/admin/grants")
        ui.choose("subject", "rita")
        ui.choose("role", "operator")
        ui.choose("object", "browser dr (pool Site A)")
        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#grant-form button"))
        assert "Granted." in ui.text(".flash-success")
        assert "browser dr" in ui.text("table.grants")
        ui.shot("replication-07-job-grant")
        ui.sign_out()
        ui.sign_in("rita", RITA_PASSWORD)
        ui.open("/replication")
        assert "browser dr" in ui.text("#jobs-table") and ui.has("#jobs-table button.run-now")
        assert "started" in ui.text("#replicas-table")
        assert not ui.has("#new-job") and not ui.has("#replicas-table a.failback")
        ui.open(f"/replication/jobs/{replica['job_id']}")
        assert ui.has("button.run-now") and "Delete the job" not in ui.driver.page_source
        ui.shot("replication-08-job-operator")
