"""Times shown in the appliance's time zone, named: jobs' next runs, run
logs, the audit log, the pools page and the console's backup list (a job
`0 2 * * *` in Europe/Paris reads 02:00 CET, not 01:00 UTC)."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

from tests.integration.backup.conftest import make_vm
from tests.integration.cli.conftest import Console, write_cli_config
from tests.support.web import Browser
from xapisim import RunningSimulator
from xenkeep.config import Settings
from xenkeep.pools.pool import Pool
from xenkeep.xapi.client import XapiClient


async def test_pages_and_console_show_the_appliance_zone(
    browser: Browser,
    settings: Settings,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    status, _ = await browser.api(
        "PUT", "/api/v1/appliance", {"name": "Paris", "timezone": "Europe/Paris"}
    )
    assert status == 200
    # The new-job form starts in the appliance's zone.
    status, page, _ = await browser.get("/backup/jobs/new")
    assert status == 200 and 'value="Europe/Paris"' in page

    await make_vm(client, pool_sim, "tz-01")
    store = tmp_path / "store"
    await asyncio.to_thread(store.mkdir)
    await browser.api("POST", "/api/v1/backup/storage", {"path": str(store)})
    # No zone given: the job's schedule reads in the appliance's zone.
    status, job = await browser.api(
        "POST",
        "/api/v1/backup/jobs",
        {
            "name": "nightly",
            "selector": "tag",
            "targets": ["xk-test"],
            "pool_id": str(pool.id),
            "schedule": "0 2 * * *",
        },
    )
    assert status == 201 and job["timezone"] == "Europe/Paris", job

    status, page, _ = await browser.get("/backup")
    text = html.unescape(page)
    # December: Paris is on CET, and 02:00 there is what the admin asked for.
    assert " 02:00 CET" in text or " 02:00 CEST" in text, text
    assert "UTC" not in text.split("<footer")[0].replace("UTC+", "")

    status, run = await browser.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
    assert status in (200, 202), run
    done = await browser.until_finished(f"/api/v1/backup/runs/{run['run_id']}", tries=600)
    assert done["status"] == "success", done
    status, page, _ = await browser.get(f"/operations/{run['run_id']}")
    assert "times in Europe/Paris" in page
    status, page, _ = await browser.get("/admin/audit")
    assert " CET" in page or " CEST" in page
    status, page, _ = await browser.get("/pools")
    assert " CET" in page or " CEST" in page

    console = Console(
        await asyncio.to_thread(
            write_cli_config, settings, browser.server.https_port, tmp_path / "cli.toml"
        )
    )
    code, out, err = await console("backup", "list")
    assert code == 0, err
    assert " 02:00 CET" in out or " 02:00 CEST" in out, out
