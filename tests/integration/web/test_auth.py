"""Sign-in, sessions, CSRF, throttling, API tokens and errors over HTTPS."""

from __future__ import annotations

import time

from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup
from xenkeep.config import Settings
from xenkeep.store import open_database


async def test_sign_in_and_out_with_forms(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    fresh = Browser(browser.server)
    try:
        await fresh.get("/login")
        status, html, _ = await fresh.post_form(
            "/login", {"username": "alice", "password": "wrong password!", "next": "/"}
        )
        assert status == 401 and "wrong user name" in html
        status, _, resp = await fresh.post_form(
            "/login",
            {"username": "alice", "password": ADMIN_PASSWORD, "next": "//evil.example/"},
        )
        assert status == 303 and resp.headers["Location"] == "/"
        cookie = resp.cookies["xk_session"]
        assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
        status, _, _ = await fresh.get("/")
        assert status == 200
        status, _, _ = await fresh.post_form("/logout", {})
        assert status == 303
        status, _, resp = await fresh.get("/")
        assert status == 303 and resp.headers["Location"].startswith("/login")
    finally:
        await fresh.close()


async def test_state_change_without_csrf_is_refused_and_changes_nothing(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api(
        "PUT", "/api/v1/appliance", {"name": "Hijacked", "timezone": "UTC"}, csrf=False
    )
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    status, body = await browser.api(
        "PUT",
        "/api/v1/appliance",
        {"name": "Hijacked", "timezone": "UTC"},
        csrf=False,
        headers={"X-CSRF-Token": "forged"},
    )
    assert status == 403
    status, body = await browser.api("GET", "/api/v1/appliance")
    assert body["name"] != "Hijacked"
    status, body = await browser.api("PUT", "/api/v1/appliance", {"name": "Ok", "timezone": "UTC"})
    assert status == 200


async def test_malformed_json_gets_a_clear_error(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    async with browser.session.put(
        browser.url("/api/v1/appliance"),
        data=b"{not json",
        headers={"Content-Type": "application/json", "X-CSRF-Token": browser.csrf},
    ) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["code"] == "invalid_input"
    assert "malformed JSON" in body["error"]["message"]
    status, body = await browser.api("PUT", "/api/v1/appliance", ["a", "list"])
    assert status == 400 and "object" in body["error"]["message"]
    status, body = await browser.api("PUT", "/api/v1/appliance", {"name": 5, "timezone": "UTC"})
    assert status == 400 and body["error"]["field"] == "name"


async def test_sign_in_is_throttled_per_account(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    other = Browser(browser.server)
    try:
        statuses = []
        for _ in range(6):
            status, _ = await other.api(
                "POST", "/api/v1/session", {"username": "alice", "password": "nope nope nope"}
            )
            statuses.append(status)
        assert statuses[:5] == [401] * 5 and statuses[5] == 429
        status, body = await other.api(
            "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
        )
        assert status == 429
    finally:
        await other.close()
    status, body = await browser.api("GET", "/api/v1/audit")
    events = [e["event"] for e in body["entries"]]
    assert "sign_in_failed" in events and "sign_in_throttled" in events


async def test_expired_sessions_sign_out(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    status, _ = await browser.api("GET", "/api/v1/session")
    assert status == 200
    db = await open_database(settings.database_path)
    idle = settings.session_idle_minutes * 60
    await db.execute("UPDATE sessions SET last_seen = ?", (time.time() - idle - 5,))
    await db.close()
    status, _body = await browser.api("GET", "/api/v1/session")
    assert status == 401


async def test_absolute_session_lifetime(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    db = await open_database(settings.database_path)
    lifetime = settings.session_absolute_hours * 3600
    await db.execute("UPDATE sessions SET created_at = ?", (time.time() - lifetime - 5,))
    await db.close()
    status, _ = await browser.api("GET", "/api/v1/session")
    assert status == 401


async def test_sign_out_everywhere(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    second = Browser(browser.server)
    try:
        status, _ = await second.api(
            "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
        )
        assert status == 200
        status, body = await browser.api("DELETE", "/api/v1/sessions")
        assert status == 200 and body["ended"] == 2
        status, _ = await second.api("GET", "/api/v1/session")
        assert status == 401
    finally:
        await second.close()


async def test_api_tokens_are_shown_once_and_work_without_cookies(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api("POST", "/api/v1/tokens", {"name": "backup-script"})
    assert status == 201
    token = body["token"]
    status, body = await browser.api("GET", "/api/v1/tokens")
    assert token not in str(body) and body["tokens"][0]["name"] == "backup-script"
    token_id = body["tokens"][0]["id"]

    tool = Browser(browser.server)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        status, body = await tool.api("GET", "/api/v1/users", headers=auth)
        assert status == 200 and body["users"][0]["username"] == "alice"
        status, body = await tool.api(
            "PUT",
            "/api/v1/appliance",
            {"name": "Via token", "timezone": "UTC"},
            csrf=False,
            headers=auth,
        )
        assert status == 200
        status, _ = await browser.api("DELETE", f"/api/v1/tokens/{token_id}")
        assert status == 200
        status, body = await tool.api("GET", "/api/v1/users", headers=auth)
        assert status == 401
        status, body = await tool.api(
            "GET", "/api/v1/users", headers={"Authorization": "Bearer xk_made_up"}
        )
        assert status == 401
    finally:
        await tool.close()


async def test_error_pages_and_security_headers(browser: Browser) -> None:
    status, html, resp = await browser.get("/no/such/page")
    assert status == 404 and "Not found" in html
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    status, body = await browser.api("GET", "/api/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_health_needs_no_sign_in(browser: Browser) -> None:
    status, body = await browser.api("GET", "/api/v1/health")
    assert status == 200 and body["status"] == "ok" and body["version"]


async def test_a_totp_code_signs_in_only_once(browser: Browser, settings: Settings) -> None:
    import pyotp

    from xenkeep.auth import totp
    from xenkeep.web import keys

    await complete_setup(browser, settings)
    auth = keys.auth(browser.server.app)
    user = (await auth.list_users())[0]
    secret = totp.new_secret()
    gen = pyotp.TOTP(secret)
    await auth.enable_totp(user, secret, gen.now())
    # The code used to enrol is burnt; the next step's code works once.
    code = gen.at(time.time() + 30)
    results = []
    for _ in range(2):
        other = Browser(browser.server)
        try:
            status, _ = await other.api(
                "POST",
                "/api/v1/session",
                {"username": "alice", "password": ADMIN_PASSWORD, "code": code},
            )
            results.append(status)
        finally:
            await other.close()
    assert results == [200, 401]
