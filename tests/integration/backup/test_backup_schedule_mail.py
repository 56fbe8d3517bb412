"""The scheduler (missed runs run at start) and report mail over STARTTLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import socket
import ssl
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.integration.backup.conftest import POOL_ID, TestVm, job_input
from tests.unit.repo.repo_testlib import RefDisk, rot_block
from xenkeep.backup.manager import BackupManager
from xenkeep.errors import ValidationError
from xenkeep.pools.access import StaticPools
from xenkeep.store import open_database
from xenkeep.system.tls import ensure_certificate
from xenkeep.xapi.client import XapiClient

MiB = 1 << 20


class Inbox:
    """Messages the SMTP server received, and whether STARTTLS was used."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append(email.message_from_bytes(raw))
        self.tls.append(session.ssl is not None)
        return "250 OK"


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Controller, Inbox]]:
    tls = ensure_certificate(tmp_path / "smtp-tls", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.cert_path, tls.key_path)
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True
    )
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


async def test_report_is_mailed_with_starttls(
    manager: BackupManager, vm: TestVm, smtp: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp
    port = controller.port
    await manager.set_smtp(
        {
            "host": "127.0.0.1",
            "port": port,
            "sender": "xenkeep@example.net",
            "recipients": "ops@example.net",
            "starttls": True,
            "verify_tls": False,
        }
    )
    job = await manager.create_job(job_input(name="mailed"))
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    assert len(inbox.messages) == 1
    assert inbox.tls == [True]
    msg = inbox.messages[0]
    assert msg["Subject"] == '[XenKeep xk-test] Backup "mailed" on Demo pool: success (1/1 VMs)'
    body = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_payload(
        decode=True
    )
    assert isinstance(body, bytes)
    assert b"disk 0: full" in body and b"first backup" in body


async def test_mail_failure_does_not_fail_the_run(manager: BackupManager, vm: TestVm) -> None:
    await manager.set_smtp(
        {"host": "127.0.0.1", "port": 1, "sender": "x@example.net", "recipients": "o@example.net"}
    )
    job = await manager.create_job(job_input())
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success"
    detail = await manager.run_detail(run["id"])
    line = next(line for line in detail["log"] if "could not mail the report" in line["message"])
    assert line["level"] == "warning", line
    # In the report too, where the UI and the API show a run's outcome.
    assert "refused" in run["report"]["mail_error"].lower(), run["report"]
    assert run["report"]["mail_error"] in line["message"]


async def test_a_name_from_the_pool_with_a_newline_still_mails(
    manager: BackupManager, vm: TestVm, smtp: tuple[Controller, Inbox]
) -> None:
    """Job names are checked on input, but the pool's and VMs' names come
    from the pool: a subject line is made one line whatever they hold."""
    controller, inbox = smtp
    await manager.set_smtp(
        {
            "host": "127.0.0.1",
            "port": controller.port,
            "sender": "xenkeep@example.net",
            "recipients": "ops@example.net",
            "starttls": True,
            "verify_tls": False,
        }
    )
    await vm.client.call("VM.set_name_label", vm.ref, "evil\r\nBcc: victim@example.org")
    manager.backup_runs.pools = StaticPools({POOL_ID: ("Demo\r\npool", vm.client)})
    job = await manager.create_job(job_input(name="mailed"))
    run = await manager.wait(await manager.run_job(job.id))
    assert run["status"] == "success", run
    assert "mail_error" not in run["report"], run["report"]
    [msg] = inbox.messages
    assert msg["Subject"] == '[XenKeep xk-test] Backup "mailed" on Demo pool: success (1/1 VMs)'
    assert msg["Bcc"] is None


async def test_scheduler_runs_a_missed_slot_once_at_start(
    tmp_path: Path, client: XapiClient, vm: TestVm, datastore_dir: Path
) -> None:
    now = [dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC).timestamp()]
    db = await open_database(tmp_path / "sched.db")
    pools = StaticPools({POOL_ID: ("Demo pool", client)})
    m = BackupManager(db, pools, clock=lambda: now[0])
    await m.start(scheduler=False)
    await m.use_directory(str(datastore_dir))
    job = await m.create_job(job_input(schedule="0 3 * * *"))
    assert job.next_run == dt.datetime(2026, 1, 2, 3, 0, tzinfo=dt.UTC).timestamp()
    # Not due yet.
    await m.schedule_tick()
    assert await m.runs() == []
    await m.stop()

    # The appliance was down for three days: one run at start, not three.
    now[0] = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC).timestamp()
    m = BackupManager(db, pools, clock=lambda: now[0])
    await m.start(scheduler=False)
    await m.schedule_tick()
    runs = await m.runs()
    assert len(runs) == 1
    assert "missed" in runs[0]["trigger"]
    run = await m.wait(runs[0]["id"])
    assert run["status"] == "success", run
    await m.schedule_tick()
    assert len(await m.runs()) == 1
    row = await m.job(job.id)
    assert row.last_slot == dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC).timestamp()
    assert row.next_run == dt.datetime(2026, 1, 6, 3, 0, tzinfo=dt.UTC).timestamp()
    await m.stop()
    await db.close()


