"""Signing in through the daemon's SAML provider against the real IdP, over
the daemon's real HTTP routes: what the SAML tests share."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.idp_saml import USER, IdpSession, PostedAnswer, SamlIdp
from tests.support.web import Browser, complete_setup
from xenkeep.config import Settings
from xenkeep.store import open_database
from xenkeep.web.server import RunningServer

NAME = "Corp SSO"
#: The local administrator (not a name the IdP's people have).
ADMIN = "root-admin"
SLUG = "corp-sso"
_ERROR = re.compile(r'id="form-error"[^>]*>(.*?)</', re.S)


@dataclass
class Saml:
    """A daemon with a SAML provider the IdP knows, and its administrator."""

    admin: Browser
    settings: Settings
    server: RunningServer
    idp: SamlIdp
    provider: dict[str, Any]

    @property
    def slug(self) -> str:
        return str(self.provider["slug"])

    @property
    def entity_id(self) -> str:
        return f"{self.server.url.rstrip('/')}/auth/{self.slug}/metadata"

    async def sp_metadata(self) -> str:
        status, text, _ = await self.admin.get(f"/auth/{self.slug}/metadata")
        assert status == 200, text
        return text

    async def register(self, **options: Any) -> None:
        """(Re-)register this SP at the IdP from the metadata the daemon serves."""
        self.idp.register_sp(await self.sp_metadata(), **options)

    async def change(self, **values: Any) -> dict[str, Any]:
        """Change the provider's settings through the API."""
        body = {**self.provider["config"], "name": NAME, "enabled": True, **values}
        status, data = await self.admin.api(
            "PUT", f"/api/v1/auth/providers/{self.provider['id']}", body
        )
        assert status == 200, data
        self.provider = data
        return data

    async def accounts(self) -> list[dict[str, Any]]:
        """The accounts this provider brought, straight from the database."""
        db = await open_database(self.settings.database_path)
        try:
            rows = await db.fetchall(
                "SELECT id, username, display_name, email, role, external_id, disabled "
                "FROM users WHERE provider_id = ? ORDER BY id",
                (self.provider["id"],),
            )
            return [dict(r) for r in rows]
        finally:
            await db.close()

    async def sql(self, statement: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        db = await open_database(self.settings.database_path)
        try:
            if statement.lstrip().upper().startswith("SELECT"):
                return [dict(r) for r in await db.fetchall(statement, args)]
            await db.execute(statement, args)
            return []
        finally:
            await db.close()

    async def failures(self) -> list[dict[str, Any]]:
        """The audit log's failed sign-ins through providers, newest first."""
        status, body = await self.admin.api("GET", "/api/v1/audit?limit=500")
        assert status == 200, body
        return [e for e in body["entries"] if e["event"] == "provider_sign_in_failed"]


async def create_provider(admin: Browser, **values: Any) -> dict[str, Any]:
    body = {"kind": "saml", "name": NAME, "slug": SLUG, "enabled": True, **values}
    status, data = await admin.api("POST", "/api/v1/auth/providers", body)
    assert status == 201, data
    return dict(data)


@pytest.fixture
async def saml(
    browser: Browser, settings: Settings, daemon: RunningServer, saml_idp: SamlIdp
) -> AsyncIterator[Saml]:
    """An administrator signed in, a SAML provider made from the IdP's
    metadata (pasted), enabled, and registered at the IdP."""
    await complete_setup(browser, settings, username=ADMIN)
    setup = Saml(
        browser,
        settings,
        daemon,
        saml_idp,
        await create_provider(browser, idp_metadata_xml=saml_idp.metadata_xml()),
    )
    await setup.register()
    yield setup


@pytest.fixture
async def person(daemon: RunningServer) -> AsyncIterator[Browser]:
    """Someone else's browser on the daemon (not signed in)."""
    client = Browser(daemon)
    yield client
    await client.close()


async def begin(person: Browser, slug: str = SLUG, next_path: str = "/") -> str:
    """Press "Sign in with ...": where the daemon sends the browser."""
    status, text, resp = await person.get(f"/auth/{slug}/start?next={next_path}")
    assert status == 303, text
    return str(resp.headers["Location"])


async def answer(
    person: Browser, idp_session: IdpSession, username: str = "alice", slug: str = SLUG
) -> PostedAnswer:
    """A real answer of the IdP to a sign-in started on the daemon (not posted yet)."""
    return await idp_session.sign_in(await begin(person, slug), username, USER[username].password)


async def post(
    person: Browser, posted: PostedAnswer | dict[str, str], slug: str = SLUG
) -> tuple[int, str]:
    """The browser posts an answer to the daemon's callback: status and the
    page's text (HTML entities read)."""
    if isinstance(posted, PostedAnswer):
        assert urlsplit(posted.action).path == f"/auth/{slug}/callback", posted.action
        fields = posted.fields
    else:
        fields = posted
    status, text, _ = await person.post_form(f"/auth/{slug}/callback", fields, csrf=False)
    return status, html.unescape(text)


def shown_error(page: str) -> str:
    found = _ERROR.search(page)
    assert found, page[:3000]
    return " ".join(found.group(1).split())


async def signed_in_as(person: Browser) -> str | None:
    status, body = await person.api("GET", "/api/v1/session")
    return str(body["user"]["username"]) if status == 200 else None


async def refused_in_another_browser(saml: Saml, posted: PostedAnswer, words: str) -> None:
    """``posted`` again, from a browser of its own: refused with ``words``,
    and that browser not signed in."""
    other = Browser(saml.server)
    try:
        status, page = await post(other, posted)
        assert status == 401, page[:2000]
        assert words in shown_error(page)
        assert await signed_in_as(other) is None
    finally:
        await other.close()
