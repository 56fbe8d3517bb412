"""The listeners as a client on the network meets them: TLS suites, headers,
the HTTP redirect, and clients too slow to be served."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.web import Browser, make_settings
from xenkeep.app import create_app
from xenkeep.web import keys
from xenkeep.web.server import RunningServer, start_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def redirecting(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A daemon with its HTTP->HTTPS redirect listener on."""
    app = create_app(make_settings(tmp_path, http_port=free_port()))
    async with start_server(app) as server:
        yield server


def client_context(server: RunningServer) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(keys.tls(server.app).cert_path))
    ctx.check_hostname = False
    return ctx


async def handshake(server: RunningServer, ctx: ssl.SSLContext) -> str:
    """The suite agreed on with ``ctx``."""
    _, writer = await asyncio.open_connection("127.0.0.1", server.https_port, ssl=ctx)
    try:
        cipher = writer.get_extra_info("cipher")
        return str(cipher[0])
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_cbc_only_client_cannot_connect(daemon: RunningServer) -> None:
    ctx = client_context(daemon)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256")
    # The server refuses the hello ("no shared cipher"); asyncio reports that
    # as an SSL error or a reset, depending on who notices first.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await handshake(daemon, ctx)


@pytest.mark.parametrize(
    ("suite", "expected"),
    [
        ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ],
)
async def test_tls12_aead_suites_connect(daemon: RunningServer, suite: str, expected: str) -> None:
    ctx = client_context(daemon)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(suite)
    assert await handshake(daemon, ctx) == expected


async def test_tls13_connects(daemon: RunningServer) -> None:
    ctx = client_context(daemon)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    assert (await handshake(daemon, ctx)).startswith("TLS_")


@pytest.mark.parametrize("path", ["/login", "/api/v1/health", "/no/such/page", "/static/app.css"])
async def test_every_answer_has_hsts_and_no_version_banner(browser: Browser, path: str) -> None:
    _, _, resp = await browser.get(path)
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert resp.headers["Server"] == "XenKeep"


async def test_an_answer_from_below_the_app_has_no_version_banner(daemon: RunningServer) -> None:
    # A request line aiohttp's parser refuses never reaches the application.
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", daemon.https_port, ssl=client_context(daemon)
    )
    writer.write(b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await reader.read()
    writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    assert " 400 Bad Request" in head.splitlines()[0]
    assert "Server: XenKeep\r\n" in head + "\r\n" and "Python" not in head and "aiohttp" not in head


@pytest.mark.parametrize(
    "forged", ["evil.example", "evil.example:80", "[2001:db8::1]", "xenkeep-test.evil.example"]
)
async def test_the_http_redirect_ignores_a_forged_host(
    redirecting: RunningServer, forged: str
) -> None:
    daemon = redirecting
    assert daemon.http_port
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{daemon.http_port}/login?next=/x",
            headers={"Host": forged},
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status == 301
        assert resp.headers["Location"] == f"https://127.0.0.1:{daemon.https_port}/login?next=/x"
        assert resp.headers["Server"] == "XenKeep"


@pytest.mark.parametrize("own", ["xenkeep-test", "XENKEEP-TEST:80", "localhost", "127.0.0.1"])
async def test_the_http_redirect_keeps_the_appliance_s_own_names(
    redirecting: RunningServer, own: str
) -> None:
    daemon = redirecting
    assert daemon.http_port
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{daemon.http_port}/", headers={"Host": own}, allow_redirects=False
        ) as resp,
    ):
        name = own.split(":")[0].lower()
        assert resp.headers["Location"] == f"https://{name}:{daemon.https_port}/"


@pytest.fixture
async def impatient(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A daemon that gives a client one second for headers and for a body."""
    app = create_app(make_settings(tmp_path, request_read_seconds=1, http_port=free_port()))
    async with start_server(app) as server:
        yield server


async def trickle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[int, bytes]:
    """Send ``data`` a byte every 0.1 s until the server hangs up: how many
    bytes went out, and what the server said."""
    sent = 0
    for byte in data:
        if reader.at_eof() or writer.is_closing():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            break
        sent += 1
        await asyncio.sleep(0.1)
    try:
        answer = await reader.read()
    except (ConnectionError, ssl.SSLError):
        answer = b""
    writer.close()
    return sent, answer


SLOW_HEADERS = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"s" * 200 + b"\r\n\r\n"


async def test_slow_headers_are_cut_off_over_https(impatient: RunningServer) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", impatient.https_port, ssl=client_context(impatient)
    )
    sent, answer = await trickle(reader, writer, SLOW_HEADERS)
    assert sent < len(SLOW_HEADERS) and b"200 OK" not in answer


async def test_slow_headers_are_cut_off_over_http(impatient: RunningServer) -> None:
    assert impatient.http_port
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient.http_port)
    sent, answer = await trickle(reader, writer, SLOW_HEADERS)
    assert sent < len(SLOW_HEADERS) and b"301" not in answer


async def test_slow_next_headers_on_a_kept_connection_are_cut_off(
    impatient: RunningServer,
) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", impatient.https_port, ssl=client_context(impatient)
    )
    writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    sent, answer = await trickle(reader, writer, SLOW_HEADERS)
    assert sent < len(SLOW_HEADERS) and b"200 OK" not in answer


async def test_a_slow_body_is_answered_408(impatient: RunningServer) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", impatient.https_port, ssl=client_context(impatient)
    )
    body = b'{"username": "' + b"a" * 100 + b'", "password": "x"}'
    writer.write(
        b"POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-CSRF-Token: t\r\nCookie: xk_csrf=t\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    sent, answer = await trickle(reader, writer, body)
    assert sent < len(body) and answer.startswith(b"HTTP/1.1 408")
