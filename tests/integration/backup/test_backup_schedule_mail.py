"""The scheduler (missed runs run at start) and report mail over STARTTLS."""

from __future__ import annotations

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
from xenkeep.backup.manager import BackupManager
from xenkeep.backup.pools import StaticPools
from xenkeep.store import open_database
from xenkeep.system.tls import ensure_certificate
from xenkeep.xapi.client import XapiClient


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
    assert any("could not mail the report" in line["message"] for line in detail["log"])


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
