"""Verify from the API and the storage page: damage is named precisely."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.web import Browser, complete_setup
from tests.unit.repo.repo_testlib import RefDisk, rot_block
from xenkeep.config import Settings
from xenkeep.web import keys

MiB = 1 << 20
VM = "5b0e5f4e-2f0c-4d9e-9a57-8c3c2a1d0e11"


async def test_verify_reports_a_flipped_block(
    browser: Browser, settings: Settings, tmp_path: Path
) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api("GET", "/api/v1/backup/verify")
    assert status == 200 and body["status"] == "never"
    store = tmp_path / "store"
    await asyncio.to_thread(store.mkdir)
    status, body = await browser.api("POST", "/api/v1/backup/storage", {"path": str(store)})
    assert status == 200, body

    manager = keys.backup(browser.server.app)
    disk = await asyncio.to_thread(RefDisk, tmp_path, "0", 12 * MiB, seed=5)
    for i in (1, 4):
        await asyncio.to_thread(disk.fill_block, i)
    async with manager.datastore.begin_point(VM, vm_record={}) as w:
        await w.write_vhd("0", disk.full_stream(), delta=False)
        point = await w.commit()

    status, body = await browser.api("POST", "/api/v1/backup/verify", {})
    assert status == 202, body
    report = await manager.wait_verify()
    assert report is not None and report["status"] == "ok" and report["points"] == 1

    full = manager.datastore.vmdir(VM).vhd_path("0", point.disks[0].file)
    await asyncio.to_thread(rot_block, full, 4, at=777, mask=0xFF)

    await browser.get("/backup/storage")
    status, _, resp = await browser.post_form("/backup/verify", {})
    assert status == 303 and resp.headers["Location"] == "/backup/storage"
    await manager.wait_verify()
    status, body = await browser.api("GET", "/api/v1/backup/verify")
    assert body["status"] == "damaged"
    [damaged] = body["damaged"]
    assert (damaged["vm_uuid"], damaged["point_id"], damaged["blocks"]) == (VM, point.id, [4])
    status, html, _ = await browser.get("/backup/storage")
    assert 'data-status="damaged"' in html and point.id in html


async def test_verify_schedule_from_the_page_and_the_api(
    browser: Browser, settings: Settings, tmp_path: Path
) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api("POST", "/api/v1/backup/storage", {"path": str(tmp_path)})
    assert status == 200, body
    status, body = await browser.api("GET", "/api/v1/backup/verify/schedule")
    assert status == 200 and body["schedule"] == "0 4 * * 0"

    status, body = await browser.api("PUT", "/api/v1/backup/verify/schedule", {"schedule": 5})
    assert status == 400 and body["error"]["field"] == "schedule"
    status, body = await browser.api(
        "PUT", "/api/v1/backup/verify/schedule", {"schedule": "15 2 * * 6"}
    )
    assert status == 200 and body["schedule"] == "15 2 * * 6" and body["next_run"]

    await browser.get("/backup/storage")
    status, html, _ = await browser.post_form("/backup/verify/schedule", {"schedule": "0 25 * * *"})
    assert status == 400 and "hour: 25 is outside 0-23" in html
    status, body = await browser.api("GET", "/api/v1/backup/verify/schedule")
    assert body["schedule"] == "15 2 * * 6"

    status, _, resp = await browser.post_form("/backup/verify/schedule", {"schedule": ""})
    assert status == 303 and resp.headers["Location"] == "/backup/storage"
    status, html, _ = await browser.get("/backup/storage")
    assert 'data-schedule=""' in html and "Off: verify runs only when started here." in html
