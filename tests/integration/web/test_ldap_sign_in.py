"""Signing in with LDAP through the daemon's real HTTPS routes, against a
real OpenLDAP (tests/support/slapd.py): the sign-in form with
``provider=<slug>``, every refusal (clear, audited, no account made), group
sync through a mapping, throttling, testing from the admin page and the
API, and secrets never shown back nor logged."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest

from tests.support.slapd import BASE_DN, PASSWORDS, SERVICE_PASSWORD, RunningSlapd, ssha
from tests.support.web import Browser, complete_setup
from xenkeep.config import Settings
from xenkeep.store import open_database

SLUG = "corp"
NAME = "Corp Directory"


async def add_provider(browser: Browser, slapd: RunningSlapd, **overrides: Any) -> dict[str, Any]:
    """The LDAP provider, added and enabled through the API by the administrator."""
    body = {"kind": "ldap", "name": NAME, "slug": SLUG, "enabled": True}
    body |= slapd.provider_values() | overrides
    status, provider = await browser.api("POST", "/api/v1/auth/providers", body)
    assert status == 201, provider
    return dict(provider)


async def update_provider(
    browser: Browser, slapd: RunningSlapd, provider_id: int, **overrides: Any
) -> None:
    body = {"name": NAME, "enabled": True} | slapd.provider_values() | overrides
    status, answer = await browser.api("PUT", f"/api/v1/auth/providers/{provider_id}", body)
    assert status == 200, answer


@pytest.fixture
async def admin(browser: Browser, settings: Settings) -> Browser:
    """The administrator's browser after setup (named so no LDAP person is)."""
    await complete_setup(browser, settings, username="admin")
    return browser


async def sign_in(
    browser: Browser, username: str, password: str, *, provider: str = SLUG
) -> tuple[int, str, Any]:
    """A person's sign-in on /login choosing ``provider``, in a browser of their own."""
    await browser.get("/login")
    return await browser.post_form(
        "/login",
        {"provider": provider, "username": username, "password": password, "next": "/backup"},
    )


async def accounts(settings: Settings) -> list[dict[str, Any]]:
    """Accounts the provider brought."""
    db = await open_database(settings.database_path)
    try:
        rows = await db.fetchall(
            "SELECT username, display_name, email, role, source, external_id FROM users "
            "WHERE provider_id IS NOT NULL ORDER BY id"
        )
    finally:
        await db.close()
    return [dict(r) for r in rows]


async def audit(browser: Browser) -> list[dict[str, Any]]:
    status, body = await browser.api("GET", "/api/v1/audit?limit=500")
    assert status == 200
    return list(body["entries"])


@pytest.fixture
async def person(admin: Browser) -> Any:
    """A second browser on the same daemon, for the person signing in."""
    other = Browser(admin.server)
    yield other
    await other.close()


async def test_sign_in_through_the_login_form(
    admin: Browser, person: Browser, slapd: RunningSlapd, settings: Settings
) -> None:
    await add_provider(admin, slapd)
    status, html, _ = await person.get("/login")
    assert status == 200 and f'<option value="{SLUG}"' in html and NAME in html
    status, _, resp = await sign_in(person, "alice", PASSWORDS["alice"])
    assert status == 303 and resp.headers["Location"] == "/backup"
    assert resp.cookies["xk_session"]["samesite"] == "Strict"
    status, session = await person.api("GET", "/api/v1/session")
    assert status == 200
    user = session["user"]
    assert (user["username"], user["display_name"], user["role"], user["source"]) == (
        "alice",
        "Alice Archer",
        "user",
        "ldap",
    )
    # A second sign-in finds the same account (by its entryUUID).
    again = Browser(admin.server)
    try:
        status, _, _ = await sign_in(again, "Alice", PASSWORDS["alice"])
        assert status == 303
    finally:
        await again.close()
    made = await accounts(settings)
    assert len(made) == 1 and made[0]["email"] == "alice@xenkeep.test"
    events = [e["event"] for e in await audit(admin)]
    assert events.count("provider_sign_in") == 2 and events.count("user_created") == 1


async def test_a_local_account_of_the_same_name_stays_apart(
    browser: Browser, settings: Settings, slapd: RunningSlapd
) -> None:
    await complete_setup(browser, settings, username="alice")  # the local admin
    await add_provider(browser, slapd)
    person = Browser(browser.server)
    try:
        status, _, _ = await sign_in(person, "alice", PASSWORDS["alice"])
        assert status == 303
        _, session = await person.api("GET", "/api/v1/session")
        assert session["user"]["username"] == f"alice@{SLUG}"
        assert session["user"]["role"] == "user"
    finally:
        await person.close()


