"""An async XAPI client speaking JSON-RPC over aiohttp.

XAPI's JSON-RPC endpoint is ``POST /jsonrpc`` on the pool master (xen-api's
wire-protocol document). Requests are JSON-RPC 2.0 ``{"jsonrpc": "2.0",
"method", "params", "id"}``; every method but ``session.login_with_password``
takes the session reference as its first parameter. A failure comes back as
``{"error": {"code", "message": <XAPI code>, "data": [params]}}`` (2.0) or
``{"error": [code, *params]}`` (1.0); both become :class:`XapiFailure`.

TLS is trusted on first use: :func:`probe_fingerprint` reads the pool's
certificate fingerprint for the admin to confirm, and from then on the client
accepts exactly that certificate (``aiohttp.Fingerprint``), whatever CA or
name it has, which is what self-signed pool certificates need. Plain HTTP is
accepted for the simulator and development only when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from xenkeep.errors import ValidationError
from xenkeep.xapi.errors import (
    FingerprintMismatchError,
    SessionInvalidError,
    XapiConnectionError,
    XapiFailure,
    failure_from,
)

log = logging.getLogger(__name__)

API_VERSION = "2.21"
DEFAULT_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
MAX_ANSWER_BYTES = 512 << 20
KEEPALIVE_IDLE = 30


def normalize_url(url: str) -> str:
    """``scheme://host[:port]`` of a pool master, or ValidationError."""
    text = url.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"not a URL: {exc}", field="url") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("the pool URL must start with https:// (or http://)", field="url")
    if not parts.hostname:
        raise ValidationError("the pool URL has no host name", field="url")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValidationError(
            "give only the pool master's address, e.g. https://xen1.example.net", field="url"
        )
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def format_fingerprint(digest: bytes) -> str:
    """A SHA-256 digest as colon-separated upper-case hex (as browsers show it)."""
    return ":".join(f"{b:02X}" for b in digest)


def parse_fingerprint(text: str) -> bytes:
    """The 32 bytes of a SHA-256 fingerprint written with or without colons."""
    cleaned = text.strip().replace(":", "").replace(" ", "")
    if cleaned.lower().startswith("sha256"):
        cleaned = cleaned[6:].lstrip("=")
    try:
        digest = bytes.fromhex(cleaned)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ValidationError(
            "the fingerprint must be a SHA-256 digest (64 hex digits)", field="fingerprint"
        )
    return digest


def _unverified_context() -> ssl.SSLContext:
    # Only to read the certificate the admin is asked to confirm: nothing
    # is sent over this connection.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def probe_fingerprint(url: str, timeout: float = CONNECT_TIMEOUT) -> str:  # noqa: ASYNC109
    """The SHA-256 fingerprint of the certificate an https pool presents."""
    base = normalize_url(url)
    parts = urlsplit(base)
    if parts.scheme != "https":
        raise ValidationError("only https pools have a certificate to check", field="url")
    host = parts.hostname or ""
    port = parts.port or 443
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=_unverified_context(), server_hostname=host or None
            ),
            timeout,
        )
    except UnicodeError:
        # A host name IDNA cannot encode (a label over 63 characters) raised
        # this from the resolver and answered 500 (found by the API fuzz).
        raise ValidationError("the pool address is not a valid host name", field="url") from None
    except (TimeoutError, OSError, ssl.SSLError) as exc:
        raise XapiConnectionError(
            f"cannot reach {base}: {exc or 'timed out'}",
            hint="check the address and that port 443 of the pool master is reachable",
        ) from None
    try:
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        raise XapiConnectionError(f"{base} presented no certificate")
    return format_fingerprint(hashlib.sha256(der).digest())


def enable_tcp_keepalive(sock: socket.socket | None, idle: int = KEEPALIVE_IDLE) -> None:
    """Probe an idle connection every ``idle`` seconds.

    A transfer can sit idle while the other side of a backup catches up
    (a slow disk, a merge); probes keep NAT and firewall state alive and
    detect a dead peer instead of waiting forever.
    """
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)


class _KeepAliveConnector(aiohttp.TCPConnector):
    """A connector whose sockets have TCP keep-alive probes on."""

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, proto = await super()._wrap_create_connection(*args, **kwargs)
        enable_tcp_keepalive(transport.get_extra_info("socket"))
        return transport, proto


async def _read_capped(stream: aiohttp.StreamReader, cap: int) -> bytes:
    """The whole body, or its first ``cap`` bytes when it is longer.

    ``StreamReader.read(n)`` returns what has arrived so far, not n bytes: a
    large answer split over several segments must be read to the end.
    """
    parts: list[bytes] = []
    size = 0
    async for piece in stream.iter_any():
        parts.append(piece)
        size += len(piece)
        if size >= cap:
            break
    return b"".join(parts)[:cap]


