"""Every user's own account over HTTPS: changing the password (the old one
required; the other sessions end), enrolling and replacing an
authenticator, one-time recovery codes (each once, stored hashed,
throttled), listing and ending sessions, and an account a provider brought
(no password here, said so)."""

from __future__ import annotations

import asyncio
import time

import pyotp
from yarl import URL

from tests.support.people import signed_in
from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup
from xenkeep.app import database
from xenkeep.auth.recovery import CODES_PER_SET
from xenkeep.auth.throttle import FREE_ATTEMPTS
from xenkeep.config import Settings
from xenkeep.web import keys

NEW = "another long passphrase"


async def enrol(b: Browser, password: str | None = None) -> str:
    """Enrol an authenticator through the API; its secret."""
    status, offer = await b.api("POST", "/api/v1/account/totp")
    assert status == 200, offer
    secret = str(offer["secret"])
    body = {"code": pyotp.TOTP(secret).now()}
    if password is not None:
        body["password"] = password
    status, answer = await b.api("POST", "/api/v1/account/totp/confirm", body)
    assert status == 200, answer
    return secret


async def sign_in_status(server: object, password: str, code: str = "") -> int:
    b = Browser(server)  # type: ignore[arg-type]
    try:
        status, _ = await b.api(
            "POST", "/api/v1/session", {"username": "alice", "password": password, "code": code}
        )
        return status
    finally:
        await b.close()


