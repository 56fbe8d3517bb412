"""Restoring the appliance's configuration in the first-boot wizard, in
Chromium: an appliance (configured through its API, in this process) copies
itself into a directory and is lost; a fresh xenkeepd's wizard attaches that
directory, refuses a wrong passphrase, shows what the copy holds, restores
it, and its old administrator signs in to find the job and the pool."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.browser.ui import UI, Daemon
from tests.integration.appliance_backup.conftest import PASSPHRASE, first_copy
from tests.support.web import Browser, complete_setup, make_settings
from xapisim.testing import SimulatorThread
from xenkeep.app import create_app
from xenkeep.web import keys
from xenkeep.web.server import start_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"


async def lost_appliance(root: Path, pool_url: str, store: Path) -> None:
    """An appliance named "keep-lyon" with a pool and a job, copied into
    ``store``; then its state directory is deleted."""
    settings = make_settings(root)
    async with start_server(create_app(settings)) as server:
        b = Browser(server)
        try:
            await complete_setup(b, settings, "alice")
            await b.api("PUT", "/api/v1/appliance", {"name": "keep-lyon", "timezone": "UTC"})
            pool = await keys.pools(server.app).add(pool_url, "root", "demo")
            status, body = await b.api("POST", "/api/v1/backup/storage", {"path": str(store)})
            assert status == 200, body
            status, body = await b.api(
                "POST",
                "/api/v1/backup/jobs",
                {
                    "name": "nightly",
                    "selector": "tag",
                    "targets": ["prod"],
                    "pool_id": str(pool.id),
                },
            )
            assert status == 201, body
            await first_copy(b)
        finally:
            await b.close()
    shutil.rmtree(root)


def test_restore_the_configuration_in_the_wizard(ui: UI, xenkeepd: Daemon, tmp_path: Path) -> None:
    store = tmp_path / "old-backup-disk"
    store.mkdir()
    with SimulatorThread(tmp_path / "pool", demo=True) as sim:
        (tmp_path / "lost").mkdir()
        asyncio.run(lost_appliance(tmp_path / "lost", sim.url, store))

        ui.open("/")
        ui.wait_step("token")
        ui.enter_setup_token(xenkeepd.setup_token())
        ui.wait_step("admin")
        ui.create_admin("bob", PASSWORD)
        ui.wait_step("totp")
        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "button[value=skip]"))

        ui.wait_step("restore")
        ui.shot("appliance-restore-01-step")
        # No privileged helper here: the old storage is a directory.
        ui.fill("path", str(store))
        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#step-directory button"))
        ui.wait_step("restore")
        copy = ui.wait_for("#f-copy option")
        assert "keep-lyon" in copy.text, copy.text

        ui.fill("secret", "not the passphrase at all")
        ui.click_primary()
        assert "does not open this copy" in ui.error()
        ui.shot("appliance-restore-02-wrong-passphrase")

        ui.fill("secret", PASSPHRASE)
        ui.click_primary()
        ui.wait_for("#copy-summary")
        assert ui.text("#copy-appliance") == "keep-lyon"
        assert ui.text("#copy-jobs") == "1: nightly"
        assert ui.text("#copy-pools") == "1: Demo pool"
        assert ui.text("#copy-users") == "1: alice"
        ui.shot("appliance-restore-03-summary")

        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#step-restore-form button"))
        assert ui.path().startswith("/login"), ui.path()
        assert "keep-lyon is restored" in ui.text(".flash")
        ui.shot("appliance-restore-04-sign-in")

        ui.sign_in("alice", PASSWORD)
        ui.wait_for("header nav")
        assert ui.signed_in_as() == "alice"
        assert "keep-lyon" in ui.text("header .brand")
        ui.open("/backup")
        assert "nightly" in ui.text("main")
        ui.open("/pools")
        assert "Demo pool" in ui.text("main")
        ui.open("/backup/appliance")
        assert ui.wait_for("#key-status").get_attribute("data-mode") == "passphrase"
        assert ui.has("#copies tr[data-copy]")
        ui.shot("appliance-restore-05-appliance-backup-page")