class XapiClient:
    """One authenticated connection to a pool master.

    ``call`` logs in on first use and logs in again, once, when the pool
    says the session is no longer valid (expired, logged out elsewhere, pool
    restarted). The password and the session reference are never logged and
    never part of ``repr``.
    """

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        fingerprint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        originator: str = "xenkeep",
    ) -> None:
        self.url = normalize_url(url)
        self.username = username
        self._password = password
        self.is_tls = self.url.startswith("https://")
        self.fingerprint = fingerprint
        self._ssl: aiohttp.Fingerprint | bool
        if self.is_tls:
            if not fingerprint:
                raise ValidationError(
                    "an https pool needs its confirmed certificate fingerprint",
                    field="fingerprint",
                )
            self._ssl = aiohttp.Fingerprint(parse_fingerprint(fingerprint))
        else:
            self._ssl = False
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.originator = originator
        self._http: aiohttp.ClientSession | None = None
        self._session_ref: str | None = None
        self._login_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.logins = 0

    def __repr__(self) -> str:
        return f"XapiClient({self.url!r}, user={self.username!r})"

    # -- plumbing ----------------------------------------------------------
    @property
    def http(self) -> aiohttp.ClientSession:
        """The HTTP session every call and transfer of this pool goes through."""
        if self._http is None or self._http.closed:
            connector = _KeepAliveConnector(ssl=self._ssl, limit=32, enable_cleanup_closed=True)
            self._http = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout),
                headers={"User-Agent": f"{self.originator} (XenKeep)"},
            )
        return self._http

    def endpoint(self, path: str) -> str:
        """An absolute URL on the pool master."""
        return self.url + path

    def translate(self, exc: BaseException, what: str) -> XapiConnectionError:
        """A connection-level exception as the error the daemon reports."""
        if isinstance(exc, aiohttp.ServerFingerprintMismatch):
            return FingerprintMismatchError(
                format_fingerprint(exc.expected), format_fingerprint(exc.got)
            )
        if isinstance(exc, asyncio.TimeoutError):
            return XapiConnectionError(f"{what}: {self.url} did not answer in time")
        detail = str(exc) or type(exc).__name__
        return XapiConnectionError(f"{what}: cannot talk to {self.url}: {detail}")

    async def _rpc(self, method: str, params: list[Any], timeout: float | None) -> Any:  # noqa: ASYNC109
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": next(self._ids)}
        limit = self.timeout if timeout is None else timeout
        try:
            async with self.http.post(
                self.endpoint("/jsonrpc"),
                data=json.dumps(body),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=limit, connect=self.connect_timeout),
                # A redirect could send the session (or, for 307/308, the
                # password) to another address, perhaps over plain http.
                allow_redirects=False,
            ) as resp:
                raw = await _read_capped(resp.content, MAX_ANSWER_BYTES + 1)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            raise self.translate(exc, method) from None
        if status != 200:
            raise XapiConnectionError(f"{method}: {self.url} answered HTTP {status}")
        if len(raw) > MAX_ANSWER_BYTES:
            raise XapiConnectionError(f"{method}: the answer is larger than we accept")
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise XapiConnectionError(f"{method}: {self.url} did not answer JSON-RPC") from None
        if not isinstance(answer, dict):
            raise XapiConnectionError(f"{method}: malformed JSON-RPC answer")
        error = answer.get("error")
        if error:
            if isinstance(error, dict):  # JSON-RPC 2.0
                description = [error.get("message", "INTERNAL_ERROR"), *(error.get("data") or [])]
            elif isinstance(error, list):  # JSON-RPC 1.0
                description = error
            else:
                description = ["INTERNAL_ERROR", str(error)]
            raise failure_from(description, method)
        return answer.get("result")

    # -- sessions ----------------------------------------------------------
    async def login(self) -> None:
        """Open a session (the pool checks the user name and password)."""
        ref = await self._rpc(
            "session.login_with_password",
            [self.username, self._password, API_VERSION, self.originator],
            None,
        )
        if not isinstance(ref, str) or not ref:
            raise XapiConnectionError("session.login_with_password returned no session")
        self._session_ref = ref
        self.logins += 1

    async def session_ref(self) -> str:
        """The current session, logging in if there is none."""
        async with self._login_lock:
            if self._session_ref is None:
                await self.login()
            assert self._session_ref is not None
            return self._session_ref

    async def renew_session(self, stale: str) -> str:
        """Replace a session the pool no longer knows (once for all callers)."""
        async with self._login_lock:
            if self._session_ref in (None, stale):
                self._session_ref = None
                log.info("session on %s is no longer valid; logging in again", self.url)
                await self.login()
            assert self._session_ref is not None
            return self._session_ref

    @property
    def logged_in(self) -> bool:
        """Whether a session is open (as far as this client knows)."""
        return self._session_ref is not None

    async def logout(self) -> None:
        """Close the session on the pool; errors are ignored (it may be gone)."""
        async with self._login_lock:
            ref, self._session_ref = self._session_ref, None
        if ref is None:
            return
        try:
            await self._rpc("session.logout", [ref], min(self.timeout, 10.0))
        except (XapiFailure, XapiConnectionError) as exc:
            log.debug("logout from %s: %s", self.url, exc.message)

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Call ``method(session, *args)`` and return its value.

        A ``SESSION_INVALID`` answer triggers one new login and one retry;
        a second one is raised.
        """
        ref = await self.session_ref()
        try:
            return await self._rpc(method, [ref, *args], timeout)
        except SessionInvalidError:
            ref = await self.renew_session(ref)
            return await self._rpc(method, [ref, *args], timeout)

    async def close(self) -> None:
        """Log out and release the connections."""
        try:
            await self.logout()
        finally:
            if self._http is not None:
                await self._http.close()
                self._http = None

    async def __aenter__(self) -> XapiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
