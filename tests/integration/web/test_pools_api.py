"""The pools JSON API and the dashboard's event stream, over real HTTPS,
against the simulator."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.pools.listener import CountingListener, listener
from tests.integration.xapi.simfixtures import PASSWORD, TlsSimulator, demo_state, sim, tls_sim
from tests.support.web import Browser, complete_setup, make_settings
from xapisim import RunningSimulator
from xenkeep.app import create_app
from xenkeep.config import Settings
from xenkeep.secretbox import KEY_NAME
from xenkeep.web.server import start_server
from xenkeep.xapi.client import XapiClient

__all__ = ["demo_state", "listener", "sim", "tls_sim"]
WAIT = 30.0


def stored_passwords(database: Path) -> tuple[str, ...]:
    """The pools' passwords as the database holds them (a plain sqlite3 look)."""
    with sqlite3.connect(database) as db:
        return tuple(row[0] for row in db.execute("SELECT password_enc FROM pools"))


async def wait_connected(browser: Browser, pool_id: int) -> dict[str, Any]:
    for _ in range(300):
        status, body = await browser.api("GET", f"/api/v1/pools/{pool_id}")
        assert status == 200, body
        if body["status"]["state"] == "connected" and body["status"]["synced"]:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"pool {pool_id} never connected: {body['status']}")


async def add_pool(
    browser: Browser, sim: RunningSimulator, password: str | None = None
) -> tuple[int, Any]:
    return await browser.api(
        "POST",
        "/api/v1/pools",
        {"url": sim.url, "username": "root", "password": password or PASSWORD, "fingerprint": ""},
    )


