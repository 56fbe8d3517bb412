"""The listeners: HTTPS for everything, HTTP only to redirect to HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from xenkeep.config import Settings
from xenkeep.errors import ConfigError
from xenkeep.web import keys

log = logging.getLogger(__name__)

#: What every answer says it comes from: the product, never the versions of
#: aiohttp and Python (aiohttp's default), which only help an attacker pick
#: an exploit.
SERVER_BANNER = "XenKeep"
#: Browsers that have seen the appliance over HTTPS refuse plain HTTP to it
#: for a year. No includeSubDomains: the appliance does not own its domain.
HSTS = "max-age=31536000"


class _GuardedHandler(RequestHandler):
    """aiohttp's connection handler, with a deadline for the first headers.

    aiohttp 3.8 has no header-read timeout: ``keepalive_timeout`` only
    starts once a first answer is sent, and nothing bounds the wait for the
    first request, so a client sending a byte at a time keeps a connection
    (and its TLS state) for ever. Here the first request's headers must be
    complete within ``header_seconds`` of connecting; for later requests on
    the same connection ``keepalive_timeout`` (set to the same bound) closes
    a connection whose next headers are not complete in time, because
    aiohttp counts the connection idle until a whole request has arrived.
    """

    __slots__ = ("_header_deadline", "_header_seconds")

    def __init__(self, manager: web.Server, *, header_seconds: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_seconds = header_seconds
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._header_deadline = self._loop.call_later(self._header_seconds, self._headers_late)

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self._request_count == 0:
            log.info("closing a connection whose request headers did not arrive in time")
            self.force_close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_count and self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # Answers to requests that never reached the application (a header
        # too long, a malformed request line) carry no version banner either.
        response = super().handle_error(request, status, exc, message)
        response.headers["Server"] = SERVER_BANNER
        return response


class _GuardedSite(web.BaseSite):
    """A listening socket served by :class:`_GuardedHandler`s."""

    __slots__ = ("_factory", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        factory: Callable[[], RequestHandler],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._sock = sock
        self._factory = factory

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        host, port = self._sock.getsockname()[:2]
        return f"{scheme}://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._factory, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog
        )


async def _runner(app: web.Application, settings: Settings) -> web.AppRunner:
    # Idle keep-alive connections wait no longer than a slow client may take
    # over its headers; lingering after an unread body is short for the same
    # reason.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        keepalive_timeout=settings.request_read_seconds,
        lingering_time=2.0,
    )
    await runner.setup()
    return runner


async def _serve(
    runner: web.AppRunner,
    sock: socket.socket,
    settings: Settings,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    server = runner.server
    assert server is not None
    loop = asyncio.get_running_loop()

    def factory() -> RequestHandler:
        return _GuardedHandler(
            server,
            loop=loop,
            header_seconds=settings.request_read_seconds,
            keepalive_timeout=settings.request_read_seconds,
            lingering_time=2.0,
        )

    await _GuardedSite(runner, sock, factory, ssl_context).start()


async def _banner_and_hsts(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer of the HTTPS app, streamed ones included (the header
    middleware cannot reach a response its handler has already prepared)."""
    response.headers["Server"] = SERVER_BANNER
    response.headers.setdefault("Strict-Transport-Security", HSTS)


@dataclass(frozen=True, slots=True)
class RunningServer:
    """What a started daemon listens on."""

    app: web.Application
    https_port: int
    http_port: int | None
    host: str

    @property
    def url(self) -> str:
        """The HTTPS URL to open (loopback when listening everywhere)."""
        host = self.host
        if host in ("::", "0.0.0.0", ""):  # noqa: S104 - describing, not binding
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.https_port}/"


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; "::" falls back to IPv4 where IPv6 is off."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        if host == "::" and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            return _bind("0.0.0.0", port)  # noqa: S104 - the appliance serves its LAN
        raise
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        # One socket for both families, like the appliance's users expect.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if host == "::" and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            return _bind("0.0.0.0", port)  # noqa: S104
        raise ConfigError(
            f"cannot listen on {host} port {port}: {exc.strerror}",
            hint="another program may hold the port; change https_port/http_port",
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url_host(address: str) -> str:
    """An address as the host part of a URL (IPv6 in brackets, no zone)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _requested_name(host_header: str) -> str:
    """The host name of a Host header, without its port, lower-case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def own_https_host(host_header: str, own_names: Iterable[str], local_address: str) -> str:
    """Where the HTTP->HTTPS redirect sends the browser.

    The Host header is the client's to forge, so it is kept only when it is
    one of the appliance's own names (its hostname, the names and addresses
    in its certificate); otherwise the redirect names the address the
    client connected to, which is the appliance's by definition.
    """
    asked = _requested_name(host_header)
    if asked and asked in {_url_host(n.lower()) for n in own_names}:
        return asked
    return _url_host(local_address)


def _redirect_app(https_port: int, own_names: frozenset[str]) -> web.Application:
    async def to_https(request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local = str(sockname[0]) if sockname else "localhost"
        host = own_https_host(request.host, own_names, local)
        suffix = "" if https_port == 443 else f":{https_port}"
        raise web.HTTPMovedPermanently(f"https://{host}{suffix}{request.path_qs}")

    async def banner(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = SERVER_BANNER

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", to_https)
    # aiohttp 3.8 types its signals' handlers wrongly (fixed in 3.9).
    app.on_response_prepare.append(banner)  # type: ignore[arg-type]
    return app


@contextlib.asynccontextmanager
async def start_server(app: web.Application) -> AsyncIterator[RunningServer]:
    """Start the HTTPS (and redirect) listeners for ``app``; stop them after."""
    settings: Settings = keys.settings(app)
    app.on_response_prepare.append(_banner_and_hsts)  # type: ignore[arg-type]
    runner = await _runner(app, settings)
    runners = [runner]
    try:
        tls = keys.tls(app)  # made by the app's start-up, in runner.setup()
        https_sock = _bind(settings.listen, settings.https_port)
        https_port = https_sock.getsockname()[1]
        await _serve(runner, https_sock, settings, tls.server_context())
        http_port = None
        if settings.http_port:
            http_sock = _bind(settings.listen, settings.http_port)
            http_port = http_sock.getsockname()[1]
            # The certificate is a file: read off the loop.
            own = frozenset({settings.effective_hostname, *await asyncio.to_thread(tls.names)})
            redirect_runner = await _runner(_redirect_app(https_port, own), settings)
            runners.append(redirect_runner)
            await _serve(redirect_runner, http_sock, settings)
        yield RunningServer(app, https_port, http_port, settings.listen)
    finally:
        for r in reversed(runners):
            await r.cleanup()