async def test_changing_the_password_takes_the_old_one_and_ends_the_other_sessions(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    other = await signed_in(browser.server, "alice")
    try:
        status, body = await browser.api(
            "PUT", "/api/v1/account/password", {"old": "wrong one", "new": NEW, "confirm": NEW}
        )
        assert status == 400 and body["error"]["field"] == "old"
        status, body = await browser.api(
            "PUT", "/api/v1/account/password", {"old": ADMIN_PASSWORD, "new": NEW, "confirm": "x"}
        )
        assert status == 400 and body["error"]["field"] == "confirm"
        status, body = await browser.api(
            "PUT", "/api/v1/account/password", {"old": ADMIN_PASSWORD, "new": "short"}
        )
        assert status == 400 and body["error"]["field"] == "password"
        status, body = await browser.api(
            "PUT", "/api/v1/account/password", {"old": ADMIN_PASSWORD, "new": NEW, "confirm": NEW}
        )
        assert status == 200, body
        assert (await browser.api("GET", "/api/v1/session"))[0] == 200
        assert (await other.api("GET", "/api/v1/session"))[0] == 401
    finally:
        await other.close()
    assert await sign_in_status(browser.server, ADMIN_PASSWORD) == 401
    assert await sign_in_status(browser.server, NEW) == 200


#: Attempts within which a guesser meets the throttle however slow the
#: machine: past the free ones each failure doubles the wait (2, 4, 8... s),
#: which soon outgrows the time one attempt takes.
THROTTLED_WITHIN = FREE_ATTEMPTS + 6


async def test_guessing_the_old_password_is_throttled(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    statuses = []
    while 429 not in statuses and len(statuses) < THROTTLED_WITHIN:
        status, _ = await browser.api(
            "PUT",
            "/api/v1/account/password",
            {"old": f"guess {len(statuses)}", "new": NEW, "confirm": NEW},
        )
        statuses.append(status)
    assert statuses[:FREE_ATTEMPTS] == [400] * FREE_ATTEMPTS and statuses[-1] == 429, statuses


async def test_replacing_an_authenticator_takes_the_password(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    first = await enrol(browser)
    _, me = await browser.api("GET", "/api/v1/account")
    assert me["user"]["totp_enabled"]
    status, offer = await browser.api("POST", "/api/v1/account/totp")
    second = offer["secret"]
    assert second != first
    status, body = await browser.api(
        "POST", "/api/v1/account/totp/confirm", {"code": pyotp.TOTP(second).now()}
    )
    assert status == 400 and body["error"]["field"] == "password"
    status, body = await browser.api(
        "POST",
        "/api/v1/account/totp/confirm",
        {"code": pyotp.TOTP(second).now(), "password": "not mine"},
    )
    assert status == 400 and body["error"]["field"] == "password"
    # The right password: the code of this time step may not be used twice,
    # so wait for the next one rather than race the clock.
    await asyncio.sleep(30 - time.time() % 30 + 0.5)
    status, body = await browser.api(
        "POST",
        "/api/v1/account/totp/confirm",
        {"code": pyotp.TOTP(second).now(), "password": ADMIN_PASSWORD},
    )
    assert status == 200, body


async def test_recovery_codes_work_once_each_in_place_of_a_code(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api(
        "POST", "/api/v1/account/recovery-codes", {"password": ADMIN_PASSWORD}
    )
    assert status == 400 and "authenticator" in body["error"]["message"]
    await enrol(browser)
    status, body = await browser.api(
        "POST", "/api/v1/account/recovery-codes", {"password": ADMIN_PASSWORD}
    )
    assert status == 201
    codes = body["codes"]
    assert len(codes) == len(set(codes)) == CODES_PER_SET
    # Only hashes are kept.
    rows = await database(browser.server.app).fetchall("SELECT code_hash FROM recovery_codes")
    stored = " ".join(str(r["code_hash"]) for r in rows)
    assert all(c not in stored and c.replace("-", "") not in stored for c in codes)

    assert await sign_in_status(browser.server, ADMIN_PASSWORD) == 401  # a code is needed
    assert await sign_in_status(browser.server, ADMIN_PASSWORD, codes[0]) == 200
    assert await sign_in_status(browser.server, ADMIN_PASSWORD, codes[0]) == 401
    # Typed in lower case without dashes, as people do.
    assert (
        await sign_in_status(browser.server, ADMIN_PASSWORD, codes[1].replace("-", "").lower())
        == 200
    )
    assert await sign_in_status(browser.server, "wrong password", codes[2]) == 401
    _, me = await browser.api("GET", "/api/v1/account")
    assert me["recovery_codes_left"] == CODES_PER_SET - 2
    _, audit = await browser.api("GET", "/api/v1/audit?limit=100")
    used = [e for e in audit["entries"] if e["event"] == "recovery_code_used"]
    assert [e["detail"]["remaining"] for e in used] == [CODES_PER_SET - 2, CODES_PER_SET - 1]

    # A new set replaces the old one.
    _, body = await browser.api(
        "POST", "/api/v1/account/recovery-codes", {"password": ADMIN_PASSWORD}
    )
    assert await sign_in_status(browser.server, ADMIN_PASSWORD, codes[3]) == 401
    assert await sign_in_status(browser.server, ADMIN_PASSWORD, body["codes"][0]) == 200


async def test_guessing_recovery_codes_is_throttled(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    await enrol(browser)
    _, body = await browser.api(
        "POST", "/api/v1/account/recovery-codes", {"password": ADMIN_PASSWORD}
    )
    # Making codes takes the password (a guess counts like a sign-in's).
    status, _ = await browser.api(
        "POST", "/api/v1/account/recovery-codes", {"password": "not mine"}
    )
    assert status == 400
    statuses = [400]  # the guess of the password above
    while 429 not in statuses and len(statuses) < THROTTLED_WITHIN:
        code = f"AAAA-BBBB-CCCC-{len(statuses):04d}"
        statuses.append(await sign_in_status(browser.server, ADMIN_PASSWORD, code))
    assert statuses[1:FREE_ATTEMPTS] == [401] * (FREE_ATTEMPTS - 1), statuses
    assert statuses[-1] == 429, statuses
    # None of the guesses used a code: all of the set is left.
    assert await keys.auth(browser.server.app).recovery.remaining(1) == len(body["codes"])


async def test_sessions_are_listed_and_ended_one_by_one(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    other = await signed_in(browser.server, "alice")
    try:
        _, body = await browser.api("GET", "/api/v1/account/sessions")
        sessions = body["sessions"]
        assert len(sessions) == 2 and [s["current"] for s in sessions].count(True) == 1
        assert all(s["ip"] == "127.0.0.1" and s["user_agent"] and s["last_seen"] for s in sessions)
        [theirs] = [s for s in sessions if not s["current"]]
        status, html, _ = await browser.get("/account")
        assert status == 200 and f'data-session="{theirs["id"]}"' in html and "this browser" in html
        status, _ = await browser.api("DELETE", f"/api/v1/account/sessions/{theirs['id']}")
        assert status == 200
        assert (await other.api("GET", "/api/v1/session"))[0] == 401
        assert (await browser.api("GET", "/api/v1/session"))[0] == 200
        status, _ = await browser.api("DELETE", f"/api/v1/account/sessions/{theirs['id']}")
        assert status == 404
    finally:
        await other.close()


async def test_an_account_a_provider_brought_has_no_password_here(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    auth = keys.auth(browser.server.app)
    db = database(browser.server.app)
    await db.execute(
        "INSERT INTO users (username, role, source, created_at) VALUES ('ext', 'user', 'oidc', 0)"
    )
    row = await db.fetchone("SELECT id FROM users WHERE username = 'ext'")
    assert row is not None
    user = await auth.get_user(int(row["id"]))
    assert user is not None and not user.is_local
    cookie = await auth.create_session(user)
    ext = Browser(browser.server)
    try:
        ext.session.cookie_jar.update_cookies({"xk_session": cookie}, URL(browser.server.url))
        status, html, _ = await ext.get("/account")
        assert status == 200 and "it has no password here" in html
        status, html, _ = await ext.get("/account/password")
        assert status == 200 and "it has no password here" in html
        status, body = await ext.api(
            "PUT", "/api/v1/account/password", {"old": "", "new": NEW, "confirm": NEW}
        )
        assert status == 409 and "no password to change here" in body["error"]["message"]
    finally:
        await ext.close()
    status, body = await browser.api("POST", f"/api/v1/users/{user.id}/password")
    assert status == 409 and "no password here" in body["error"]["message"]


async def test_the_account_pages_render(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    for path in ("/account", "/account/password", "/account/totp"):
        status, html, _ = await browser.get(path)
        assert status == 200, path
    status, html, _ = await browser.get("/account/totp")
    assert 'id="totp-secret"' in html and "<svg" in html


async def test_a_token_made_on_the_page_can_carry_less_than_its_owner(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    await browser.get("/account")
    status, html, _ = await browser.post_form(
        "/account/tokens", {"name": "dashboard screen", "max_role": "viewer"}
    )
    assert status == 200 and 'id="new-token"' in html and "at most" in html
    token = html.split('id="new-token">')[1].split("<")[0]
    async with browser.session.get(
        browser.url("/api/v1/users"), headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 403  # nothing appliance-wide, even for a super-administrator's
    _, body = await browser.api("GET", "/api/v1/tokens")
    assert [t["max_role"] for t in body["tokens"]] == ["viewer"]
    status, html, _ = await browser.post_form("/account/tokens", {"name": "x", "max_role": "god"})
    assert status == 400 and "the role is one of" in html