@pytest.mark.parametrize(
    ("username", "password", "words"),
    [
        ("alice", "not her password", "wrong user name or password"),
        ("nobody", "whatever it is", "wrong user name or password"),
        ("*)(uid=*", PASSWORDS["alice"], "wrong user name or password"),
        ("*", PASSWORDS["bob"], "wrong user name or password"),
        ("carol", PASSWORDS["carol"], f"this account is disabled in {NAME}"),
    ],
)
async def test_refusals_are_clear_audited_and_make_no_account(
    admin: Browser,
    person: Browser,
    slapd: RunningSlapd,
    settings: Settings,
    username: str,
    password: str,
    words: str,
) -> None:
    await add_provider(admin, slapd)
    status, html, _ = await sign_in(person, username, password)
    assert status == 401 and words in html
    assert f'<option value="{SLUG}" selected>' in html  # the choice stays for a retry
    status, _ = await person.api("GET", "/api/v1/session")
    assert status == 401
    assert await accounts(settings) == []
    failed = [e for e in await audit(admin) if e["event"] == "provider_sign_in_failed"]
    assert failed and words in json.dumps(failed)


async def test_server_down_and_wrong_ca_say_so(
    admin: Browser, person: Browser, slapd: RunningSlapd, settings: Settings
) -> None:
    provider = await add_provider(admin, slapd)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    await update_provider(admin, slapd, provider["id"], servers=f"ldap://127.0.0.1:{closed}")
    status, html, _ = await sign_in(person, "alice", PASSWORDS["alice"])
    assert status == 503 and f"cannot reach ldap://127.0.0.1:{closed}" in html
    await update_provider(admin, slapd, provider["id"], ca_pem=slapd.wrong_ca_pem)
    status, html, _ = await sign_in(person, "alice", PASSWORDS["alice"])
    assert status == 503 and "StartTLS with" in html and "not signed by the CA" in html
    assert await accounts(settings) == []
    # Refusals from one address within minutes are one audit row with a count.
    whys = [e for e in await audit(admin) if e["event"] == "provider_sign_in_failed"]
    assert sum(int(e.get("count", 1)) for e in whys) == 2


async def test_a_provider_that_is_not_enabled_is_not_offered(
    admin: Browser, person: Browser, slapd: RunningSlapd
) -> None:
    await add_provider(admin, slapd, enabled=False)
    status, html, _ = await person.get("/login")
    assert f'value="{SLUG}"' not in html
    status, html, _ = await sign_in(person, "alice", PASSWORDS["alice"])
    assert status == 404 and "not offered here" in html


async def test_wrong_passwords_are_throttled_like_local_ones(
    admin: Browser, person: Browser, slapd: RunningSlapd
) -> None:
    await add_provider(admin, slapd)
    statuses = []
    for _ in range(6):
        status, _, _ = await sign_in(person, "bob", "a wrong guess")
        statuses.append(status)
    assert statuses == [401] * 5 + [429]
    status, _, _ = await sign_in(person, "bob", PASSWORDS["bob"])
    assert status == 429  # the right password waits too: no oracle
    assert "sign_in_throttled" in [e["event"] for e in await audit(admin)]


async def test_group_sync_through_a_mapping(
    admin: Browser, person: Browser, slapd: RunningSlapd, settings: Settings
) -> None:
    # Entries of this test only: the session's server is shared.
    gina = f"uid=gina,ou=people,{BASE_DN}"
    group = f"cn=xk-sync-test,ou=groups,{BASE_DN}"
    await asyncio.to_thread(
        slapd.modify,
        f"dn: {gina}\nobjectClass: inetOrgPerson\nuid: gina\ncn: Gina Gray\nsn: Gray\n"
        f"userPassword: {ssha('gina-Directory-pw8')}\n\n"
        f"dn: {group}\nobjectClass: groupOfNames\ncn: xk-sync-test\nmember: {gina}\n",
        add=True,
    )
    provider = await add_provider(admin, slapd)
    db = await open_database(settings.database_path)
    try:
        team = await db.insert(
            "INSERT INTO groups (name, created_at) VALUES ('Backup team', 0)", ()
        )
        staff = await db.insert("INSERT INTO groups (name, created_at) VALUES ('Staff', 0)", ())
    finally:
        await db.close()
    await admin.get(f"/admin/providers/{provider['id']}")
    status, _, _ = await admin.post_form(
        f"/admin/providers/{provider['id']}/mappings",
        {"mappings": "xk-sync-test = Backup team\nstaff = Staff"},
    )
    assert status == 303

    async def memberships() -> set[tuple[int, str]]:
        db = await open_database(settings.database_path)
        try:
            rows = await db.fetchall(
                "SELECT m.group_id, m.source FROM group_members m JOIN users u "
                "ON u.id = m.user_id WHERE u.username = 'gina'"
            )
        finally:
            await db.close()
        return {(int(r["group_id"]), str(r["source"])) for r in rows}

    status, _, _ = await sign_in(person, "gina", "gina-Directory-pw8")
    assert status == 303
    assert await memberships() == {(team, "provider")}
    # Removed from the group at the directory: gone at the next sign-in.
    await asyncio.to_thread(
        slapd.modify, f"dn: {group}\nchangetype: modify\nreplace: member\nmember: {BASE_DN}\n"
    )
    again = Browser(admin.server)
    try:
        status, _, _ = await sign_in(again, "gina", "gina-Directory-pw8")
        assert status == 303
    finally:
        await again.close()
    assert await memberships() == set()
    assert staff  # mapped, but gina was never in staff


