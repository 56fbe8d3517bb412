"""Backups through the daemon's web UI and JSON API: storage, job, live run,
report, restore — against the simulator, as an administrator would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.integration.backup.conftest import TestVm, make_vm, storage_and_job, vdi_sha256
from tests.support.web import Browser, complete_setup
from tests.unit.repo.repo_testlib import rot_block
from xapisim import RunningSimulator
from xenkeep.app import database
from xenkeep.config import Settings
from xenkeep.pools.pool import Pool
from xenkeep.web import keys
from xenkeep.xapi.client import XapiClient


async def wait_run(browser: Browser, run_id: int) -> dict[str, Any]:
    return await browser.until_finished(f"/api/v1/backup/runs/{run_id}", tries=600)


async def backed_up(
    browser: Browser,
    admin_pool: tuple[Pool, XapiClient],
    sim: RunningSimulator,
    store: Path,
    name: str,
) -> tuple[TestVm, dict[str, Any]]:
    """A new test VM named ``name``, ``store`` as the storage, a job over the
    test VMs and its first run, done: (the VM, the job)."""
    pool, client = admin_pool
    vm = await make_vm(client, sim, name)
    job = await storage_and_job(browser, pool.id, store, f"job of {name}")
    status, started = await browser.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
    assert status == 202, started
    assert (await wait_run(browser, started["run_id"]))["status"] == "success"
    return vm, job


async def test_backup_and_restore_through_the_api_and_pages(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    vm = await make_vm(client, pool_sim, "web-backup-01")
    want = await vm.sha256()

    store = tmp_path / "store"
    await asyncio.to_thread(store.mkdir)
    status, body = await browser.api("POST", "/api/v1/backup/storage", {"path": str(store)})
    assert status == 200, body
    assert body["configured"] and body["capacity"] > 0 and "reflink" in body

    status, job = await browser.api(
        "POST",
        "/api/v1/backup/jobs",
        {
            "name": "nightly",
            "selector": "tag",
            "targets": ["xk-test"],
            "pool_id": str(pool.id),
            "schedule": "0 3 * * *",
            "retention": 3,
        },
    )
    assert status == 201, job
    assert job["next_run"] is not None

    status, bad = await browser.api(
        "POST", "/api/v1/backup/jobs", {"name": "x", "selector": "tag", "pool_id": "1"}
    )
    assert status == 400 and bad["error"]["code"] == "invalid_input"

    status, started = await browser.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
    assert status == 202, started
    run = await wait_run(browser, started["run_id"])
    assert run["status"] == "success", run
    assert run["report"]["pool"] == pool.name
    [row] = run["report"]["vms"]
    assert row["transfers"] == {"0": "full"}
    assert any(t["disk_key"] == "0" and t["bytes"] > 0 for t in run["tasks"])

    # The pages render what the API says.
    status, html, _ = await browser.get("/backup")
    assert status == 200 and "nightly" in html and "success" in html
    status, html, _ = await browser.get(f"/backup/runs/{run['id']}")
    assert status == 200 and "first backup of this VM" in html
    assert "operation.js" in html and "<script>" not in html
    status, html, _ = await browser.get("/backup/storage")
    assert status == 200 and vm.uuid in html and "web-backup-01</a>" in html
    status, html, _ = await browser.get(f"/backup/restore?vm={vm.uuid}")
    assert status == 200 and 'name="point_id"' in html
    status, html, _ = await browser.get(f"/backup/jobs/{job['id']}")
    assert status == 200 and "Backup job nightly" in html and 'id="run-now"' in html
    status, html, _ = await browser.get(f"/backup/jobs/{job['id']}/edit")
    assert status == 200 and 'value="nightly"' in html

    status, points = await browser.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
    assert status == 200 and len(points["points"]) == 1
    sr_ref = await client.call("pool.get_default_SR", (await client.call("pool.get_all"))[0])
    sr = await client.call("SR.get_uuid", sr_ref)

    # Restore through the form, as the UI does: pool and SR are one choice.
    status, html, _ = await browser.get(f"/backup/restore?vm={vm.uuid}")
    assert f'<option value="{pool.id}:{sr}">' in html, html
    # The demo's two local SRs are both "Local storage": the host tells them apart.
    assert "Local storage on xcp-host-1 (ext, " in html
    assert "Local storage on xcp-host-2 (ext, " in html
    status, _text, resp = await browser.post_form(
        "/backup/restore",
        {
            "vm_uuid": vm.uuid,
            "point_id": points["points"][0]["id"],
            "target": f"{pool.id}:{sr}",
            "name": "restored from the web",
        },
    )
    assert status == 303, _text
    run_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    restored = await wait_run(browser, run_id)
    assert restored["status"] == "success", restored
    new_vm = restored["report"]["new_vm"]
    vbd = (await client.call("VM.get_VBDs", new_vm))[0]
    assert await vdi_sha256(client, await client.call("VBD.get_VDI", vbd)) == want
    # The finished restore's page says what was restored into what.
    status, html, _ = await browser.get(f"/backup/runs/{run_id}")
    assert status == 200, html
    new_uuid = await client.call("VM.get_uuid", new_vm)
    assert 'id="report-into"' in html and new_uuid in html
    assert f"into new VM {new_uuid} (1 disk)" in html  # the log's summary line


async def test_job_form_validation_and_storage_errors(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    status, html, _ = await browser.get("/backup/jobs/new")
    assert status == 200
    status, html, _ = await browser.post_form(
        "/backup/jobs", {"name": "", "selector": "tag", "targets": "x", "pool_id": "1"}
    )
    assert status == 400 and "form-error" in html
    status, html, _ = await browser.post_form("/backup/storage", {"path": "/no/such/dir"})
    assert status == 400 and "not an existing directory" in html
    status, body = await browser.api("GET", "/api/v1/backup/storage")
    assert status == 200 and body == {"configured": False, "problem": None}


async def test_report_mail_form(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    status, html, _ = await browser.get("/backup/mail")
    assert status == 200 and 'id="mail-form"' in html
    status, html, _ = await browser.post_form(
        "/backup/mail",
        {
            "host": "mail.example.net",
            "port": "587",
            "starttls": "on",
            "sender": "nobody",
            "recipients": "ops@example.net",
        },
    )
    assert status == 400 and "sender" in html
    status, _html, _ = await browser.post_form(
        "/backup/mail",
        {
            "host": "mail.example.net",
            "port": "587",
            "starttls": "on",
            "password": "pw",
            "sender": "xk@example.net",
            "recipients": "ops@example.net",
        },
    )
    assert status == 303
    status, body = await browser.api("GET", "/api/v1/backup/smtp")
    assert body["configured"] and body["starttls"] and "password" not in body
    assert body["recipients"] == ["ops@example.net"]
    raw = await database(browser.server.app).get_setting("backup.smtp")
    assert raw is not None and "password_enc" in raw and '"pw"' not in raw
    smtp = await keys.backup(browser.server.app).smtp_settings()
    assert smtp is not None and smtp.password == "pw"
    status, _html, _ = await browser.post_form("/backup/mail", {"host": ""})
    assert status == 303
    status, body = await browser.api("GET", "/api/v1/backup/smtp")
    assert body == {"configured": False}


async def test_disks_without_the_privileged_helper(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api("GET", "/api/v1/backup/disks")
    assert status == 200 and body["available"] is False
    status, html, _ = await browser.get("/backup/storage")
    assert status == 200 and 'id="disks-unavailable"' in html
    status, body = await browser.api(
        "POST", "/api/v1/backup/disks/xvdb/format", {"confirm": "xvdb"}
    )
    assert status == 503 and "privileged helper" in body["error"]["message"]
    status, body = await browser.api("POST", "/api/v1/backup/disks/xvdb/format", {})
    assert status == 400 and body["error"]["field"] == "confirm"
    status, html, _ = await browser.post_form("/backup/disks/xvdb/attach", {})
    assert status == 503 and "privileged helper" in html


async def test_run_progress_is_pushed_until_the_run_ends(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    await make_vm(client, pool_sim, "pushed-01", size=4 * 1024 * 1024)
    job = await storage_and_job(browser, pool.id, tmp_path / "store", "pushed")
    # Slow enough that the export is seen moving.
    await client.call("sim.inject_fault", "throttle", {"bytes_per_second": 1024 * 1024})
    status, started = await browser.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
    assert status == 202, started
    run_id = started["run_id"]

    status, _ = await browser.api("GET", "/api/v1/backup/runs/999999/events")
    assert status == 404
    # The stream ends by itself once the run has finished.
    events = await browser.events(f"/api/v1/backup/runs/{run_id}/events", "run")
    assert events[-1]["status"] == "success", events[-1]
    assert any(e["status"] == "running" for e in events)
    exported = [t["bytes"] for e in events for t in e["tasks"] if t["disk_key"] == "0"]
    assert len({b for b in exported if b}) >= 2, exported  # bytes seen growing
    ids = [line["id"] for e in events for line in e["log"]]
    assert ids == sorted(set(ids)) and ids, ids  # every log line once, in order


async def test_failed_runs_and_restores_render_their_cause(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    vm, job = await backed_up(browser, admin_pool, pool_sim, tmp_path / "store", "web-backup-02")

    # A backup whose snapshot the pool refuses.
    await client.call(
        "sim.inject_fault", "fail_call", {"method": "VM.snapshot", "error": ["TOO_BUSY"]}
    )
    status, started = await browser.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
    failed = await wait_run(browser, started["run_id"])
    await client.call("sim.clear_faults")
    assert failed["status"] == "failed", failed
    status, html, _ = await browser.get(f"/backup/runs/{failed['id']}")
    assert status == 200, html
    assert "TOO_BUSY" in html and 'id="report"' in html

    # A restore to an SR the pool does not have is refused before any run exists.
    status, points = await browser.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
    restore = {
        "vm_uuid": vm.uuid,
        "point_id": points["points"][0]["id"],
        "pool_id": str(pool.id),
        "sr_uuid": "00000000-0000-4000-8000-000000000000",
    }
    status, refused = await browser.api("POST", "/api/v1/backup/restore", restore)
    assert status == 400, refused
    assert "has no SR 00000000-0000-4000-8000-000000000000" in refused["error"]["message"]
    assert refused["error"]["field"] == "sr_uuid"
    # One the pool refuses on the way fails, and its page says why.
    sr_ref = await client.call("pool.get_default_SR", (await client.call("pool.get_all"))[0])
    restore["sr_uuid"] = await client.call("SR.get_uuid", sr_ref)
    await client.call(
        "sim.inject_fault", "fail_call", {"method": "VDI.create", "error": ["SR_FULL", "1", "0"]}
    )
    status, started = await browser.api("POST", "/api/v1/backup/restore", restore)
    assert status == 202, started
    failed = await wait_run(browser, started["run_id"])
    await client.call("sim.clear_faults")
    assert failed["status"] == "failed", failed
    status, html, _ = await browser.get(f"/backup/runs/{failed['id']}")
    assert status == 200, html
    tasks = html.split('id="tasks-table"')[1].split("</table>")[0]
    assert "SR_FULL" in tasks and "running" not in tasks, tasks
    status, html, _ = await browser.get("/backup")
    assert status == 200 and "failed" in html


async def restored_sha(
    browser: Browser, client: XapiClient, pool: Pool, vm_uuid: str, point: str
) -> str:
    """Restore disk 0 of a point as a new VDI; its sha256 (the VDI is removed)."""
    sr_ref = await client.call("pool.get_default_SR", (await client.call("pool.get_all"))[0])
    status, body = await browser.api(
        "POST",
        "/api/v1/backup/restore",
        {
            "pool_id": str(pool.id),
            "vm_uuid": vm_uuid,
            "point_id": point,
            "sr_uuid": await client.call("SR.get_uuid", sr_ref),
            "disk": "0",
        },
    )
    assert status == 202, body
    run = await wait_run(browser, body["run_id"])
    assert run["status"] == "success", run
    [vdi] = run["report"]["new_vdis"]
    digest = await vdi_sha256(client, vdi)
    await client.call("VDI.destroy", vdi)
    return digest


async def test_a_full_datastore_is_emptied_by_retention_and_deletion(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    vm = await make_vm(client, pool_sim, "web-prune-01")
    job = await storage_and_job(browser, pool.id, tmp_path / "store", "prunable", retention=4)

    async def backup() -> str:
        status, started = await browser.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
        assert status == 202, started
        run = await wait_run(browser, started["run_id"])
        assert run["status"] == "success", run
        digests[run["report"]["vms"][0]["point_id"]] = await vm.sha256()
        await vm.scribble()
        return str(run["report"]["vms"][0]["point_id"])

    async def listed() -> list[str]:
        status, body = await browser.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
        assert status == 200, body
        return [p["id"] for p in body["points"]]

    async def all_restore() -> None:
        for pid in await listed():
            assert await restored_sha(browser, client, pool, vm.uuid, pid) == digests[pid], pid

    digests: dict[str, str] = {}
    ids = [await backup() for _ in range(4)]

    # Lowering the retention applies it at once: no run needed (a full
    # datastore would make that run fail).
    status, body = await browser.api(
        "PUT",
        f"/api/v1/backup/jobs/{job['id']}",
        {**job, "targets": job["targets"], "retention": 2},
    )
    assert status == 200, body
    status, found = await browser.api("GET", "/api/v1/operations?kind=prune")
    assert status == 200 and len(found["operations"]) == 1, found
    pruned = await browser.until_finished(f"/api/v1/operations/{found['operations'][0]['id']}")
    assert pruned["status"] == "success", pruned
    assert pruned["report"]["merged"] == 2
    assert await listed() == ids[2:]
    await all_restore()

    # On demand too (nothing left to merge now).
    status, body = await browser.api("POST", f"/api/v1/backup/jobs/{job['id']}/prune")
    assert status == 202, body
    again = await browser.until_finished(f"/api/v1/operations/{body['operation_id']}")
    assert again["status"] == "success" and again["report"]["merged"] == 0, again

    # The page's delete link asks for the VM's name, and without it changes nothing.
    status, html, _ = await browser.get(f"/backup/restore?vm={vm.uuid}")
    assert status == 200 and f"/backup/vms/{vm.uuid}/points/{ids[2]}/delete" in html
    status, html, _ = await browser.get(f"/backup/vms/{vm.uuid}/points/{ids[2]}/delete")
    assert status == 200 and "Type the VM&#39;s name to confirm: web-prune-01" in html, html
    for typed in ({}, {"confirm": "on"}, {"confirm": "web-prune-0"}):
        status, html, _ = await browser.post_form(
            f"/backup/vms/{vm.uuid}/points/{ids[2]}/delete", typed
        )
        assert status == 400 and "type web-prune-01 to confirm" in html, (typed, html)
    assert await listed() == ids[2:]
    # Three points (a higher retention prunes nothing): delete the middle one.
    status, body = await browser.api(
        "PUT", f"/api/v1/backup/jobs/{job['id']}", {**job, "retention": 5}
    )
    assert status == 200, body
    ids.append(await backup())
    assert await listed() == ids[2:]
    status, _html, resp = await browser.post_form(
        f"/backup/vms/{vm.uuid}/points/{ids[3]}/delete", {"confirm": "web-prune-01"}
    )
    assert status == 303, _html
    op_path = resp.headers["Location"].replace("/operations/", "/api/v1/operations/")
    deleted = await browser.until_finished(op_path)
    assert deleted["status"] == "success", deleted
    assert deleted["report"]["merged_into"] == ids[4]
    assert await listed() == [ids[2], ids[4]]
    await all_restore()

    # The API: the newest is dropped; bad input is refused and changes nothing.
    status, body = await browser.api("DELETE", f"/api/v1/backup/vms/{vm.uuid}/points/{ids[4]}")
    assert status == 202, body
    done = await browser.until_finished(f"/api/v1/operations/{body['operation_id']}")
    assert done["status"] == "success" and done["report"]["merged_into"] is None, done
    assert await listed() == [ids[2]]
    status, body = await browser.api("DELETE", f"/api/v1/backup/vms/not-a-uuid/points/{ids[2]}")
    assert status == 400 and "is not a VM uuid" in body["error"]["message"], body
    status, body = await browser.api(
        "DELETE", f"/api/v1/backup/vms/{vm.uuid}/points/20990101T000000Z-000099"
    )
    assert status == 404, body
    status, body = await browser.api("DELETE", f"/api/v1/backup/vms/{vm.uuid}/points/..%2Fx")
    assert status in (400, 404), body
    assert await listed() == [ids[2]]
    await all_restore()


async def test_a_damaged_point_on_the_pages_the_api_and_the_salvage_choice(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    vm, _job = await backed_up(browser, admin_pool, pool_sim, tmp_path / "store", "web-damage-01")
    status, body = await browser.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
    [point] = body["points"]
    assert point["damage"] == []
    sr_ref = await client.call("pool.get_default_SR", (await client.call("pool.get_all"))[0])
    sr = await client.call("SR.get_uuid", sr_ref)
    request = {"pool_id": str(pool.id), "vm_uuid": vm.uuid, "point_id": point["id"]}

    # The choice is a JSON boolean, nothing else.
    status, bad = await browser.api(
        "POST", "/api/v1/backup/restore", {**request, "sr_uuid": sr, "salvage": "yes"}
    )
    assert status == 400 and bad["error"]["field"] == "salvage", bad

    # Block 0 of the stored full rots; a restore stops at it, and says where.
    manager = keys.backup(browser.server.app)
    ds = manager.datastore
    full = ds.vmdir(vm.uuid).vhd_path("0", await asyncio.to_thread(first_file, ds, vm.uuid))
    await asyncio.to_thread(rot_block, full, 0, at=31)
    status, body = await browser.api("POST", "/api/v1/backup/restore", {**request, "sr_uuid": sr})
    assert status == 202, body
    failed = await wait_run(browser, body["run_id"])
    assert failed["status"] == "failed"
    assert f"restore point {point['id']}" in failed["error"] and "block 0 of" in failed["error"]

    # The API and the restore page show the point damaged, with the block.
    status, body = await browser.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
    [listed] = body["points"]
    assert [(d["disk"], d["blocks"]) for d in listed["damage"]] == [("0", [0])]
    status, html, _ = await browser.get(f"/backup/restore?vm={vm.uuid}&point={listed['id']}")
    assert status == 200 and 'data-damaged="true"' in html
    assert "disk 0: block 0 of" in html and 'name="salvage"' in html

    # Restore what can be read, through the form: kept, listed, still failed.
    status, _text, resp = await browser.post_form(
        "/backup/restore",
        {
            "vm_uuid": vm.uuid,
            "point_id": point["id"],
            "target": f"{pool.id}:{sr}",
            "disk": "0",
            "salvage": "on",
        },
    )
    assert status == 303, _text
    run_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    salvaged = await wait_run(browser, run_id)
    assert salvaged["status"] == "failed", salvaged
    assert salvaged["report"]["salvage"] is True
    assert salvaged["report"]["damage"][0]["zeroed"] == [0]
    status, html, _ = await browser.get(f"/backup/runs/{run_id}")
    assert status == 200 and 'id="report-damage"' in html
    assert "damaged blocks <span" in html and "were written as zeros" in html


def first_file(ds: Any, vm_uuid: str) -> str:
    return str(ds.points(vm_uuid)[0].disks[0].file)
