"""People in Chromium against a real xenkeepd and the simulator: an
administrator creates a user and a group, grants the group viewer on one
VM; the user signs in with the temporary password, chooses their own, and
sees that VM and nothing else."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By

from tests.browser.ui import UI, Daemon
from xapisim.testing import SimulatorThread

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
VAL_PASSWORD = "my very own passphrase"


def shown_vms(ui: UI) -> list[str]:
    """The names in the dashboard's VM tables once the live view has drawn them."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            rows = ui.driver.find_elements(By.CSS_SELECTOR, "#pools-live tr[data-vm]")
            if rows or ui.has("#pools-empty"):
                return [r.find_element(By.TAG_NAME, "td").text for r in rows]
        except WebDriverException:
            pass  # redrawn meanwhile
        time.sleep(0.2)
    raise AssertionError("the dashboard never showed its pools")


def test_a_group_grant_shows_the_user_one_vm(ui: UI, xenkeepd: Daemon, tmp_path: Path) -> None:
    with SimulatorThread(tmp_path / "pool", demo=True) as sim:
        ui.set_up_through_api("alice", PASSWORD)
        ui.add_pool(sim.url)

        # The administrator sees every VM.
        ui.open("/")
        assert {"web-01", "db-01"} <= set(shown_vms(ui))

        # A user with a temporary password.
        ui.open("/admin/users")
        ui.fill("username", "val")
        ui.fill("display_name", "Val Viewer")
        ui.click_primary()
        temporary = ui.text("#temporary-password")
        assert "val" in ui.text("#users")
        ui.shot("people-01-user-created")

        # A group with val in it, and viewer on web-01 for the group.
        ui.open("/admin/groups")
        ui.fill("name", "web viewers")
        ui.click_primary()
        assert ui.heading() == "Group web viewers"
        ui.choose("user_id", "val")
        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#member-form button"))
        assert "val" in ui.text("#members")
        ui.choose("role", "viewer")
        ui.choose("object", "VM web-01")
        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#grant-form button"))
        assert "Granted." in ui.text(".flash-success")
        assert "web-01" in ui.text("table.grants")
        ui.shot("people-02-group-grant")
        ui.sign_out()

        # val signs in, must choose a password first, then sees web-01 only.
        ui.sign_in("val", temporary)
        assert ui.path() == "/account/password", ui.path()
        ui.wait_for("#must-change")
        ui.fill("old", temporary)
        ui.fill("new", VAL_PASSWORD)
        ui.fill("confirm", VAL_PASSWORD)
        ui.click_primary()
        assert ui.path() == "/account", ui.driver.page_source[-2000:]
        assert "web viewers" in ui.text("#account-profile")
        ui.open("/")
        assert shown_vms(ui) == ["web-01"]
        page = ui.driver.page_source
        assert "db-01" not in page and "mail-01" not in page
        links = [a.text for a in ui.driver.find_elements(By.CSS_SELECTOR, "header nav a")]
        assert "People" not in links and "Pools" not in links and "Settings" not in links
        ui.shot("people-03-user-sees-one-vm")

        # The pages of what val may not see say so.
        ui.open("/admin/users")
        assert ui.heading() == "Not allowed"