async def test_testing_from_the_admin_page_and_the_api(
    admin: Browser, slapd: RunningSlapd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = await add_provider(admin, slapd)
    path = f"/api/v1/auth/providers/{provider['id']}/test"
    status, result = await admin.api(
        "POST", path, {"username": "alice", "password": PASSWORDS["alice"]}
    )
    assert status == 200 and result["ok"], result["steps"]
    assert result["identity"]["groups"] == ["backup-admins", "staff"]
    assert result["identity"]["display_name"] == "Alice Archer"
    status, result = await admin.api("POST", path, {"username": "carol"})
    assert status == 200 and not result["ok"]
    assert {"label": "Account enabled", "ok": False} | {
        "detail": "disabled: it does not match (!(pwdAccountLockedTime=*))"
    } in result["steps"]
    page = f"/admin/providers/{provider['id']}"
    await admin.get(page)
    status, html, _ = await admin.post_form(f"{page}/test", {"username": "alice", "password": ""})
    assert status == 200 and 'id="provider-check" data-ok="true"' in html
    assert "backup-admins, staff" in html and "uid=alice,ou=people" in html
    tested = [e for e in await audit(admin) if e["event"] == "provider_tested"]
    assert len(tested) == 3
    # Neither the service account's password nor a person's reaches a log.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SERVICE_PASSWORD not in logged and PASSWORDS["alice"] not in logged


async def test_secrets_are_never_shown_back(admin: Browser, slapd: RunningSlapd) -> None:
    provider = await add_provider(admin, slapd)
    assert provider["config"]["bind_password"] is True
    status, listed = await admin.api("GET", "/api/v1/auth/providers")
    assert status == 200
    status, html, _ = await admin.get(f"/admin/providers/{provider['id']}")
    assert status == 200 and "A value is stored" in html
    entries = await audit(admin)
    for shown in (json.dumps(provider), json.dumps(listed), html, json.dumps(entries)):
        assert SERVICE_PASSWORD not in shown
    # Saved again with the password left empty: the stored one is kept.
    await update_provider(admin, slapd, provider["id"], bind_password="")
    status, result = await admin.api("POST", f"/api/v1/auth/providers/{provider['id']}/test", {})
    assert result["ok"], result["steps"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"servers": "http://127.0.0.1:389"}, "servers"),
        ({"servers": "ldap://host\r\nX-Injected: 1"}, "servers"),
        ({"base_dn": "x" * 600}, "base_dn"),
        ({"user_filter": "(uid=alice)"}, "user_filter"),
        ({"ca_pem": "not a certificate"}, "ca_pem"),
        ({"security": "none", "ca_pem": ""}, "allow_insecure"),
        ({"bind_password": ""}, "bind_password"),
        ({"timeout": "600"}, "timeout"),
    ],
)
async def test_bad_settings_are_refused_and_nothing_is_saved(
    admin: Browser, slapd: RunningSlapd, overrides: dict[str, str], field: str
) -> None:
    body = {"kind": "ldap", "name": NAME, "slug": SLUG} | slapd.provider_values() | overrides
    status, answer = await admin.api("POST", "/api/v1/auth/providers", body)
    assert status == 400 and answer["error"]["field"] == field, answer
    status, listed = await admin.api("GET", "/api/v1/auth/providers")
    assert listed["providers"] == []


async def test_the_admin_form_names_the_bad_field(admin: Browser, slapd: RunningSlapd) -> None:
    status, html, _ = await admin.get("/admin/providers/new?kind=ldap")
    assert status == 200 and 'name="servers"' in html and 'name="bind_password"' in html
    form = {"kind": "ldap", "name": NAME, "slug": SLUG} | slapd.provider_values()
    form["user_filter"] = "(&(uid={username})"
    status, html, _ = await admin.post_form("/admin/providers", form)
    assert status == 400 and "User filter: not an LDAP filter" in html
    assert SERVICE_PASSWORD not in html  # a secret typed is not sent back either
