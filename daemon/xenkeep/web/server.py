"""The listeners: HTTPS for everything, HTTP only to redirect to HTTPS."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from xenkeep.config import Settings
from xenkeep.errors import ConfigError
from xenkeep.web import keys

log = logging.getLogger(__name__)


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


def _redirect_app(https_port: int) -> web.Application:
    async def to_https(request: web.Request) -> web.StreamResponse:
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        suffix = "" if https_port == 443 else f":{https_port}"
        raise web.HTTPMovedPermanently(f"https://{host}{suffix}{request.path_qs}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", to_https)
    return app


@contextlib.asynccontextmanager
async def start_server(app: web.Application) -> AsyncIterator[RunningServer]:
    """Start the HTTPS (and redirect) listeners for ``app``; stop them after."""
    settings: Settings = keys.settings(app)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    runners = [runner]
    try:
        https_sock = _bind(settings.listen, settings.https_port)
        https_port = https_sock.getsockname()[1]
        ssl_ctx = keys.tls(app).server_context()
        await web.SockSite(runner, https_sock, ssl_context=ssl_ctx).start()
        http_port = None
        if settings.http_port:
            http_sock = _bind(settings.listen, settings.http_port)
            http_port = http_sock.getsockname()[1]
            redirect_runner = web.AppRunner(_redirect_app(https_port), handle_signals=False)
            await redirect_runner.setup()
            runners.append(redirect_runner)
            await web.SockSite(redirect_runner, http_sock).start()
        yield RunningServer(app, https_port, http_port, settings.listen)
    finally:
        for r in reversed(runners):
            await r.cleanup()
