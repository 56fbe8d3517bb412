"""Redirects over HTTPS: after sign-in, only to this appliance's own paths."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.support.hostile import HOSTILE_REDIRECTS
from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup
from xenkeep.config import Settings

SENT = [t for t in HOSTILE_REDIRECTS if t]


async def test_the_reported_redirect_stays_home(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    status, _, resp = await browser.get("/login?next=%2F%09%2Fevil.example%2Fphish")
    assert status == 303 and resp.headers["Location"] == "/"


@pytest.mark.parametrize("target", SENT)
async def test_sign_in_never_sends_the_browser_away(
    browser: Browser, settings: Settings, target: str
) -> None:
    await complete_setup(browser, settings, username="alice")
    fresh = Browser(browser.server)
    try:
        # The sign-in page puts the target into its form as it was given...
        status, html, _ = await fresh.get("/login?next=" + quote(target, safe=""))
        assert status == 200 and "evil.example" not in html and "javascript" not in html.lower()
        # ... and the form's answer, with the target forged in the body, stays here.
        status, _, resp = await fresh.post_form(
            "/login", {"username": "alice", "password": ADMIN_PASSWORD, "next": target}
        )
        assert status == 303 and resp.headers["Location"] == "/"
        # Signed in, the page redirects at once: still home.
        status, _, resp = await fresh.get("/login?next=" + quote(target, safe=""))
        assert status == 303 and resp.headers["Location"] == "/"
    finally:
        await fresh.close()


async def test_own_paths_survive_sign_in(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    fresh = Browser(browser.server)
    try:
        status, _, resp = await fresh.post_form(
            "/login", {"username": "alice", "password": ADMIN_PASSWORD, "next": "/audit?page=2"}
        )
        assert status == 303 and resp.headers["Location"] == "/audit?page=2"
    finally:
        await fresh.close()
