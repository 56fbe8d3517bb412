"""Test support for the daemon: settings under tmp_path and an HTTPS client
that trusts exactly one running daemon's certificate."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from xenkeep.config import Settings, load_settings
from xenkeep.web import keys
from xenkeep.web.server import RunningServer

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a throw-away daemon under ``tmp_path``."""
    values: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "run_dir": tmp_path / "run",
        "listen": "127.0.0.1",
        "https_port": 0,
        "http_port": 0,
        "hostname": "xenkeep-test",
        # Development mode: the simulators the tests talk to speak plain http,
        # which an appliance refuses (a test of that passes dev=False).
        "dev": True,
        # No helper listens here unless a test starts one.
        "privhelper_socket": tmp_path / "run" / "privhelper.sock",
    }
    values.update(overrides)
    config = tmp_path / "xenkeep.toml"
    config.touch()
    return load_settings(config, environ={}, **values)


class Browser:
    """An HTTPS client with cookies, like a browser tab."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        cafile = keys.tls(server.app).cert_path
        self.ssl = ssl.create_default_context(cafile=str(cafile))
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(ssl=self.ssl),
        )
        self.csrf = ""

    def url(self, path: str) -> str:
        return self.server.url.rstrip("/") + path

    async def get(self, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        kw.setdefault("allow_redirects", False)
        async with self.session.get(self.url(path), **kw) as resp:
            text = await resp.text()
            found = CSRF_META.search(text)
            if found:
                self.csrf = found.group(1)
            return resp.status, text, resp

    async def post_form(
        self, path: str, data: dict[str, str], *, csrf: bool = True
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        if csrf and not self.csrf:
            await self.get("/login")
        body = dict(data)
        if csrf:
            body.setdefault("_csrf", self.csrf)
        async with self.session.post(self.url(path), data=body, allow_redirects=False) as resp:
            text = await resp.text()
            found = CSRF_META.search(text)
            if found:
                self.csrf = found.group(1)
            return resp.status, text, resp

    async def api(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if csrf and method not in ("GET", "HEAD"):
            if not self.csrf:
                _, body = await self.api("GET", "/api/v1/csrf")
                self.csrf = body["csrf_token"]
            hdrs.setdefault("X-CSRF-Token", self.csrf)
        async with self.session.request(
            method, self.url(path), json=json, headers=hdrs, allow_redirects=False
        ) as resp:
            data = await resp.json(content_type=None)
            if isinstance(data, dict) and "csrf_token" in data:
                self.csrf = data["csrf_token"]
            return resp.status, data

    async def until_finished(self, path: str, *, tries: int = 1200) -> dict[str, Any]:
        """GET ``path`` (an operation or a run) every 0.1 s until it is no longer
        pending or running; the last answer."""
        for _ in range(tries):
            status, body = await self.api("GET", path)
            assert status == 200, body
            if body["status"] not in ("pending", "running"):
                return dict(body)
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path} never finished")

    async def events(self, path: str, event: str) -> list[dict[str, Any]]:
        """Every ``event`` frame of a server-sent event stream, which must end by itself."""
        found: list[dict[str, Any]] = []
        async with self.session.get(self.url(path)) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
            kind = ""
            async for raw in r.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == event:
                    found.append(json.loads(line[6:]))
        return found

    async def close(self) -> None:
        await self.session.close()


async def setup_token(settings: Settings) -> str:
    """The token the daemon wrote for the console."""
    return (await asyncio.to_thread(settings.setup_token_path.read_text)).strip()


ADMIN_PASSWORD = "correct horse battery staple"


async def complete_setup(browser: Browser, settings: Settings, username: str = "alice") -> None:
    """Run the wizard's token and admin steps through the JSON API."""
    status, body = await browser.api(
        "POST", "/api/v1/setup/token", {"token": await setup_token(settings)}
    )
    assert status == 200, body
    status, body = await browser.api(
        "POST",
        "/api/v1/setup/admin",
        {"username": username, "password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD},
    )
    assert status == 201, body
