"""The job form's VM picker in Chromium: list another pool's VMs (two pools
both have a web-01), tick VMs (one of two that share a name in a pool, by its
uuid), exclude one, watch the live preview, save, and find the VMs on the
job's page."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.browser.ui import UI, Daemon
from tests.integration.backup.conftest import make_vm
from xapisim.testing import SimulatorThread
from xenkeep.xapi.client import XapiClient

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"


def test_pick_exclude_preview_and_save(ui: UI, xenkeepd: Daemon, tmp_path: Path) -> None:
    with (
        SimulatorThread(tmp_path / "pool", demo=True) as sim,
        SimulatorThread(tmp_path / "pool-b", demo=True) as sim_b,
    ):

        async def site_b() -> str:
            client = XapiClient(sim_b.url, "root", "demo")
            try:
                [pool] = await client.call("pool.get_all")
                await client.call("pool.set_name_label", pool, "Site B")
                [web] = await client.call("VM.get_by_name_label", "web-01")
                return str(await client.call("VM.get_uuid", web))
            finally:
                await client.close()

        web_b = sim_b.run(site_b())

        async def prepare() -> dict[str, str]:
            client = XapiClient(sim.url, "root", "demo")
            try:
                # A second db-01: the picker must offer it by its uuid.
                twin = await make_vm(client, sim.sim, "db-01")  # type: ignore[arg-type]
                records = await client.call("VM.get_all_records")
                uuids = {
                    str(r["name_label"]): str(r["uuid"])
                    for r in records.values()
                    if not r["is_a_template"] and not r["is_a_snapshot"] and r["uuid"] != twin.uuid
                }
                return {**uuids, "twin": twin.uuid}
            finally:
                await client.close()

        vms = sim.run(prepare())
        ui.set_up_through_api("alice", PASSWORD)
        ui.add_pool(sim.url)
        ui.add_pool(sim_b.url)

        ui.open("/backup/jobs/new")
        ui.fill("name", "picked by hand")
        ui.fill("schedule", "")

        def row(uuid: str, box: str) -> None:
            ui.driver.find_element(
                By.CSS_SELECTOR, f'#picker-table tr[data-vm-uuid="{uuid}"] input.{box}'
            ).click()

        # Another pool: its VMs are listed (its own web-01), then back.
        assert ui.has(f'#picker-table tr[data-vm-uuid="{vms["web-01"]}"]')
        ui.choose("pool_id", "Site B")
        ui.wait_for(f'#picker-table tr[data-vm-uuid="{web_b}"]')
        assert ui.text("#picker-heading") == "VMs of Site B"
        assert not ui.has(f'#picker-table tr[data-vm-uuid="{vms["web-01"]}"]')
        ui.choose("pool_id", "Demo pool")
        ui.wait_for(f'#picker-table tr[data-vm-uuid="{vms["twin"]}"]')

        # Two VMs share db-01: each row says so and is picked by its uuid.
        twin_row = ui.text(f'#picker-table tr[data-vm-uuid="{vms["twin"]}"]')
        assert "same name" in twin_row and vms["twin"][:8] in twin_row, twin_row
        assert "Running" in ui.text(f'#picker-table tr[data-vm-uuid="{vms["web-01"]}"]')

        # The shared name takes both; unticking one keeps the other, by its uuid.
        ui.choose("selector", "name")
        ui.fill("targets", "db-01")

        def ticked(uuid: str) -> bool:
            return ui.driver.find_element(
                By.CSS_SELECTOR, f'#picker-table tr[data-vm-uuid="{uuid}"] input.pick'
            ).is_selected()

        assert ticked(vms["twin"]) and ticked(vms["db-01"])
        ui.wait_text("#preview-count", "2 VMs selected now in Demo pool")
        assert "db-01 is the name of 2 VMs" in ui.text(".preview-shared")
        row(vms["twin"], "pick")
        assert ui.driver.find_element(By.ID, "f-targets").get_attribute("value") == vms["db-01"]
        assert ticked(vms["db-01"]) and not ticked(vms["twin"])
        ui.wait_text("#preview-count", "1 VM selected now in Demo pool")
        row(vms["db-01"], "pick")
        assert ui.driver.find_element(By.ID, "f-targets").get_attribute("value") == ""

        # Ticking chooses by name and fills the names field.
        row(vms["web-01"], "pick")
        row(vms["twin"], "pick")
        row(vms["mail-01"], "pick")
        field = ui.driver.find_element(By.ID, "f-targets")
        assert field.get_attribute("value") == f"web-01, {vms['twin']}, mail-01"
        assert ui.driver.find_element(By.ID, "f-selector").get_attribute("value") == "name"
        ui.wait_text("#preview-count", "3 VMs selected now in Demo pool")

        # Excluding one fills "Never back up"; the preview follows.
        row(vms["mail-01"], "exclude")
        assert ui.driver.find_element(By.ID, "f-exclude").get_attribute("value") == "mail-01"
        ui.wait_text("#preview-count", "2 VMs selected now in Demo pool")
        shown = ui.text("#preview-table")
        assert vms["web-01"] in shown and vms["twin"] in shown
        assert vms["mail-01"] not in shown and vms["db-01"] not in shown
        ui.shot("backup-08-vm-picker")

        # A name no VM bears is an error of the preview, and of saving.
        ui.fill("targets", f"web-01, {vms['twin']}, web-1")
        ui.wait_text(
            ".preview-error",
            "no VM named 'web-1' in pool Demo pool (VM names are exact"
            " (case matters); replicas, templates and snapshots are never chosen)",
        )
        ui.click_primary()
        assert "no VM named 'web-1'" in ui.error()
        ui.fill("targets", f"web-01, {vms['twin']}")
        ui.wait_text("#preview-count", "2 VMs selected now in Demo pool")
        ui.click_primary()

        # Saved: the job's page lists the VMs it takes now.
        assert ui.heading() == "Backup job picked by hand", ui.heading()
        taken = ui.driver.find_elements(By.CSS_SELECTOR, "#job-selected tr[data-vm-uuid]")
        assert sorted(str(t.get_attribute("data-vm-uuid")) for t in taken) == sorted(
            [vms["web-01"], vms["twin"]]
        )
        assert ui.text("#job-exclude") == "mail-01"
        ui.shot("backup-09-job-selected")
