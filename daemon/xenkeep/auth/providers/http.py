"""Talking to an identity provider over HTTPS.

Every call has a deadline, reads at most :data:`MAX_ANSWER` bytes, follows
no redirect (a token request's credentials must go only where they were
configured to go) and verifies TLS: against the system's CAs, or against the
administrator's pinned CA certificates only. What goes wrong becomes a
:class:`ProviderUnavailableError` that says what: not reachable, certificate
not trusted, no answer in time, an error status, not JSON. Request bodies
and headers carry secrets and are never logged.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from xenkeep import __version__
from xenkeep.auth.errors import ProviderUnavailableError

#: Largest answer read from an identity provider (discovery, keys, tokens,
#: user records are a few KiB).
MAX_ANSWER = 1024 * 1024
#: How long one call may take in all, and to connect.
TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=10)
USER_AGENT = f"XenKeep/{__version__}"


@dataclass(frozen=True, slots=True)
class Answer:
    """An identity provider's answer, read whole (bounded)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self, what: str, name: str) -> Any:
        """The body as JSON; ProviderUnavailableError when it is not."""
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ProviderUnavailableError(
                f"{name}'s {what} is not JSON (HTTP {self.status} from {self.url})"
            ) from None


def where(url: str) -> str:
    """``host:port`` of a URL, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 443}"


class IdpHttp:
    """HTTPS calls to one identity provider, named ``name`` in every message."""

    def __init__(self, name: str, ca_pem: str = "", *, ca_file: str = "") -> None:
        self.name = name
        self._ca_pem = ca_pem
        self._ca_file = ca_file
        self._ssl: ssl.SSLContext | None = None
        self._lock = asyncio.Lock()

    def _context(self) -> ssl.SSLContext:
        # Blocking: the system's CAs are read from files.
        if self._ca_pem or self._ca_file:
            # Pinned: these certificates only, not the system's as well.
            return ssl.create_default_context(
                cadata=self._ca_pem or None, cafile=self._ca_file or None
            )
        return ssl.create_default_context()

    async def ssl_context(self) -> ssl.SSLContext:
        """The TLS context, built once (in a thread)."""
        async with self._lock:
            if self._ssl is None:
                try:
                    self._ssl = await asyncio.to_thread(self._context)
                except (OSError, ssl.SSLError) as exc:
                    raise ProviderUnavailableError(
                        f"the CA certificates trusted for {self.name} cannot be used ({exc})"
                    ) from None
            return self._ssl

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Answer:
        """One call; any answer with a status (errors too), or
        ProviderUnavailableError when none came."""
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        # One connection per call, closed at once: an identity provider is
        # asked a few times per sign-in, and a TLS peer that never answers
        # the closing handshake must not leave the connection open behind.
        connector = aiohttp.TCPConnector(
            ssl=await self.ssl_context(), force_close=True, enable_cleanup_closed=True
        )
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session,
                session.request(
                    method, url, headers=sent, data=data, allow_redirects=False
                ) as resp,
            ):
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_ANSWER:
                        raise ProviderUnavailableError(
                            f"{self.name}'s {what} is larger than {MAX_ANSWER // 1024} KiB"
                        )
                answer = Answer(resp.status, dict(resp.headers), bytes(body), url)
        except aiohttp.ClientSSLError as exc:
            raise ProviderUnavailableError(
                f"the TLS certificate of {self.name} at {where(url)} is not trusted "
                f"({_reason(exc)})",
                hint="if it is signed by a private CA, paste that CA's certificate "
                "into the provider's trusted CA setting",
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise ProviderUnavailableError(
                f"cannot reach {self.name} at {where(url)} ({_reason(exc)})",
                hint="check the address and that the identity provider is up",
            ) from None
        except TimeoutError:
            raise ProviderUnavailableError(
                f"{self.name} at {where(url)} did not answer within {TIMEOUT.total:.0f} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailableError(
                f"{self.name} at {where(url)} broke off its answer ({type(exc).__name__})"
            ) from None
        if 300 <= answer.status < 400:
            location = answer.headers.get("Location", "")[:200]
            raise ProviderUnavailableError(
                f"{self.name}'s {what} at {url} answered with a redirect to {location!r}, "
                "which is not followed",
                hint="configure the address it redirects to",
            )
        return answer

    async def get_json(
        self, url: str, *, what: str, headers: Mapping[str, str] | None = None
    ) -> Any:
        """GET a JSON document that must answer 200."""
        answer = await self.request("GET", url, what=what, headers=headers)
        if answer.status != 200:
            raise ProviderUnavailableError(
                f"{self.name}'s {what} at {url} answered HTTP {answer.status}"
                + _error_words(answer)
            )
        return answer.json(what, self.name)


def _reason(exc: aiohttp.ClientConnectorError) -> str:
    """What went wrong connecting, in the words of the OS or of OpenSSL."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error: Exception = exc.certificate_error
    else:
        error = exc.os_error
    if isinstance(error, ssl.SSLCertVerificationError):
        return str(error.verify_message or error.reason)
    if isinstance(error, ssl.SSLError):
        return str(error.reason or error)
    if isinstance(error, OSError) and error.errno and error.errno > 0:
        # asyncio's own words name the address again; the OS's say what happened.
        return os.strerror(error.errno)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


def _error_words(answer: Answer) -> str:
    """An error answer's own words (an OAuth ``error``, GitHub's
    ``message``), bounded and printable; '' when it has none."""
    try:
        body = json.loads(answer.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
    if not isinstance(body, dict):
        return ""
    words = [
        str(body[k])
        for k in ("error", "error_description", "message")
        if isinstance(body.get(k), str)
    ]
    shown = printable(": ".join(words), 200)
    return f" ({shown})" if shown else ""


def printable(text: str, limit: int) -> str:
    """``text`` from an identity provider, safe to show: printable, bounded."""
    return "".join(c for c in text if c.isprintable())[:limit].strip()
