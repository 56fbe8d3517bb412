"""The wizard's "Connect a pool" step and the Pools page, through their
forms over real HTTPS, against the simulator over HTTP and over HTTPS."""

from __future__ import annotations

import html as htmllib

from tests.integration.xapi.simfixtures import TlsSimulator, demo_state, sim, tls_sim
from tests.support.web import Browser, complete_setup
from xapisim import RunningSimulator
from xenkeep.config import Settings

__all__ = ["demo_state", "sim", "tls_sim"]


async def to_pool_step(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    await browser.get("/setup/totp")
    status, _, _ = await browser.post_form("/setup/totp", {"action": "skip"})
    assert status == 303
    await browser.get("/setup/restore")
    status, _, _ = await browser.post_form("/setup/restore", {"action": "skip"})
    assert status == 303
    await browser.get("/setup/appliance")
    status, _, _ = await browser.post_form(
        "/setup/appliance", {"name": "Site A", "timezone": "UTC"}
    )
    assert status == 303
    status, _, resp = await browser.get("/setup")
    assert resp.headers["Location"] == "/setup/pool"


async def test_wizard_connects_an_https_pool_after_the_fingerprint_is_confirmed(
    browser: Browser, settings: Settings, tls_sim: TlsSimulator
) -> None:
    await to_pool_step(browser, settings)
    status, page, _ = await browser.get("/setup/pool")
    assert status == 200 and 'name="url"' in page

    form = {"action": "check", "url": tls_sim.url, "username": "root", "password": "demo"}
    status, _, _ = await browser.post_form("/setup/pool", form)
    assert status == 303
    sessions = len(tls_sim.pool.db.refs("session"))
    status, page, _ = await browser.get("/setup/pool")
    assert tls_sim.tls.fingerprint in page
    assert "demo" not in page.replace("demo pool", "")  # the password is not echoed
    # Nothing was sent to the pool yet: no login before the confirmation.
    assert len(tls_sim.pool.db.refs("session")) == sessions

    status, _, _ = await browser.post_form(
        "/setup/pool", {"action": "confirm", "fingerprint": tls_sim.tls.fingerprint}
    )
    assert status == 303
    status, _, resp = await browser.get("/setup")
    assert resp.headers["Location"] == "/setup/summary"
    status, body = await browser.api("GET", "/api/v1/pools")
    assert [p["fingerprint"] for p in body["pools"]] == [tls_sim.tls.fingerprint]


async def test_wizard_shows_pool_errors_on_the_form(
    browser: Browser, settings: Settings, sim: RunningSimulator
) -> None:
    await to_pool_step(browser, settings)
    await browser.get("/setup/pool")
    form = {"action": "check", "url": sim.url, "username": "root", "password": "wrong"}
    status, _, _ = await browser.post_form("/setup/pool", form)
    assert status == 303
    status, page, _ = await browser.get("/setup/pool")
    assert "plain HTTP" in page
    status, page, _ = await browser.post_form("/setup/pool", {"action": "confirm"})
    assert status == 400
    assert "refused the user name or password" in htmllib.unescape(page)

    # Start over with the right password.
    await browser.post_form("/setup/pool", {"action": "cancel"})
    status, _, _ = await browser.post_form("/setup/pool", {**form, "password": "demo"})
    status, _, _ = await browser.post_form("/setup/pool", {"action": "confirm"})
    assert status == 303
    status, _, resp = await browser.get("/setup")
    assert resp.headers["Location"] == "/setup/summary"


async def test_wizard_step_can_be_skipped(browser: Browser, settings: Settings) -> None:
    await to_pool_step(browser, settings)
    await browser.get("/setup/pool")
    status, page, _ = await browser.post_form(
        "/setup/pool",
        {"action": "check", "url": "ftp://nowhere", "username": "root", "password": "x"},
    )
    assert status == 400 and "must start with https://" in page
    status, _, _ = await browser.post_form("/setup/pool", {"action": "skip"})
    assert status == 303
    status, _, resp = await browser.get("/setup")
    assert resp.headers["Location"] == "/setup/summary"


async def test_pools_page_adds_lists_and_removes(
    browser: Browser, settings: Settings, sim: RunningSimulator
) -> None:
    await complete_setup(browser, settings)
    status, page, _ = await browser.get("/pools")
    assert status == 200 and "No pool is connected yet" in page
    form = {"action": "check", "url": sim.url, "username": "root", "password": "demo"}
    status, _, resp = await browser.post_form("/pools", form)
    assert status == 303 and resp.headers["Location"] == "/pools"
    status, page, _ = await browser.get("/pools")
    assert 'value="confirm"' in page
    status, _, resp = await browser.post_form("/pools", {"action": "confirm"})
    assert status == 303
    status, page, _ = await browser.get("/pools")
    assert "connected." in page and sim.url.rstrip("/") in page
    status, body = await browser.api("GET", "/api/v1/pools")
    pool_id = body["pools"][0]["id"]
    status, _, resp = await browser.post_form(f"/pools/{pool_id}/remove", {})
    assert status == 303
    status, page, _ = await browser.get("/pools")
    assert "removed." in page and "No pool is connected yet" in page
    status, page, _ = await browser.get("/")
    assert 'id="pools-live"' in page and "dashboard.js" in page
    status, script, resp = await browser.get("/static/dashboard.js")
    assert status == 200 and "EventSource" in script


async def test_a_finished_wizard_stays_finished_when_its_pool_is_removed(
    browser: Browser, settings: Settings, sim: RunningSimulator
) -> None:
    await to_pool_step(browser, settings)
    await browser.get("/setup/pool")
    form = {"action": "check", "url": sim.url, "username": "root", "password": "demo"}
    await browser.post_form("/setup/pool", form)
    status, _, _ = await browser.post_form("/setup/pool", {"action": "confirm"})
    assert status == 303
    await browser.get("/setup/summary")
    status, _, _ = await browser.post_form("/setup/summary", {})
    assert status == 303
    status, page, _ = await browser.get("/")
    assert "steps left" not in page
    status, body = await browser.api("GET", "/api/v1/pools")
    status, _, _ = await browser.post_form(f"/pools/{body['pools'][0]['id']}/remove", {})
    assert status == 303
    status, page, _ = await browser.get("/")
    assert status == 200 and "steps left" not in page
