"""The appliance backup's page through its forms: a recovery key is shown once
and never again, a restore needs the typed confirmation and is refused while
a backup reads the storage, and the pool database downloads as XML."""

from __future__ import annotations

import html as htmllib
import re

from tests.integration.appliance_backup.conftest import Configured, copies, copies_done
from tests.support.web import ADMIN_PASSWORD
from xenkeep.appliance_backup.keys import parse_recovery_key
from xenkeep.backup.kinds import USES_STORAGE
from xenkeep.web import keys

KEY_SHOWN = re.compile(r'<code class="recovery-key" id="recovery-key">([A-Z2-7-]+)</code>')


async def test_page_forms_and_the_recovery_key(configured: Configured) -> None:
    b = configured.browser
    status, page, _ = await b.get("/backup/appliance")
    assert status == 200 and 'data-mode="none"' in page and 'id="no-copies"' in page

    status, page, _ = await b.post_form(
        "/backup/appliance/passphrase", {"passphrase": "short", "confirm": "short"}
    )
    assert status == 400 and "at least 12 characters" in page

    status, page, _ = await b.post_form("/backup/appliance/recovery-key", {})
    assert status == 200
    [shown] = KEY_SHOWN.findall(page)
    parse_recovery_key(shown)  # a valid key, checksum and all
    [op] = await copies_done(b)
    assert op["status"] == "success"
    status, page, _ = await b.get("/backup/appliance")
    assert shown not in page and 'data-mode="recovery-key"' in page
    assert shown.replace("-", "") not in htmllib.unescape(page).replace("-", "")

    status, page, _ = await b.post_form("/backup/appliance/retention", {"retention": "x"})
    assert status == 400 and "whole number" in page
    status, _, resp = await b.post_form("/backup/appliance/retention", {"retention": "12"})
    assert status == 303 and resp.headers["Location"] == "/backup/appliance"
    status, _, resp = await b.post_form("/backup/appliance/run", {})
    assert status == 303 and resp.headers["Location"].startswith("/operations/")

    # The pool's database, from the page's link.
    status, page, _ = await b.get("/backup/appliance")
    [link] = re.findall(r'href="(/backup/appliance/pools/[^"]+)"', page)[:1]
    async with b.session.get(b.url(link)) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/xml"
        assert (await r.read()).startswith(b"<?xml")

    # Open with the recovery key, typed as a person would (spaces, lower case).
    [copy] = (await copies(b))[-1:]
    status, page, _ = await b.post_form(
        "/backup/appliance/open", {"copy": copy["id"], "secret": "a passphrase"}
    )
    assert status == 400 and "sealed with a recovery key" in htmllib.unescape(page)
    typed = shown.lower().replace("-", " ")
    status, page, _ = await b.post_form(
        "/backup/appliance/open", {"copy": copy["id"], "secret": typed}
    )
    assert status == 200 and 'id="copy-summary"' in page, page
    status, page, _ = await b.post_form("/backup/appliance/restore", {"confirm": "restore"})
    assert status == 400 and "type RESTORE" in page

    # Refused while a backup (anything using the storage) runs.
    ops = keys.operations(b.server.app)
    async with ops.holding([USES_STORAGE], action="a backup", noun="backup"):
        status, page, _ = await b.post_form("/backup/appliance/restore", {"confirm": "RESTORE"})
    assert status == 409 and "while a backup runs" in htmllib.unescape(page), page

    status, _, resp = await b.post_form("/backup/appliance/restore", {"confirm": "RESTORE"})
    assert status == 303 and resp.headers["Location"] == "/login"
    status, _, resp = await b.get("/backup/appliance")
    assert status in (302, 303) and resp.headers["Location"].startswith("/login")
    b.csrf = ""
    status, body = await b.api(
        "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
    )
    assert status in (200, 201), body
    [event] = [
        e
        for e in (await b.api("GET", "/api/v1/audit?limit=200"))[1]["entries"]
        if e["event"] == "config_restored"
    ]
    assert event["detail"]["where"] == "storage page"


async def test_the_storage_page_links_to_it(configured: Configured) -> None:
    b = configured.browser
    status, page, _ = await b.get("/backup/storage")
    assert status == 200 and 'id="appliance-backup-link"' in page
    assert "No passphrase is set" in page
