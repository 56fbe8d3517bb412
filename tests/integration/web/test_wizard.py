"""The first-boot wizard over real HTTPS, as a browser would drive it."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pyotp
import pytest

from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup, setup_token
from xenkeep.config import Settings
from xenkeep.store import open_database


async def admin_count(settings: Settings) -> int:
    db = await open_database(settings.database_path)
    try:
        row = await db.fetchone("SELECT count(*) FROM users")
        assert row is not None
        return int(row[0])
    finally:
        await db.close()


async def test_token_file_is_private_and_root_redirects_to_wizard(
    browser: Browser, settings: Settings
) -> None:
    mode = (await asyncio.to_thread(settings.setup_token_path.stat)).st_mode
    assert mode & 0o777 == 0o600
    status, _, resp = await browser.get("/")
    assert status == 303 and resp.headers["Location"].startswith("/login")
    status, _, resp = await browser.get("/login")
    assert status == 303 and resp.headers["Location"] == "/setup"
    status, _, resp = await browser.get("/setup")
    assert status == 303 and resp.headers["Location"] == "/setup/token"
    status, html, _ = await browser.get("/setup/token")
    assert status == 200 and "setup token" in html


async def test_default_credentials_do_not_exist(browser: Browser) -> None:
    for user, password in [("admin", "admin"), ("admin@admin.net", "admin"), ("root", "")]:
        status, body = await browser.api(
            "POST", "/api/v1/session", {"username": user, "password": password}
        )
        assert status == 401, body
        assert body["error"]["code"] == "unauthenticated"


async def test_full_wizard_through_forms(browser: Browser, settings: Settings) -> None:
    await browser.get("/setup/token")
    status, html, _ = await browser.post_form("/setup/token", {"token": "AAAA-BBBB"})
    assert status == 401 and "not valid" in html
    assert await admin_count(settings) == 0

    token = await setup_token(settings)
    status, _, resp = await browser.post_form("/setup/token", {"token": token.lower()})
    assert status == 303
    status, _, resp = await browser.get("/setup")
    assert resp.headers["Location"] == "/setup/admin"
    await browser.get("/setup/admin")

    status, html, _ = await browser.post_form(
        "/setup/admin", {"username": "alice", "password": "short", "confirm": "short"}
    )
    assert status == 400 and "at least 12" in html
    status, html, _ = await browser.post_form(
        "/setup/admin",
        {"username": "alice", "password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD + "x"},
    )
    assert status == 400 and "differ" in html
    assert await admin_count(settings) == 0

    status, _, _ = await browser.post_form(
        "/setup/admin",
        {"username": "alice", "password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD},
    )
    assert status == 303
    assert await admin_count(settings) == 1
    assert not await asyncio.to_thread(settings.setup_token_path.exists)

    # Two-factor step: enrol with a real TOTP code computed from the shown key.
    status, html, _ = await browser.get("/setup/totp")
    assert status == 200
    secret = html.split('id="totp-secret">')[1].split("<")[0]
    status, html, _ = await browser.post_form("/setup/totp", {"action": "enable", "code": "000000"})
    assert status == 400 and "does not match" in html
    status, _, _ = await browser.post_form(
        "/setup/totp", {"action": "enable", "code": pyotp.TOTP(secret).now()}
    )
    assert status == 303

    # Nothing to restore on a first appliance (tests/integration/appliance_backup covers it).
    status, html, _ = await browser.get("/setup/restore")
    assert status == 200 and "Start with a new configuration" in html
    status, _, _ = await browser.post_form("/setup/restore", {"action": "skip"})
    assert status == 303

    await browser.get("/setup/appliance")
    status, html, _ = await browser.post_form(
        "/setup/appliance", {"name": "Backup <b>", "timezone": "Europe/Paris"}
    )
    assert status == 400 and "cannot contain" in html
    status, html, _ = await browser.post_form(
        "/setup/appliance", {"name": "Site A", "timezone": "Mars/Olympus"}
    )
    assert status == 400 and "unknown time zone" in html
    status, _, _ = await browser.post_form(
        "/setup/appliance", {"name": "Site A", "timezone": "Europe/Paris"}
    )
    assert status == 303
    # "Connect a pool" has its own tests (tests/integration/web/test_pools_wizard.py).
    await browser.get("/setup/pool")
    status, _, _ = await browser.post_form("/setup/pool", {"action": "skip"})
    assert status == 303
    status, html, _ = await browser.get("/setup/summary")
    assert "Site A" in html and "two-factor on" in html
    status, _, resp = await browser.post_form("/setup/summary", {})
    assert status == 303
    status, _, resp = await browser.get("/setup")
    assert resp.headers["Location"] == "/"
    status, html, _ = await browser.get("/")
    assert status == 200 and "Site A" in html

    # The token no longer works, even in a fresh browser.
    other = Browser(browser.server)
    try:
        status, body = await other.api("POST", "/api/v1/setup/token", {"token": token})
        assert status == 401
        # Sign in needs the TOTP code now.
        status, body = await other.api(
            "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
        )
        assert status == 401
        status, body = await other.api(
            "POST",
            "/api/v1/session",
            # The enrolment code is burnt: use the next time step's code.
            {
                "username": "alice",
                "password": ADMIN_PASSWORD,
                "code": pyotp.TOTP(secret).at(time.time() + 30),
            },
        )
        assert status == 200, body
        assert body["user"]["role"] == "admin"
    finally:
        await other.close()


async def test_admin_step_needs_the_token_step(browser: Browser, settings: Settings) -> None:
    status, _, resp = await browser.get("/setup/admin")
    assert status == 303 and resp.headers["Location"] == "/setup/token"
    status, _body = await browser.api(
        "POST",
        "/api/v1/setup/admin",
        {"username": "mallory", "password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD},
    )
    assert status == 401
    assert await admin_count(settings) == 0


async def test_wrong_tokens_are_throttled(browser: Browser, settings: Settings) -> None:
    statuses = []
    for _ in range(7):
        status, _ = await browser.api("POST", "/api/v1/setup/token", {"token": "WRONG"})
        statuses.append(status)
    assert statuses[:5] == [401] * 5
    assert statuses[-1] == 429
    # Even the right token waits now: guessing cannot outrun the throttle.
    status, body = await browser.api(
        "POST", "/api/v1/setup/token", {"token": await setup_token(settings)}
    )
    assert status == 429 and "try again" in body["error"]["message"]


@pytest.mark.parametrize("path", ["/setup/token", "/setup/admin"])
async def test_wizard_forms_require_csrf(browser: Browser, path: str) -> None:
    await browser.get("/setup/token")
    status, html, _ = await browser.post_form(path, {"token": "x"}, csrf=False)
    assert status == 403 and "stale" in html


async def test_the_shown_totp_key_is_not_in_the_database(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    status, html, _ = await browser.get("/setup/totp")
    assert status == 200
    secret = html.split('id="totp-secret">')[1].split("<")[0]
    assert len(secret) >= 16
    with sqlite3.connect(settings.database_path) as conn:
        rows = conn.execute("SELECT key, value FROM settings").fetchall()
    pending = [value for key, value in rows if key.startswith("totp.pending.")]
    assert len(pending) == 1
    # A copy of the database alone does not reveal the second factor.
    assert all(secret not in str(value) for _, value in rows)


async def test_the_setup_token_never_reaches_the_log(
    browser: Browser, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    token = await setup_token(settings)
    said = " ".join(r.getMessage() for r in caplog.get_records("setup"))
    assert token not in said and token.replace("-", "") not in said
    # The log says where the token is to be read instead.
    assert str(settings.setup_token_path) in said and "xenkeep setup-token" in said


async def test_parallel_setup_token_guesses_meet_the_limit(
    browser: Browser, settings: Settings
) -> None:
    async def guess() -> int:
        status, _ = await browser.api("POST", "/api/v1/setup/token", {"token": "AAAA-BBBB"})
        return status

    await browser.api("GET", "/api/v1/csrf")
    statuses = await asyncio.gather(*(guess() for _ in range(30)))
    assert statuses.count(401) <= 5 and statuses.count(429) >= 25, statuses
    # The right token from the same address is refused too while the wait lasts.
    status, _ = await browser.api(
        "POST", "/api/v1/setup/token", {"token": await setup_token(settings)}
    )
    assert status == 429
