"""Hostile bodies and cookies over HTTPS: a clear 400 (or nothing), never a 500."""

from __future__ import annotations

import base64

import pytest

from tests.support.web import Browser, complete_setup
from xenkeep.config import Settings

DEEP = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"username":' * 5_000 + b'"x"' + b"}" * 5_000


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
async def test_deep_json_before_sign_in_is_a_clear_400(browser: Browser, body: bytes) -> None:
    _, csrf = await browser.api("GET", "/api/v1/csrf")
    async with browser.session.post(
        browser.url("/api/v1/session"),
        data=body,
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf["csrf_token"]},
    ) as resp:
        assert resp.status == 400
        answer = await resp.json()
    assert answer["error"]["code"] == "invalid_input"
    assert "nests deeper" in answer["error"]["message"]


async def test_deep_json_after_sign_in_changes_nothing(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    async with browser.session.put(
        browser.url("/api/v1/appliance"),
        data=b'{"name": "Deep", "timezone": ' + DEEP + b"}",
        headers={"Content-Type": "application/json", "X-CSRF-Token": browser.csrf},
    ) as resp:
        assert resp.status == 400
    status, body = await browser.api("GET", "/api/v1/appliance")
    assert status == 200 and body["name"] != "Deep"


async def test_a_forged_deep_flash_cookie_is_ignored(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    forged = base64.urlsafe_b64encode(b"[" * 3_000 + b"]" * 3_000).decode()
    status, html, _ = await browser.get("/", cookies={"xk_flash": forged})
    assert status == 200 and "something went wrong" not in html
