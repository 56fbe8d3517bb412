"""An identity provider that answers badly (drops the connection, sends a
huge or non-JSON document, redirects, fails, publishes plain-http or
PKCE-less endpoints): "test this configuration" and the sign-in page say
what is wrong, and nothing is signed in.

The provider is a small TLS server written here, each path one way of
misbehaving: no real identity provider can be made to do these on demand.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.auth.providers.conftest import add_provider
from tests.support.signin import form_error
from tests.support.testca import TestCA
from tests.support.web import Browser

pytestmark = pytest.mark.slow


def _document(issuer: str, **changes: Any) -> bytes:
    doc = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/auth",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        **changes,
    }
    return json.dumps(doc).encode()


class Misbehaving:
    """The server: ``https://127.0.0.1:<port>/<way>`` misbehaves that way."""

    def __init__(self, ca: TestCA) -> None:
        cert = ca.issue("misbehaving")
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert.cert), str(cert.key))
        self.port = 0
        self._server: asyncio.Server | None = None

    def issuer(self, way: str) -> str:
        return f"https://127.0.0.1:{self.port}/{way}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            way = request.split(b" ")[1].decode().split("/")[1]
            if way != "drop":
                await self._answer(writer, way)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, way: str) -> None:
        status, kind, body, extra = "200 OK", "application/json", b"", ""
        if way == "huge":
            body = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        elif way == "html":
            kind, body = "text/html", b"<html><body>Welcome to nginx!</body></html>"
        elif way == "redirect":
            status, extra = "302 Found", "Location: https://elsewhere.example/\r\n"
        elif way == "failing":
            status, kind, body = "500 Internal Server Error", "text/plain", b"oops"
        elif way == "array":
            body = b"[1, 2, 3]"
        elif way == "plain-http":
            body = _document(self.issuer(way), token_endpoint="http://127.0.0.1/token")
        elif way == "no-pkce":
            body = _document(self.issuer(way), code_challenge_methods_supported=["plain"])
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()


@pytest.fixture
async def misbehaving(tmp_path: Path) -> AsyncIterator[tuple[Misbehaving, TestCA]]:
    ca = await asyncio.to_thread(TestCA, tmp_path / "ca")
    server = Misbehaving(ca)
    await server.start()
    yield server, ca
    await server.stop()


WAYS = [
    ("drop", "broke off its answer"),
    ("huge", "larger than 1024 KiB"),
    ("html", "is not JSON (HTTP 200"),
    ("redirect", "answered with a redirect to 'https://elsewhere.example/', which is not followed"),
    ("failing", "answered HTTP 500"),
    ("array", "is not a JSON object"),
    ("plain-http", "has no https:// token_endpoint"),
    ("no-pkce", "does not support PKCE with S256"),
]


@pytest.mark.parametrize(("way", "words"), WAYS)
async def test_a_misbehaving_provider_is_named_and_explained(
    admin: Browser,
    misbehaving: tuple[Misbehaving, TestCA],
    agent_factory: Any,
    way: str,
    words: str,
) -> None:
    server, ca = misbehaving
    provider = await add_provider(
        admin,
        "oidc",
        name="Corp SSO",
        slug="corp",
        issuer=server.issuer(way),
        client_id="xenkeep",
        client_secret="s3cret",
        ca_pem=ca.ca_pem,
    )
    status, body = await admin.api("POST", f"/api/v1/auth/providers/{provider['id']}/test", {})
    assert status == 200 and body["ok"] is False
    step = body["steps"][0]
    assert step["label"] == "Discovery document" and not step["ok"]
    assert words in step["detail"], step["detail"]

    agent = agent_factory(ca.ca_path)
    status, page, _ = await agent.get(agent.daemon_url + "/auth/corp/start")
    assert status == 503 and words in form_error(page), form_error(page)
    assert await agent.session_user() is None
