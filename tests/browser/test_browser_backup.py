"""Backups in Chromium against a real xenkeepd and the simulator: set up the
storage, create a job, run it and watch its progress, then restore."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By

from tests.browser.ui import UI, Daemon
from tests.integration.backup.conftest import make_vm, vdi_sha256
from xapisim.testing import SimulatorThread
from xenkeep.xapi.client import XapiClient

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
# How a disk's progress reads, e.g. "1.2 MiB of 4.0 MiB (30 %)".
PROGRESS_TEXT = re.compile(r"[\d.]+ [KMG]?i?B of [\d.]+ [KMG]?i?B \(\d+ %\)")


def signed_in_with_pool(ui: UI, sim: SimulatorThread) -> int:
    """First boot through the API from the page, then the simulator's pool; its id."""
    ui.set_up_through_api("alice", PASSWORD)
    status, body = ui.fetch_json(
        "POST", "/api/v1/pools", {"url": sim.url, "username": "root", "password": "demo"}
    )
    assert status == 201, body
    return int(body["pool"]["id"])


def test_create_job_run_watch_and_restore(ui: UI, xenkeepd: Daemon, tmp_path: Path) -> None:
    with SimulatorThread(tmp_path / "pool", demo=True) as sim:

        async def prepare() -> tuple[str, str, str]:
            client = XapiClient(sim.url, "root", "demo")
            try:
                vm = await make_vm(client, sim.sim, "browser-backup-01")  # type: ignore[arg-type]
                sr = await client.call(
                    "pool.get_default_SR", (await client.call("pool.get_all"))[0]
                )
                return vm.uuid, await vm.sha256(), await client.call("SR.get_uuid", sr)
            finally:
                await client.close()

        vm_uuid, digest, sr_uuid = sim.run(prepare())

        async def xapi(method: str, *args: object) -> object:
            client = XapiClient(sim.url, "root", "demo")
            try:
                return await client.call(method, *args)
            finally:
                await client.close()

        # First boot through the API from the page, then the pool.
        ui.set_up_through_api("alice", PASSWORD)
        pool_id = ui.add_pool(sim.url)["id"]

        # Backup storage on an existing directory.
        store = tmp_path / "store"
        store.mkdir()
        ui.open("/backup/storage")
        ui.fill("path", str(store))
        ui.click_primary()
        assert "reflink" in ui.text("#reflink")
        ui.shot("backup-01-storage")

        # A job by tag.
        ui.open("/backup/jobs/new")
        ui.fill("name", "browser nightly")
        ui.choose("pool_id", "Demo pool")
        ui.fill("targets", "xk-test")
        ui.fill("schedule", "30 2 * * *")
        ui.fill("retention", "3")
        ui.click_primary()
        # Saved: the job's own page.
        assert ui.heading() == "Backup job browser nightly", ui.heading()
        ui.open("/backup")
        assert "browser nightly" in ui.text("#jobs-table")
        ui.shot("backup-02-jobs")

        # Run it, slowly enough to watch the progress.
        sim.run(xapi("sim.inject_fault", "throttle", {"bytes_per_second": 256 << 10}))
        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#jobs-table button.run-now"))
        assert ui.path().startswith("/backup/runs/")
        seen_bytes = seen_vm = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (seen_bytes and seen_vm):
            for row in ui.driver.find_elements(By.CSS_SELECTOR, "#tasks-table tbody tr"):
                try:
                    tds = row.find_elements(By.TAG_NAME, "td")
                    cells = [c.text for c in tds]
                    done = int(tds[5].get_attribute("data-bytes") or 0) if len(tds) > 5 else 0
                except WebDriverException:
                    continue  # the script redrew the table meanwhile (stale node)
                if cells[1:2] == ["0"] and done > 0 and cells[2] == "export":
                    assert PROGRESS_TEXT.fullmatch(cells[5]), cells
                    assert cells[6].endswith("/s"), cells
                    seen_bytes = cells[4] == "full"
                elif cells[1:2] == [""] and done > 0 and cells[2] == "export":
                    # The VM's own row adds up its disks while they move.
                    assert PROGRESS_TEXT.fullmatch(cells[5]), cells
                    seen_vm = True
            time.sleep(0.1)
        assert seen_bytes, "no live progress was shown for disk 0"
        assert seen_vm, "the VM's row showed no progress while its disk moved"
        ui.shot("backup-03-run-progress")
        sim.run(xapi("sim.clear_faults"))
        ui.wait_text("#run-status", "success")
        ui.wait_for("#report")
        assert "first backup of this VM" in ui.text("#report")
        ui.shot("backup-04-run-report")

        # Restore the point as a new VM.
        ui.open(f"/backup/restore?vm={vm_uuid}")
        ui.choose_value("target", f"{pool_id}:{sr_uuid}")
        ui.fill("name", "restored in the browser")
        ui.click_primary()
        assert ui.path().startswith("/backup/runs/")
        ui.wait_text("#run-status", "success")
        ui.wait_for("#report")
        assert "new VM " in ui.text("#report-into")
        ui.shot("backup-05-restore")

        async def restored_digest() -> str:
            client = XapiClient(sim.url, "root", "demo")
            try:
                [new_vm] = await client.call("VM.get_by_name_label", "restored in the browser")
                vbd = (await client.call("VM.get_VBDs", new_vm))[0]
                return await vdi_sha256(client, await client.call("VBD.get_VDI", vbd))
            finally:
                await client.close()

        assert sim.run(restored_digest()) == digest