async def test_register_list_show_and_remove(
    browser: Browser, settings: Settings, sim: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await complete_setup(browser, settings)
    status, body = await browser.api("POST", "/api/v1/pools/probe", {"url": sim.url})
    assert status == 200 and body == {"url": sim.url.rstrip("/"), "tls": False, "fingerprint": ""}

    status, body = await add_pool(browser, sim, password="not-the-password")
    assert status == 400 and body["error"]["code"] == "xapi_authentication_failed"
    assert "not-the-password" not in json.dumps(body)

    status, body = await add_pool(browser, sim)
    assert status == 201, body
    pool = body["pool"]
    assert pool["name"] and pool["url"] == sim.url.rstrip("/")
    assert not any("password" in key for key in pool)
    status, body = await add_pool(browser, sim)
    assert status == 409

    detail = await wait_connected(browser, pool["id"])
    assert len(detail["hosts"]) == 2
    assert len(detail["srs"]) >= 3
    assert detail["vms"] and all(v["power_state"] for v in detail["vms"])
    assert any(v["disk_size"] > 0 for v in detail["vms"])
    status, listing = await browser.api("GET", "/api/v1/pools")
    assert [p["id"] for p in listing["pools"]] == [pool["id"]]
    assert listing["pools"][0]["status"]["state"] == "connected"

    # At rest: the password is encrypted, the key file private.
    (stored,) = await asyncio.to_thread(stored_passwords, settings.database_path)
    assert "demo" not in stored
    key = settings.state_dir / "secret.key"
    assert (await asyncio.to_thread(key.stat)).st_mode & 0o777 == 0o600
    # Neither the password nor the pool session is ever logged.
    session_refs = list(sim.pool.db.refs("session"))
    for record in caplog.records:
        text = record.getMessage()
        assert "not-the-password" not in text
        assert not any(ref in text for ref in session_refs)

    status, body = await browser.api("DELETE", f"/api/v1/pools/{pool['id']}")
    assert status == 200
    status, listing = await browser.api("GET", "/api/v1/pools")
    assert listing["pools"] == []
    status, body = await browser.api("GET", f"/api/v1/pools/{pool['id']}")
    assert status == 404


async def test_https_pool_needs_the_confirmed_fingerprint(
    browser: Browser, settings: Settings, tls_sim: TlsSimulator
) -> None:
    await complete_setup(browser, settings)
    status, probe = await browser.api("POST", "/api/v1/pools/probe", {"url": tls_sim.url})
    assert status == 200 and probe["tls"] and probe["fingerprint"] == tls_sim.tls.fingerprint
    body = {"url": tls_sim.url, "username": "root", "password": "demo"}
    status, answer = await browser.api("POST", "/api/v1/pools", body)
    assert status == 400 and answer["error"]["field"] == "fingerprint"
    status, answer = await browser.api(
        "POST", "/api/v1/pools", {**body, "fingerprint": ":".join(["00"] * 32)}
    )
    assert status == 502 and answer["error"]["code"] == "xapi_fingerprint_mismatch"
    status, answer = await browser.api(
        "POST", "/api/v1/pools", {**body, "fingerprint": probe["fingerprint"]}
    )
    assert status == 201, answer
    assert answer["pool"]["fingerprint"] == tls_sim.tls.fingerprint
    await wait_connected(browser, answer["pool"]["id"])


async def test_unreachable_pool_is_a_clear_error(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api(
        "POST",
        "/api/v1/pools",
        {"url": "http://127.0.0.1:9", "username": "root", "password": "x"},
    )
    assert status == 502 and body["error"]["code"] == "xapi_unreachable"
    status, body = await browser.api("POST", "/api/v1/pools/probe", {"url": "ftp://x"})
    assert status == 400 and body["error"]["field"] == "url"


async def test_plain_http_pools_are_refused_outside_development(
    tmp_path: Path, listener: CountingListener, tls_sim: TlsSimulator
) -> None:
    # The suite's settings are in development mode (its simulators speak
    # http); an appliance is not.
    settings = make_settings(tmp_path, dev=False)
    async with start_server(create_app(settings)) as server:
        browser = Browser(server)
        try:
            await complete_setup(browser, settings)
            body = {"url": listener.url, "username": "root", "password": "demo"}
            for path in ("/api/v1/pools/probe", "/api/v1/pools"):
                status, answer = await browser.api("POST", path, body)
                assert status == 400, answer
                error = answer["error"]
                assert error["field"] == "url"
                assert "must start with https://" in error["message"]
                assert "password" in error["message"] and "in clear" in error["message"]
            # The Pools page's form: refused at the first step, nothing staged
            # that a confirmation could send.
            form = {"url": listener.url, "username": "root", "password": "demo"}
            status, text, _ = await browser.post_form("/pools", form)
            assert status == 400 and "must start with https://" in text
            status, _, _ = await browser.post_form("/pools", {"action": "confirm"})
            assert status == 400
            status, listing = await browser.api("GET", "/api/v1/pools")
            assert listing == {"pools": []}
            assert listener.connections == 0
            # https stays open, of course.
            status, probe = await browser.api("POST", "/api/v1/pools/probe", {"url": tls_sim.url})
            assert status == 200 and probe["tls"]
        finally:
            await browser.close()


async def test_only_admins_manage_pools(browser: Browser, settings: Settings) -> None:
    status, _ = await browser.api("GET", "/api/v1/pools")
    assert status == 401
    status, _ = await browser.api("GET", "/api/v1/events")
    assert status == 401
    status, _, resp = await browser.get("/pools")
    assert status == 303 and resp.headers["Location"].startswith("/login")


async def read_events(resp: aiohttp.ClientResponse) -> Any:
    """Yield (event, data) from a text/event-stream response."""
    event, data = "", ""
    while True:
        line = (await resp.content.readline()).decode()
        if not line:
            return
        line = line.rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and event:
            yield event, json.loads(data)
            event, data = "", ""


async def test_event_stream_follows_the_pool(
    browser: Browser, settings: Settings, sim: RunningSimulator
) -> None:
    await complete_setup(browser, settings)
    status, body = await add_pool(browser, sim)
    assert status == 201
    pool_id = body["pool"]["id"]
    detail = await wait_connected(browser, pool_id)
    halted = next(v for v in detail["vms"] if v["power_state"] == "Halted")

    async with browser.session.get(browser.url("/api/v1/events")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = read_events(resp)
        event, data = await asyncio.wait_for(events.__anext__(), WAIT)
        assert event == "overview" and data["pools"][0]["id"] == pool_id

        async with XapiClient(sim.url, "root", "demo") as xapi:
            vm = await xapi.call("VM.get_by_uuid", halted["uuid"])
            await xapi.call("VM.start", vm, False, False)

        async def running() -> dict[str, Any]:
            async for event, data in events:
                if event == "pool":
                    states = {v["uuid"]: v["power_state"] for v in data["vms"]}
                    if states.get(halted["uuid"]) == "Running":
                        return data
            raise AssertionError("stream ended")

        data = await asyncio.wait_for(running(), WAIT)
        assert data["id"] == pool_id and data["running"] >= 1


async def test_event_streams_end_at_shutdown(browser: Browser, settings: Settings) -> None:
    from xenkeep.web.sse import end_event_streams

    await complete_setup(browser, settings)
    async with browser.session.get(browser.url("/api/v1/events")) as resp:
        events = read_events(resp)
        event, data = await asyncio.wait_for(events.__anext__(), WAIT)
        assert event == "overview" and data == {"pools": []}
        # What the daemon's on_shutdown does: the stream ends by itself, so
        # stopping the server does not wait for it.
        await end_event_streams(browser.server.app)

        async def drain() -> list[Any]:
            return [e async for e in events]

        assert await asyncio.wait_for(drain(), WAIT) == []
        assert resp.content.at_eof()


async def test_a_damaged_secret_key_does_not_stop_the_daemon(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / KEY_NAME).write_text("not a key\n")
    async with start_server(create_app(settings)) as server:
        browser = Browser(server)
        try:
            status, body = await browser.api("GET", "/api/v1/health")
            assert status == 200, body
            await complete_setup(browser, settings)
            status, body = await browser.api("GET", "/api/v1/pools")
            assert status == 200 and body == {"pools": []}
        finally:
            await browser.close()
    assert any("cannot be used" in r.getMessage() for r in caplog.records)
