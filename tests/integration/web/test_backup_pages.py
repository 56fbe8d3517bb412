"""The pages an administrator lives with: a job's page, confirmation pages
before anything is deleted, a run that ends with a warning, the test mail
with the server's answer, the dashboard's backups and RPO badge, and the
audit log of every change — through the daemon, against the simulator."""

from __future__ import annotations

import asyncio
import email
import json
import socket
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.integration.backup.conftest import make_vm, storage_and_job
from tests.integration.web.test_backup_web import wait_run
from tests.support.web import Browser
from xapisim import RunningSimulator
from xenkeep.auth.const import AuditEvent
from xenkeep.pools.pool import Pool
from xenkeep.web import keys
from xenkeep.xapi.client import XapiClient


async def run_job(browser: Browser, job_id: int) -> dict[str, Any]:
    status, started = await browser.api("POST", f"/api/v1/backup/jobs/{job_id}/run")
    assert status == 202, started
    return await wait_run(browser, started["run_id"])


async def audited(browser: Browser) -> list[tuple[str, dict[str, Any]]]:
    entries = await keys.audit(browser.server.app).entries(500)
    return [(str(e["event"]), e["detail"]) for e in entries]


async def test_the_job_page_and_deleting_with_confirmation(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    vm = await make_vm(client, pool_sim, "page-vm-01")
    job = await storage_and_job(
        browser, pool.id, tmp_path / "store", "daily", schedule="0 2 * * *", rpo_hours=30
    )
    assert (await run_job(browser, job["id"]))["status"] == "success"
    await vm.scribble()
    assert (await run_job(browser, job["id"]))["status"] == "success"

    status, html, _ = await browser.get(f"/backup/jobs/{job['id']}")
    assert status == 200, html
    assert "Backup job daily" in html and 'id="run-now"' in html
    assert f'href="/backup/jobs/{job["id"]}/edit"' in html
    assert pool.name in html and "30.0 h" in html  # the pool by name, the RPO
    vms = html.split('id="job-vms"')[1].split('id="job-runs"')[0]
    assert "page-vm-01" in vms and vm.uuid in vms
    assert vms.count("data-point-id=") == 2 and ">full<" in vms and ">delta<" in vms
    runs = html.split('id="job-runs"')[1]
    assert runs.count('class="status status-success"') == 2, runs
    assert "RPO exceeded" not in html
    status, body = await browser.api("GET", f"/api/v1/backup/jobs/{job['id']}/overview")
    assert status == 200 and body["rpo"] == 30 * 3600 and len(body["vms"][0]["points"]) == 2

    # Removing the pool asks first, naming the job that uses it.
    status, html, _ = await browser.get(f"/pools/{pool.id}/remove")
    assert status == 200 and 'id="pool-jobs"' in html and "daily" in html, html
    assert "every restore point of its VMs stays" in html
    status, html, _ = await browser.get("/pools")
    assert f'href="/pools/{pool.id}/remove"' in html

    # Deleting the job asks first, on a page that says the points stay.
    status, html, _ = await browser.get(f"/backup/jobs/{job['id']}/delete")
    assert status == 200 and "restore point it made stay" in html, html
    status, _html, resp = await browser.post_form(f"/backup/jobs/{job['id']}/delete", {})
    assert status == 303 and resp.headers["Location"] == "/backup", _html
    status, _ = await browser.api("GET", f"/api/v1/backup/jobs/{job['id']}")
    assert status == 404

    # Its VM's points can go now, all of them, once its name is typed.
    status, html, _ = await browser.get(f"/backup/restore?vm={vm.uuid}")
    assert status == 200 and 'id="delete-all-points"' in html and "(job gone)" in html
    status, html, _ = await browser.get(f"/backup/vms/{vm.uuid}/delete")
    assert status == 200 and "All 2 restore point(s)" in html
    status, html, _ = await browser.post_form(
        f"/backup/vms/{vm.uuid}/delete", {"confirm": "page-vm"}
    )
    assert status == 400 and "type page-vm-01 to confirm" in html
    status, _html, resp = await browser.post_form(
        f"/backup/vms/{vm.uuid}/delete", {"confirm": "page-vm-01"}
    )
    assert status == 303, _html
    op = await browser.until_finished(
        resp.headers["Location"].replace("/operations/", "/api/v1/operations/")
    )
    assert op["status"] == "success" and len(op["report"]["deleted"]) == 2, op
    status, body = await browser.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
    assert status == 200 and body["points"] == []

    events = await audited(browser)
    names = [e for e, _ in events]
    for event in (
        AuditEvent.BACKUP_STORAGE_CHANGED,
        AuditEvent.BACKUP_JOB_CREATED,
        AuditEvent.BACKUP_RUN_STARTED,
        AuditEvent.BACKUP_JOB_DELETED,
        AuditEvent.BACKUP_POINTS_DELETED,
    ):
        assert str(event) in names, (event, names)
    deleted = [d for e, d in events if e == AuditEvent.BACKUP_POINTS_DELETED]
    assert deleted[0]["vm"] == vm.uuid and deleted[0]["point"] == "all"


async def test_all_points_of_a_vm_whose_job_still_runs_are_kept(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    vm = await make_vm(client, pool_sim, "page-vm-02")
    job = await storage_and_job(browser, pool.id, tmp_path / "store", "kept")
    assert (await run_job(browser, job["id"]))["status"] == "success"
    status, body = await browser.api(
        "POST", f"/api/v1/backup/vms/{vm.uuid}/points/delete", {"confirm": "page-vm-02"}
    )
    assert status == 409 and "job kept still backs up page-vm-02" in body["error"]["message"]
    status, body = await browser.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
    assert len(body["points"]) == 1
    # A point's own page asks for the name too, and names what it merges into.
    [point] = body["points"]
    status, html, _ = await browser.get(f"/backup/vms/{vm.uuid}/points/{point['id']}/delete")
    assert status == 200 and "It is the newest point" in html
    status, html, _ = await browser.get(f"/backup/vms/{vm.uuid}/points/20990101T000000Z-1/delete")
    assert status == 404


async def test_a_run_with_a_leftover_shows_a_warning(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    vm = await make_vm(client, pool_sim, "page-vm-03")
    job = await storage_and_job(browser, pool.id, tmp_path / "store", "leaky")
    assert (await run_job(browser, job["id"]))["status"] == "success"
    [old] = await client.call("VM.get_snapshots", vm.ref)
    await client.call(
        "sim.inject_fault",
        "fail_call",
        {"method": "VM.destroy", "error": ["OTHER_OPERATION_IN_PROGRESS", "VM", old]},
    )
    run = await run_job(browser, job["id"])
    await client.call("sim.clear_faults")
    assert run["status"] == "warning", run
    status, html, _ = await browser.get(f"/backup/runs/{run['id']}")
    assert status == 200
    assert 'id="run-status" data-status="warning"' in html
    assert '<span class="status status-warning">warning</span>' in html
    assert 'id="warnings"' in html and "stays in the pool" in html
    assert "—</dd>" not in html.split('id="run-error"')[1][:20]
    # Each VM's disk under the VM.
    rows = html.split('id="tasks-table"')[1].split("</table>")[0]
    assert rows.index("page-vm-03") < rows.index('class="task-child"')
    status, html, _ = await browser.get("/backup")
    assert 'data-status="warning"' in html
    status, html, _ = await browser.get(f"/backup/jobs/{job['id']}")
    assert 'data-status="warning"' in html.split('id="job-runs"')[1]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append(email.message_from_bytes(raw))
        return "250 2.0.0 Ok: queued as XK42"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    """A real SMTP server on loopback (no TLS): its port and what it received."""
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


async def test_mail_test_only_on_problems_and_subjects(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
    smtp: tuple[int, Inbox],
) -> None:
    pool, client = admin_pool
    port, inbox = smtp
    form = {
        "host": "127.0.0.1",
        "port": str(port),
        "sender": "xenkeep@example.net",
        "recipients": "ops@example.net",
        "only_problems": "on",
    }
    # The test button uses what the form says, saved or not, and shows the answer.
    status, html, _ = await browser.post_form("/backup/mail/test", form)
    assert status == 200, html
    assert "the server answered: <code>250 2.0.0 Ok: queued as XK42</code>" in html, html
    [test] = inbox.messages
    assert test["Subject"].startswith("[XenKeep ") and test["Subject"].endswith("] Test mail")
    # A server that is not there: its words, not a traceback.
    status, html, _ = await browser.post_form("/backup/mail/test", {**form, "port": "1"})
    assert status == 400 and "could not reach it" in html and "refused" in html.lower(), html
    status, body = await browser.api("POST", "/api/v1/backup/smtp/test", {**form, "port": 1})
    assert status == 502 and "could not reach it" in body["error"]["message"], body

    status, _html, _ = await browser.post_form("/backup/mail", form)
    assert status == 303
    status, body = await browser.api("GET", "/api/v1/backup/smtp")
    assert body["only_problems"] is True and "password" not in body
    status, body = await browser.api("POST", "/api/v1/backup/smtp/test")
    assert status == 200 and body["answer"].startswith("250 "), body

    vm = await make_vm(client, pool_sim, "page-vm-04")
    job = await storage_and_job(browser, pool.id, tmp_path / "store", "mailed")
    run = await run_job(browser, job["id"])
    assert run["status"] == "success" and len(inbox.messages) == 2  # a success: not mailed
    status, detail = await browser.api("GET", f"/api/v1/backup/runs/{run['id']}")
    assert any("only failures and warnings" in line["message"] for line in detail["log"])
    [old] = await client.call("VM.get_snapshots", vm.ref)
    await client.call(
        "sim.inject_fault",
        "fail_call",
        {"method": "VM.destroy", "error": ["OTHER_OPERATION_IN_PROGRESS", "VM", old]},
    )
    run = await run_job(browser, job["id"])
    await client.call("sim.clear_faults")
    assert run["status"] == "warning"
    mailed = inbox.messages[-1]
    identity = await keys.identity(browser.server.app).get()
    assert mailed["Subject"] == (
        f'[XenKeep {identity.name}] Backup "mailed" on {pool.name}: warning (1/1 VMs)'
    )
    body_text = next(p for p in mailed.walk() if p.get_content_type() == "text/plain").get_payload(
        decode=True
    )
    assert isinstance(body_text, bytes) and b"Warnings:" in body_text

    events = [e for e, _ in await audited(browser)]
    assert events.count(str(AuditEvent.MAIL_TEST_SENT)) == 4
    assert str(AuditEvent.MAIL_SETTINGS_CHANGED) in events


async def test_the_dashboard_shows_each_vms_last_backup_and_rpo(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    await make_vm(client, pool_sim, "page-vm-05")
    store = tmp_path / "store"
    job = await storage_and_job(browser, pool.id, store, "hourly", rpo_hours=1)
    assert (await run_job(browser, job["id"]))["status"] == "success"
    status, html, _ = await browser.get("/")
    assert status == 200
    table = html.split('id="backup-vms"')[1].split("</table>")[0]
    assert "page-vm-05" in table and "s ago" in table and "status-success" in table
    assert 'id="rpo-badge"' not in html

    # The point was taken three hours ago, as far as its record says.
    [point_file] = await asyncio.to_thread(lambda: list(store.rglob("points/*.json")))

    def age() -> None:
        record = json.loads(point_file.read_text())
        record["created"] -= 3 * 3600
        point_file.write_text(json.dumps(record))

    await asyncio.to_thread(age)
    status, html, _ = await browser.get("/")
    badge = html.split('id="rpo-badge"')[1].split("</div>")[0]
    assert "RPO exceeded for 1 VM(s)" in badge and "page-vm-05" in badge and "3 h ago" in badge
    status, body = await browser.api("GET", "/api/v1/backup/overview")
    [row] = body["vms"]
    assert row["rpo_exceeded"] is True and row["rpo"] == 3600 and row["job"]["name"] == "hourly"
