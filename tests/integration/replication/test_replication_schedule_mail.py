"""Replication reports mail in the backups' format; the one scheduler starts
due jobs, and a paused job lets its slots pass without catching up."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from aiosmtpd.controller import Controller

from tests.integration.backup.conftest import TestVm
from tests.integration.backup.test_backup_schedule_mail import Inbox, smtp
from tests.integration.replication.conftest import SITE_A, SITE_B, Sites, default_sr, job_input
from xenkeep.ops import Operations, Scheduler
from xenkeep.pools.access import StaticPools
from xenkeep.replication.manager import ReplicationManager
from xenkeep.store import open_database
from xenkeep.xapi.client import XapiClient

__all__ = ["smtp"]


async def test_the_report_is_mailed_in_the_backups_format(
    sites: Sites, vm: TestVm, smtp: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp
    await sites.manager.mail.set(
        {
            "host": "127.0.0.1",
            "port": controller.port,
            "sender": "xenkeep@example.net",
            "recipients": "ops@example.net",
            "starttls": True,
            "verify_tls": False,
        }
    )
    job = await sites.manager.create_job(job_input(await default_sr(sites.b)))
    run = await sites.run(job.id)
    assert run["status"] == "success", run["error"]
    [msg] = inbox.messages
    assert msg["Subject"] == '[XenKeep xk-test] Replication "dr" on Site A: success (1/1 VMs)'
    part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    body = part.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert b"To: SR " in body and b"of Site B" in body
    assert b"disk 0: full" in body and b"first replication of this VM" in body
    assert b"phases: snapshot" in body and b"replica point " in body
    assert any("report mailed to ops@example.net" in x["message"] for x in run["log"])


async def test_the_scheduler_runs_due_jobs_and_a_paused_one_waits(
    tmp_path: Path, client_a: XapiClient, client_b: XapiClient, vm: TestVm
) -> None:
    now = [dt.datetime(2027, 1, 1, 12, 1, tzinfo=dt.UTC).timestamp()]
    db = await open_database(tmp_path / "sched.db")
    ops = Operations(db)
    scheduler = Scheduler(lambda: now[0])

    async def name() -> str:
        return "xk-test"

    m = ReplicationManager(
        db,
        StaticPools({SITE_A: ("Site A", client_a), SITE_B: ("Site B", client_b)}),
        ops=ops,
        scheduler=scheduler,
        appliance_name=name,
        clock=lambda: now[0],
    )
    try:
        job = await m.create_job(job_input(await default_sr(client_b), schedule="*/10 * * * *"))
        assert job.next_run == dt.datetime(2027, 1, 1, 12, 10, tzinfo=dt.UTC).timestamp()
        await scheduler.tick()
        assert await m.runs_of(job.id) == []
        now[0] += 600
        await scheduler.tick()
        [run] = await m.runs_of(job.id)
        assert "schedule" in run["trigger"]
        assert (await m.wait(run["id"]))["status"] == "success"
        # Paused (a replica was started): the next slots pass, none is caught up.
        await m.store.set_paused(job.id, "a replica was started")
        now[0] += 1800
        await scheduler.tick()
        assert len(await m.runs_of(job.id)) == 1
        await m.store.set_paused(job.id, "")
        await scheduler.tick()
        assert len(await m.runs_of(job.id)) == 1
        now[0] += 600
        await scheduler.tick()
        assert len(await m.runs_of(job.id)) == 2
        await m.wait((await m.runs_of(job.id))[0]["id"])
    finally:
        await ops.stop()
        await db.close()
