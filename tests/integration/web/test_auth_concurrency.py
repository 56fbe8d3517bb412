"""Sign-in guessing in parallel over real HTTPS: the limit holds however many
requests arrive at once, from one address or from many, and the owner of an
attacked account still gets in with password and TOTP code."""

from __future__ import annotations

import asyncio
import random
import ssl
import time

import aiohttp
import pyotp
import pytest

from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup
from xenkeep.auth import totp
from xenkeep.auth.throttle import FREE_ATTEMPTS
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.web.server import RunningServer

WRONG = "not the password at all"


class AddressedBrowser(Browser):
    """A browser whose connections leave from one loopback address of its own."""

    # Browser's own __init__ is not called: it would open a session from 127.0.0.1.
    def __init__(self, server: RunningServer, address: str) -> None:
        self.server = server
        self.ssl = ssl.create_default_context(cafile=str(keys.tls(server.app).cert_path))
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            # No per-session connection limit: every request must be in flight at once.
            connector=aiohttp.TCPConnector(ssl=self.ssl, local_addr=(address, 0), limit=0),
        )
        self.csrf = ""


async def _sign_in(client: Browser, password: str, code: str = "") -> int:
    status, _ = await client.api(
        "POST", "/api/v1/session", {"username": "alice", "password": password, "code": code}
    )
    return status


def still_clock(browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    """The throttle's clock stands still. Its first wait is 2 s, and on a busy
    machine a hundred TLS handshakes and password hashes take longer than
    that, which would let a late guess through for the right reason (the
    wait was over), not because the limit failed."""
    frozen = time.time()
    monkeypatch.setattr(keys.auth(browser.server.app), "_clock", lambda: frozen)


async def test_100_parallel_guesses_from_one_address_get_at_most_the_free_verdicts(
    browser: Browser, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await complete_setup(browser, settings)
    still_clock(browser, monkeypatch)
    attacker = AddressedBrowser(browser.server, "127.0.0.2")
    try:
        _, body = await attacker.api("GET", "/api/v1/csrf")
        passwords = [WRONG] * 99 + [ADMIN_PASSWORD]
        random.shuffle(passwords)
        statuses = await asyncio.gather(*(_sign_in(attacker, p) for p in passwords))
        verdicts = [s for s in statuses if s != 429]
        assert len(verdicts) <= FREE_ATTEMPTS, statuses
        assert set(verdicts) <= {200, 401}
        # Whether or not the right password was among the verdicts, the
        # attack is still on record: a success gives back only its own
        # attempt, so at most one more guess gets a verdict, then none.
        following = await _sign_in(attacker, WRONG)
        if 200 in verdicts and len(verdicts) <= FREE_ATTEMPTS and following != 429:
            assert following == 401
            following = await _sign_in(attacker, WRONG)
        assert following == 429
    finally:
        await attacker.close()
    _, body = await browser.api("GET", "/api/v1/audit?limit=5000")
    failed = [e for e in body["entries"] if e["event"] == "sign_in_failed"]
    assert len(failed) <= FREE_ATTEMPTS


async def test_parallel_guesses_from_many_addresses_meet_the_account_limit(
    browser: Browser, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await complete_setup(browser, settings)
    still_clock(browser, monkeypatch)
    attackers = [AddressedBrowser(browser.server, f"127.0.1.{n}") for n in range(1, 51)]
    try:
        for attacker in attackers:
            await attacker.api("GET", "/api/v1/csrf")
        statuses = await asyncio.gather(*(_sign_in(a, WRONG) for a in attackers * 2))
        assert len([s for s in statuses if s != 429]) <= FREE_ATTEMPTS, statuses
        # A fresh address that never guessed meets the account's limit too.
        fresh = AddressedBrowser(browser.server, "127.0.2.1")
        try:
            assert await _sign_in(fresh, WRONG) == 429
        finally:
            await fresh.close()
    finally:
        for attacker in attackers:
            await attacker.close()


async def test_the_owner_gets_in_with_a_totp_code_while_the_account_is_attacked(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    auth = keys.auth(browser.server.app)
    user = (await auth.list_users())[0]
    secret = totp.new_secret()
    gen = pyotp.TOTP(secret)
    await auth.enable_totp(user, secret, gen.now())
    attackers = [AddressedBrowser(browser.server, f"127.0.3.{n}") for n in range(1, 11)]
    try:
        for attacker in attackers:
            await attacker.api("GET", "/api/v1/csrf")
        await asyncio.gather(*(_sign_in(a, WRONG, "123456") for a in attackers))
        # The attacker's next guess, even with a code, from a fresh address.
        assert await _sign_in(attackers[0], WRONG, "000000") == 429
    finally:
        for attacker in attackers:
            await attacker.close()
    owner = AddressedBrowser(browser.server, "127.0.3.200")
    try:
        # The password alone is not enough while the account is throttled...
        assert await _sign_in(owner, ADMIN_PASSWORD) == 429
        # ...the password and a fresh code are, and the owner is told.
        status, body = await owner.api(
            "POST",
            "/api/v1/session",
            {"username": "alice", "password": ADMIN_PASSWORD, "code": gen.at(time.time() + 30)},
        )
        assert status == 200, body
        assert body["failed_sign_ins_since_last_visit"] >= FREE_ATTEMPTS
    finally:
        await owner.close()
    _, body = await browser.api("GET", "/api/v1/audit")
    noticed = [e for e in body["entries"] if e["event"] == "sign_in_after_failures"]
    assert noticed and noticed[0]["detail"]["failed"] >= FREE_ATTEMPTS


async def test_the_sign_in_page_tells_of_failures_since_the_last_visit(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    other = Browser(browser.server)
    try:
        for _ in range(3):
            await other.post_form("/login", {"username": "alice", "password": WRONG, "next": "/"})
        status, _, resp = await other.post_form(
            "/login", {"username": "alice", "password": ADMIN_PASSWORD, "next": "/"}
        )
        assert status == 303
        _, html, _ = await other.get(resp.headers["Location"])
        assert "3 failed sign-ins since your last visit" in html
    finally:
        await other.close()


async def test_one_totp_code_sent_twice_at_once_signs_in_once(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    auth = keys.auth(browser.server.app)
    user = (await auth.list_users())[0]
    secret = totp.new_secret()
    gen = pyotp.TOTP(secret)
    await auth.enable_totp(user, secret, gen.now())
    code = gen.at(time.time() + 30)
    clients = [AddressedBrowser(browser.server, f"127.0.4.{n}") for n in range(1, 7)]
    try:
        for c in clients:
            await c.api("GET", "/api/v1/csrf")
        statuses = await asyncio.gather(*(_sign_in(c, ADMIN_PASSWORD, code) for c in clients))
        assert sorted(statuses).count(200) == 1, statuses
    finally:
        for c in clients:
            await c.close()


async def test_six_parallel_admin_creations_with_one_setup_token_make_one_admin(
    browser: Browser, settings: Settings
) -> None:
    from tests.support.web import setup_token

    status, _ = await browser.api(
        "POST", "/api/v1/setup/token", {"token": await setup_token(settings)}
    )
    assert status == 200

    async def create(n: int) -> int:
        status, _ = await browser.api(
            "POST",
            "/api/v1/setup/admin",
            {"username": f"admin{n}", "password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD},
        )
        return status

    statuses = await asyncio.gather(*(create(n) for n in range(6)))
    assert sorted(statuses) == [201] + [409] * 5, statuses
    users = await keys.auth(browser.server.app).list_users()
    assert len(users) == 1
