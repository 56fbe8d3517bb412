"""Anyone can cause security events; none of them grows the appliance with
the attacker's effort. Over HTTPS, as the attack was made."""

from __future__ import annotations

import logging
import re

import pytest

from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup
from xenkeep.auth.const import AuditEvent
from xenkeep.config import Settings
from xenkeep.web import keys


async def audit_rows(browser: Browser) -> list[dict[str, object]]:
    status, body = await browser.api("GET", "/api/v1/audit?limit=500")
    assert status == 200, body
    return list(body["entries"])


async def test_a_flood_without_csrf_adds_one_counted_row(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    before = len(await audit_rows(browser))
    attacker = Browser(browser.server)
    try:
        for i in range(3000):
            async with attacker.session.post(attacker.url(f"/login?x={i}"), data={}) as resp:
                assert resp.status == 403
    finally:
        await attacker.close()
    entries = await audit_rows(browser)
    assert len(entries) == before + 1
    assert entries[0]["event"] == "csrf_rejected" and entries[0]["count"] == 3000


@pytest.mark.parametrize("via", ["form", "api"])
async def test_huge_user_names_are_refused_before_anything_is_stored(
    browser: Browser, settings: Settings, caplog: pytest.LogCaptureFixture, via: str
) -> None:
    await complete_setup(browser, settings)
    attacker = Browser(browser.server)
    database = settings.database_path
    huge = "A" * 900_000
    try:
        size = database.stat().st_size + database.with_name(database.name + "-wal").stat().st_size
        with caplog.at_level(logging.INFO):
            for _ in range(20):
                if via == "form":
                    status, html, _ = await attacker.post_form(
                        "/login", {"username": huge, "password": "whatever it is"}
                    )
                    assert status == 400 and "longer than 256" in html and huge not in html
                else:
                    status, body = await attacker.api(
                        "POST", "/api/v1/session", {"username": huge, "password": "x"}
                    )
                    assert status == 400 and body["error"]["field"] == "username"
            status, body = await attacker.api(
                "POST", "/api/v1/session", {"username": "alice", "password": "p" * 100_000}
            )
            assert status == 400 and body["error"]["field"] == "password"
        grown = (
            database.stat().st_size
            + database.with_name(database.name + "-wal").stat().st_size
            - size
        )
        assert grown < 200_000
        assert max(len(r.getMessage()) for r in caplog.records) < 2000
    finally:
        await attacker.close()
    # The right name and password still sign in.
    status, _ = await attacker_sign_in(browser)
    assert status == 200


async def attacker_sign_in(browser: Browser) -> tuple[int, object]:
    fresh = Browser(browser.server)
    try:
        return await fresh.api(
            "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
        )
    finally:
        await fresh.close()


async def test_the_audit_api_and_page_are_paginated(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    audit = keys.audit(browser.server.app)
    for i in range(600):
        await audit.record(AuditEvent.SIGN_IN, username=f"user{i}")
    seen: list[object] = []
    before = None
    while True:
        query = "/api/v1/audit?limit=100" + (f"&before={before}" if before else "")
        status, body = await browser.api("GET", query)
        assert status == 200 and len(body["entries"]) <= 100
        seen += [e["id"] for e in body["entries"]]
        before = body["next_before"]
        if before is None:
            break
    assert len(seen) == len(set(seen)) >= 600
    status, body = await browser.api("GET", "/api/v1/audit?limit=100000")
    assert status == 200 and len(body["entries"]) == 500
    status, body = await browser.api("GET", "/api/v1/audit?before=x")
    assert status == 400 and body["error"]["field"] == "before"

    status, html, _ = await browser.get("/admin/audit")
    assert status == 200 and html.count("<tr><td>") == 100
    older = re.search(r'id="older" href="([^"]+)"', html)
    assert older is not None
    status, html2, _ = await browser.get(older.group(1).replace("&amp;", "&"))
    assert status == 200 and html2.count("<tr><td>") == 100
    assert "user499" in html2 and "user500" not in html2