def test_the_job_page_and_deleting_a_point(ui: UI, xenkeepd: Daemon, tmp_path: Path) -> None:
    """From a job's page: run it twice, read its history and its VM's points;
    then delete the older point from the restore page, which asks for the
    VM's name first."""
    with SimulatorThread(tmp_path / "pool", demo=True) as sim:

        async def prepare() -> str:
            client = XapiClient(sim.url, "root", "demo")
            try:
                vm = await make_vm(client, sim.sim, "browser-points-01")  # type: ignore[arg-type]
                return vm.uuid
            finally:
                await client.close()

        vm_uuid = sim.run(prepare())
        pool_id = signed_in_with_pool(ui, sim)
        store = tmp_path / "store"
        store.mkdir()
        status, body = ui.fetch_json("POST", "/api/v1/backup/storage", {"path": str(store)})
        assert status == 200, body
        status, job = ui.fetch_json(
            "POST",
            "/api/v1/backup/jobs",
            {"name": "pages", "selector": "tag", "targets": ["xk-test"], "pool_id": str(pool_id)},
        )
        assert status == 201, job

        for _ in range(2):
            ui.open(f"/backup/jobs/{job['id']}")
            ui.submit(ui.driver.find_element(By.ID, "run-now"))
            assert ui.path().startswith("/backup/runs/"), ui.path()
            ui.wait_text("#run-status", "success")
        ui.open(f"/backup/jobs/{job['id']}")
        history = ui.driver.find_elements(By.CSS_SELECTOR, "#job-runs .status-success")
        assert len(history) == 2, ui.text("#job-runs")
        vm_row = ui.text(f'#job-vms tr[data-vm-uuid="{vm_uuid}"]')
        assert "browser-points-01" in vm_row and "full" in vm_row and "delta" in vm_row, vm_row
        assert "manual runs only" in ui.text("#job-rpo")
        ui.shot("backup-06-job-page")

        status, body = ui.fetch_json("GET", f"/api/v1/backup/vms/{vm_uuid}/points")
        older, newer = (p["id"] for p in body["points"])
        ui.open(f"/backup/restore?vm={vm_uuid}")
        # The VM chosen is named on the page.
        assert "browser-points-01" in ui.text("#selected-vm h2")
        ui.driver.find_element(
            By.CSS_SELECTOR, f'#points tr[data-point-id="{older}"] a.point-delete'
        ).click()
        ui.wait_for("#point-delete-form")
        assert older in ui.heading()
        assert "merged into the next one" in ui.text("#confirm")
        ui.shot("backup-07-delete-point")
        ui.fill("confirm", "browser-points")
        ui.submit(ui.driver.find_element(By.ID, "confirm-delete"))
        assert "type browser-points-01 to confirm" in ui.error()
        ui.fill("confirm", "browser-points-01")
        ui.submit(ui.driver.find_element(By.ID, "confirm-delete"))
        assert ui.path().startswith("/operations/"), ui.path()
        ui.wait_text("#run-status", "success")
        ui.open(f"/backup/restore?vm={vm_uuid}")
        rows = ui.driver.find_elements(By.CSS_SELECTOR, "#points tbody tr")
        assert [r.get_attribute("data-point-id") for r in rows] == [newer]
        ui.shot("backup-08-after-delete")