async def _point_with_rot(manager: BackupManager, tmp_path: Path, *, rot: bool) -> str:
    """One stored restore point; with ``rot``, a byte of its block 3 flipped on disk."""
    vm = "0f4d6a1e-8f0a-4a57-9a3e-6a0d2b9c7e21"
    disk = await asyncio.to_thread(RefDisk, tmp_path, "0", 8 * MiB, seed=9)
    await asyncio.to_thread(disk.fill_block, 3)
    async with manager.datastore.begin_point(vm, vm_record={}) as w:
        await w.write_vhd("0", disk.full_stream(), delta=False)
        point = await w.commit()
    if rot:
        path = manager.datastore.vmdir(vm).vhd_path("0", point.disks[0].file)
        await asyncio.to_thread(rot_block, path, 3, at=100, mask=0x55)
    return point.id


async def test_verify_runs_weekly_by_default_and_mails_damage(
    tmp_path: Path, datastore_dir: Path, smtp: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp
    # Thursday 1 January 2026, noon UTC; the appliance is in Paris (UTC+1).
    now = [dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC).timestamp()]
    db = await open_database(tmp_path / "verify.db")
    m = BackupManager(db, StaticPools({}), clock=lambda: now[0], appliance_timezone="Europe/Paris")
    await m.start(scheduler=False)
    await m.use_directory(str(datastore_dir))
    await m.set_smtp(
        {
            "host": "127.0.0.1",
            "port": controller.port,
            "sender": "xenkeep@example.net",
            "recipients": "ops@example.net",
            "verify_tls": False,
        }
    )
    point = await _point_with_rot(m, tmp_path, rot=True)
    sched = await m.verify_schedule()
    sunday_4am_paris = dt.datetime(2026, 1, 4, 3, 0, tzinfo=dt.UTC).timestamp()
    assert (sched["schedule"], sched["timezone"], sched["next_run"]) == (
        "0 4 * * 0",
        "Europe/Paris",
        sunday_4am_paris,
    )
    await m.schedule_tick()
    assert await m.last_verify() is None

    now[0] = sunday_4am_paris + 120
    await m.schedule_tick()
    report = await m.wait_verify()
    assert report is not None and report["status"] == "damaged", report
    assert report["trigger"].startswith("schedule")
    [damaged] = report["damaged"]
    assert (damaged["point_id"], damaged["blocks"]) == (point, [3])
    [msg] = inbox.messages
    assert msg["Subject"] == "[XenKeep xenkeep] Verify: 1 damaged restore point(s)"
    body = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_payload(
        decode=True
    )
    assert isinstance(body, bytes) and f"restore point {point} disk 0".encode() in body

    # The same slot never starts a second verify.
    finished = report["finished"]
    await m.schedule_tick()
    again = await m.wait_verify()
    assert again is not None and again["finished"] == finished
    await m.stop()
    await db.close()


async def test_verify_schedule_can_change_and_turn_off(tmp_path: Path, datastore_dir: Path) -> None:
    now = [dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC).timestamp()]
    db = await open_database(tmp_path / "verify.db")
    m = BackupManager(db, StaticPools({}), clock=lambda: now[0])
    await m.start(scheduler=False)
    await m.use_directory(str(datastore_dir))
    await _point_with_rot(m, tmp_path, rot=False)

    with pytest.raises(ValidationError, match="minute"):
        await m.set_verify_schedule("61 * * * *")
    assert (await m.verify_schedule())["schedule"] == "0 4 * * 0"

    await m.set_verify_schedule("30  1 * * *")
    sched = await m.verify_schedule()
    assert sched["schedule"] == "30 1 * * *"
    assert sched["next_run"] == dt.datetime(2026, 3, 3, 1, 30, tzinfo=dt.UTC).timestamp()
    now[0] = sched["next_run"] + 5
    await m.schedule_tick()
    report = await m.wait_verify()
    assert report is not None and report["status"] == "ok" and report["points"] == 1

    await m.set_verify_schedule("")
    assert await m.verify_schedule() == {"schedule": "", "timezone": "UTC", "next_run": None}
    now[0] += 14 * 86400
    await m.schedule_tick()
    assert (await m.last_verify()) == report
    await m.stop()
    await db.close()
