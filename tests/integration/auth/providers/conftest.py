"""Fixtures of the sign-in provider tests: the real identity providers
(session-scoped), an administrator of the daemon, and a person's agent."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.github_standin import github_standin  # noqa: F401 (fixture)
from tests.support.idp_oidc import google_idp, oidc_idp  # noqa: F401 (fixtures)
from tests.support.signin import SignInAgent
from tests.support.web import Browser, complete_setup
from xenkeep.config import Settings
from xenkeep.store import open_database
from xenkeep.web import keys


@pytest.fixture
async def admin(browser: Browser, settings: Settings) -> Browser:
    """The daemon's first administrator (``alice``), signed in."""
    await complete_setup(browser, settings)
    return browser


async def callback_base(admin: Browser) -> str:
    """The address identity providers send the browser back to."""
    status, body = await admin.api("GET", "/api/v1/auth/providers")
    assert status == 200, body
    return str(body["effective_url"])


async def add_provider(admin: Browser, kind: str, **values: Any) -> dict[str, Any]:
    """Create an enabled provider through the API; its JSON."""
    status, body = await admin.api(
        "POST", "/api/v1/auth/providers", {"kind": kind, "enabled": True, **values}
    )
    assert status == 201, body
    return dict(body)


async def audit_events(admin: Browser, *names: str) -> list[dict[str, Any]]:
    """The audit log's entries of these events, newest first."""
    status, body = await admin.api("GET", "/api/v1/audit")
    assert status == 200, body
    return [e for e in body["entries"] if e["event"] in names]


async def user_rows(settings: Settings) -> list[dict[str, Any]]:
    """Every account, oldest first."""
    db = await open_database(settings.database_path)
    try:
        return [dict(r) for r in await db.fetchall("SELECT * FROM users ORDER BY id")]
    finally:
        await db.close()


async def new_group(settings: Settings, name: str) -> int:
    """A XenKeep group (its pages belong to another part of the work)."""
    db = await open_database(settings.database_path)
    try:
        return await db.insert(
            "INSERT INTO groups (name, created_at) VALUES (?, ?)", (name, time.time())
        )
    finally:
        await db.close()


async def memberships(settings: Settings, user_id: int) -> list[tuple[int, str]]:
    """(group id, source) of a user's memberships."""
    db = await open_database(settings.database_path)
    try:
        rows = await db.fetchall(
            "SELECT group_id, source FROM group_members WHERE user_id = ? ORDER BY group_id",
            (user_id,),
        )
    finally:
        await db.close()
    return [(int(r["group_id"]), str(r["source"])) for r in rows]


@pytest.fixture
async def agent_factory(browser: Browser, tmp_path: Path) -> AsyncIterator[Any]:
    """Make agents (a person's browser) trusting the daemon and the given CAs."""
    made: list[SignInAgent] = []

    def make(*cas: Path) -> SignInAgent:
        agent = SignInAgent(browser.server.url, [keys.tls(browser.server.app).cert_path, *cas])
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.close()
