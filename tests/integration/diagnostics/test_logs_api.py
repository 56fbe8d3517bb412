"""The log view's API over real journal files: filters by unit, priority and
time, bad filters refused, and follow mode as server-sent events."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from tests.support.journal import Entry, write_journal
from tests.support.web import Browser, complete_setup, make_settings
from xenkeep.app import create_app
from xenkeep.web.server import start_server


async def test_filters_bad_input_and_follow(tmp_path: Path) -> None:
    now = time.time()
    journal_dir = tmp_path / "journal"
    await asyncio.to_thread(
        write_journal,
        journal_dir,
        [
            Entry("yesterday", ts=now - 86400),
            Entry("daemon error", priority=3, ts=now - 60),
            Entry("sshd info", unit="ssh.service", identifier="sshd", ts=now - 30),
        ],
    )
    settings = make_settings(tmp_path, journal_dir=str(journal_dir))
    async with start_server(create_app(settings)) as server:
        b = Browser(server)
        status, _ = await b.api("GET", "/api/v1/logs")
        assert status in (401, 403)
        await complete_setup(b, settings)
        status, body = await b.api("GET", "/api/v1/logs")
        assert status == 200 and body["available"] is True
        assert [e["message"] for e in body["entries"]] == ["yesterday", "daemon error", "sshd info"]
        _, body = await b.api("GET", "/api/v1/logs?priority=err")
        assert [e["message"] for e in body["entries"]] == ["daemon error"]
        _, body = await b.api("GET", "/api/v1/logs?unit=ssh.service")
        assert [e["identifier"] for e in body["entries"]] == ["sshd"]
        _, body = await b.api("GET", f"/api/v1/logs?since={now - 3600}&until={now - 45}")
        assert [e["message"] for e in body["entries"]] == ["daemon error"]
        for bad in (
            "priority=loud",
            "unit=a%0Ab",
            "since=yesterday",
            "limit=0",
            "limit=x",
            f"since={now}&until={now - 10}",
        ):
            status, body = await b.api("GET", f"/api/v1/logs?{bad}")
            assert status == 400 and body["error"]["message"], bad
        status, page, _ = await b.get("/diagnostics/logs?priority=err")
        assert status == 200 and "daemon error" in page and "sshd info" not in page

        # Follow: the newest entry at once, then what is written afterwards.
        async def follow() -> list[str]:
            seen: list[str] = []
            async with b.session.get(b.url("/api/v1/logs?follow=1&limit=1")) as r:
                assert r.headers["Content-Type"] == "text/event-stream"
                async for raw in r.content:
                    line = raw.decode().strip()
                    if line.startswith("data: "):
                        seen += [e["message"] for e in json.loads(line[6:])]
                        if "written later" in seen:
                            return seen
            return seen

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(write_journal, journal_dir, [Entry("written later")])
        seen = await task
        assert seen[0] == "sshd info" and seen[-1] == "written later"
        await b.close()
