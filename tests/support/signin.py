"""A person signing in through an identity provider, over real HTTPS, without
a browser: the daemon's start route, the provider's own login pages (their
forms read and submitted as a browser would) and back to the daemon's
callback, with one cookie jar for all of it.

The tests drive each step, so they can change what goes back (another
state, a replayed callback) before the daemon sees it.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp

#: A sign-in never takes more hops than this (login, consent, back).
MAX_HOPS = 20
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


@dataclass(frozen=True, slots=True)
class Form:
    """A form of a page: where it goes and what it sends as it is."""

    form_id: str
    action: str
    method: str
    fields: dict[str, str]
    buttons: list[tuple[str, str]]


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(
                a.get("id", ""), a.get("action", ""), a.get("method", "get"), {}, []
            )
            self.forms.append(self._current)
        elif self._current is not None and tag in ("input", "button"):
            kind = a.get("type", "text" if tag == "input" else "submit")
            if kind == "submit":
                if a.get("name"):
                    self._current.buttons.append((a["name"], a.get("value", "")))
            elif a.get("name"):
                self._current.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def forms_of(html: str) -> list[Form]:
    """The forms of a page."""
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def with_query(url: str, **changes: str) -> str:
    """``url`` with some query parameters replaced (or added)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


_FORM_ERROR = re.compile(r'id="form-error">(.*?)</div>', re.S)


def form_error(page: str) -> str:
    """The error a page of the daemon shows (unescaped), '' when none."""
    found = _FORM_ERROR.search(page)
    return unescape(found.group(1)).strip() if found else ""


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


class SignInAgent:
    """One person's browser session across the daemon and an identity provider."""

    def __init__(self, daemon_url: str, trusted: list[Path]) -> None:
        self.daemon_url = daemon_url.rstrip("/")
        context = ssl.create_default_context(cafile=str(trusted[0]))
        for extra in trusted[1:]:
            context.load_verify_locations(cafile=str(extra))
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            # Connections closed at once (see xenkeep.auth.providers.http): a
            # TLS close left pending when the test's loop ends would leak.
            connector=aiohttp.TCPConnector(
                ssl=context, force_close=True, enable_cleanup_closed=True
            ),
        )
        #: Every URL visited, in order (to look at what the IdP was sent).
        self.visited: list[str] = []

    async def close(self) -> None:
        await self.session.close()

    async def get(self, url: str) -> tuple[int, str, dict[str, str]]:
        """One GET, redirects not followed: status, body, headers."""
        self.visited.append(url)
        async with self.session.get(url, allow_redirects=False) as resp:
            return resp.status, await resp.text(), dict(resp.headers)

    async def start(self, slug: str, next_path: str | None = None) -> str:
        """Press "Sign in with ...": the identity provider's URL it sends to."""
        path = f"/auth/{slug}/start" + (
            "" if next_path is None else "?" + urlencode({"next": next_path})
        )
        status, body, headers = await self.get(self.daemon_url + path)
        assert status == 303, (status, body[:2000])
        return headers["Location"]

    async def at_idp(
        self,
        url: str,
        fill: dict[str, str],
        *,
        form_ids: tuple[str, ...] = (),
        button: tuple[str, str] | None = None,
    ) -> str:
        """Follow the identity provider's pages from ``url``, filling its forms
        with ``fill`` (the login form, an authorize page) and pressing
        ``button`` if given, until it sends the browser back to the daemon:
        that callback URL, not yet visited."""
        for _ in range(MAX_HOPS):
            if url.startswith(self.daemon_url):
                return url
            status, body, headers = await self.get(url)
            if status in (301, 302, 303, 307, 308):
                url = urljoin(url, headers["Location"])
                continue
            forms = [f for f in forms_of(body) if not form_ids or f.form_id in form_ids]
            assert status == 200 and forms, (status, url, body[:2000])
            form = forms[0]
            data = {**form.fields, **{k: v for k, v in fill.items() if k in form.fields}}
            if button is not None and button in form.buttons:
                data[button[0]] = button[1]
            target = urljoin(url, unescape(form.action)) or url
            self.visited.append(target)
            async with self.session.post(target, data=data, allow_redirects=False) as resp:
                text = await resp.text()
                if resp.status in (301, 302, 303, 307, 308):
                    url = urljoin(target, resp.headers["Location"])
                    continue
                raise AssertionError(f"the identity provider answered {resp.status}: {text[:2000]}")
        raise AssertionError(f"no way back to the daemon after {MAX_HOPS} pages")

    async def callback(self, url: str) -> tuple[int, str]:
        """Bring the identity provider's answer to the daemon: status and page."""
        status, body, _ = await self.get(url)
        return status, body

    async def session_user(self) -> dict[str, Any] | None:
        """Who the daemon says this browser is signed in as (None: nobody)."""
        async with self.session.get(self.daemon_url + "/api/v1/session") as resp:
            if resp.status == 401:
                return None
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body
