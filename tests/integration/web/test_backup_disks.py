"""Backup disks through the web UI and the API, against a real privileged helper
on real loop disks (systemctl played by SystemctlMountMock: no systemd here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.privhelper import Appliance, is_mounted, probe
from tests.support.web import Browser, complete_setup, make_settings
from tests.unit.repo.repo_testlib import RefDisk
from xenkeep.backup.kinds import USES_STORAGE, VERIFY
from xenkeep.backup.manager import DATASTORE_KEY
from xenkeep.config import Settings
from xenkeep.ops import OperationContext
from xenkeep.ops.manager import Outcome
from xenkeep.web import keys

pytestmark = pytest.mark.root

VM = "3c1b8f7e-1d2a-4e5f-8a9b-0c1d2e3f4a5b"


@pytest.fixture
def settings(tmp_path: Path, appliance: Appliance) -> Settings:
    return make_settings(tmp_path, privhelper_socket=appliance.socket)


async def test_a_disk_becomes_the_storage_and_survives_unmount_and_attach(
    browser: Browser, settings: Settings, appliance: Appliance, tmp_path: Path
) -> None:
    await complete_setup(browser, settings)
    disk = await asyncio.to_thread(appliance.new_disk)

    status, listing = await browser.api("GET", "/api/v1/backup/disks")
    assert status == 200 and listing["available"] is True, listing
    [entry] = [d for d in listing["disks"] if d["name"] == disk]
    assert entry["in_use"] == ""
    status, html, _ = await browser.get("/backup/storage")
    assert f'data-device="{disk}"' in html and "Erase and use for backups" in html

    # A mistyped confirmation reaches nothing: the disk stays blank.
    status, html, _ = await browser.post_form(f"/backup/disks/{disk}/format", {"confirm": "sda"})
    assert status == 400 and f"type {disk} to confirm" in html
    assert await probe(disk, "TYPE") is None

    status, _, resp = await browser.post_form(f"/backup/disks/{disk}/format", {"confirm": disk})
    assert status == 303 and resp.headers["Location"] == "/backup/storage"
    assert await probe(disk, "TYPE") == "xfs"
    status, storage = await browser.api("GET", "/api/v1/backup/storage")
    assert storage["configured"] and storage["path"] == str(appliance.mountpoint), storage
    assert storage["reflink"] is True
    status, html, _ = await browser.get("/backup/storage")
    assert 'id="disk-mounted"' in html and "Erase and use" not in html

    # A restore point on it.
    manager = keys.backup(browser.server.app)
    ref = await asyncio.to_thread(RefDisk, tmp_path, "0", 4 << 20, seed=3)
    await asyncio.to_thread(ref.fill_block, 1)
    async with manager.datastore.begin_point(VM, vm_record={"name_label": "kept"}) as w:
        await w.write_vhd("0", ref.full_stream(), delta=False)
        point = await w.commit()

    # A busy disk is not unmounted, and the daemon keeps it as its storage.
    busy = appliance.mountpoint / "busy"
    with await asyncio.to_thread(busy.open, "w"):
        status, body = await browser.api("POST", "/api/v1/backup/disks/detach")
    assert status == 400 and "busy" in body["error"]["message"], body
    assert await is_mounted(appliance.mountpoint)
    status, body = await browser.api("GET", f"/api/v1/backup/vms/{VM}/points")
    assert status == 200 and [p["id"] for p in body["points"]] == [point.id], body
    await asyncio.to_thread(busy.unlink)
    # The setting was given back too, so a restarted daemon finds it.
    assert await manager.db.get_setting(DATASTORE_KEY) == str(appliance.mountpoint)

    status, storage = await browser.api("POST", "/api/v1/backup/disks/detach")
    assert status == 200 and storage["configured"] is False, storage
    assert not await is_mounted(appliance.mountpoint)
    status, body = await browser.api("GET", f"/api/v1/backup/vms/{VM}/points")
    # No storage: nothing is listed from the empty mountpoint.
    assert status == 409 and body["error"]["code"] == "no_storage", body

    # Mounted again without formatting: the point is back.
    status, storage = await browser.api("POST", f"/api/v1/backup/disks/{disk}/attach")
    assert status == 200 and storage["configured"], storage
    assert [v["name"] for v in storage["vms"]] == ["kept"]
    status, body = await browser.api("GET", f"/api/v1/backup/vms/{VM}/points")
    assert status == 200 and [p["id"] for p in body["points"]] == [point.id]

    # The helper's refusals come back as field errors.
    status, body = await browser.api(
        "POST", "/api/v1/backup/disks/nosuchdisk/format", {"confirm": "nosuchdisk"}
    )
    assert status == 400 and body["error"]["field"] in ("device", ""), body


async def test_formatting_a_disk_is_an_operation_with_stages_and_a_log(
    browser: Browser, settings: Settings, appliance: Appliance
) -> None:
    await complete_setup(browser, settings)
    disk = appliance.new_disk()
    status, body = await browser.api(
        "POST", f"/api/v1/backup/disks/{disk}/format?wait=false", {"confirm": disk}
    )
    assert status == 202, body
    op_id = body["operation_id"]
    events = await browser.events(f"/api/v1/operations/{op_id}/events", "operation")
    op = events[-1]
    assert (op["kind"], op["status"], op["target"]) == ("disk-format", "success", f"disk:{disk}")
    assert op["stage"] == "open" and op["report"]["storage"]["configured"], op
    messages = [line["message"] for e in events for line in e["log"]]
    assert messages[0] == f"erasing {disk} and making XFS with reflink on it", messages
    assert any(m.startswith(f"{disk} is mounted at ") for m in messages), messages
    assert await probe(disk, "TYPE") == "xfs"
    status, html, _ = await browser.get(f"/operations/{op_id}")
    assert status == 200 and 'data-kind="disk-format"' in html and "Device" in html
    status, body = await browser.api("GET", "/api/v1/operations?kind=disk-format")
    assert [o["id"] for o in body["operations"]] == [op_id]
    await browser.api("POST", "/api/v1/backup/disks/detach")


async def test_a_storage_change_is_refused_while_a_verify_reads_it(
    browser: Browser, settings: Settings, appliance: Appliance, tmp_path: Path
) -> None:
    await complete_setup(browser, settings)
    store = tmp_path / "store"
    store.mkdir()
    await browser.api("POST", "/api/v1/backup/storage", {"path": str(store)})
    manager = keys.backup(browser.server.app)
    release = asyncio.Event()

    async def slow(ctx: OperationContext) -> Outcome:
        await release.wait()
        return Outcome()

    # A reader of the storage, as a verify or a backup is.
    op_id = await manager.ops.start(
        VERIFY, slow, target="datastore", title="verify", action="verify", claims=[USES_STORAGE]
    )
    disk = appliance.new_disk()
    status, body = await browser.api(
        "POST", f"/api/v1/backup/disks/{disk}/format", {"confirm": disk}
    )
    assert status == 409, body
    assert body["error"]["message"].startswith(f"cannot format {disk} while a verify runs"), body
    assert await probe(disk, "TYPE") is None  # nothing reached the disk
    status, html, _ = await browser.post_form(f"/backup/disks/{disk}/format", {"confirm": disk})
    assert status == 409 and "while a verify runs" in html
    release.set()
    await manager.ops.wait(op_id)
