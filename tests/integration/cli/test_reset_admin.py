"""``xenkeep reset-admin`` shuts the replaced administrator out at once: their
sessions, API tokens and password stop working, and the account stays
disabled while the new administrator is made."""

from __future__ import annotations

from tests.integration.cli.conftest import Console
from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup
from xenkeep.config import Settings
from xenkeep.web import keys


async def test_the_old_administrator_is_out_right_after_reset_admin(
    console: Console, browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api("POST", "/api/v1/tokens", {"name": "script"})
    assert status == 201
    bearer = {"Authorization": f"Bearer {body['token']}"}
    tool = Browser(browser.server)
    try:
        status, _ = await tool.api("GET", "/api/v1/users", headers=bearer)
        assert status == 200

        code, _out, err = await console("reset-admin")
        assert code == 0, err

        status, _ = await tool.api("GET", "/api/v1/users", headers=bearer)
        assert status == 401
        status, _ = await browser.api("GET", "/api/v1/session")
        assert status == 401
        status, _ = await tool.api(
            "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
        )
        assert status == 401
    finally:
        await tool.close()

    auth = keys.auth(browser.server.app)
    (alice,) = await auth.list_users()
    assert alice.disabled and not await auth.list_api_tokens(alice)
    # The new administrator takes another name; alice stays disabled.
    newcomer = Browser(browser.server)
    try:
        await complete_setup(newcomer, settings, username="bob")
    finally:
        await newcomer.close()
    assert {(u.username, u.disabled) for u in await auth.list_users()} == {
        ("alice", True),
        ("bob", False),
    }
    entry = next(
        e for e in await keys.audit(browser.server.app).entries() if e["event"] == "admin_reset"
    )
    assert entry["detail"] == {"disabled": ["alice"], "api_tokens_revoked": 1}
