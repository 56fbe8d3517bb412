"""Users, groups and grants, as a super-administrator manages them over
HTTPS: temporary passwords and the forced change, disabling and deleting
(sessions and tokens end at once), the last super-administrator kept,
groups giving their grants, CSRF on grant changes, every change audited,
session fixation."""

from __future__ import annotations

from typing import Any

import pytest
from yarl import URL

from tests.support.people import signed_in
from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup
from xapisim import RunningSimulator
from xenkeep.auth.const import SESSION_COOKIE
from xenkeep.config import Settings
from xenkeep.pools.pool import Pool
from xenkeep.xapi.client import XapiClient

NEW_PASSWORD = "a brand new passphrase"


async def create(admin: Browser, **fields: Any) -> dict[str, Any]:
    status, body = await admin.api("POST", "/api/v1/users", fields)
    assert status == 201, body
    return dict(body)


async def audit_events(admin: Browser) -> list[dict[str, Any]]:
    _, body = await admin.api("GET", "/api/v1/audit?limit=200")
    return list(body["entries"])


async def bearer(b: Browser, token: str, path: str) -> int:
    async with b.session.get(b.url(path), headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


async def test_a_temporary_password_opens_nothing_but_its_change(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    made = await create(browser, username="tom", display_name="Tom", email="tom@example.org")
    temporary = made["temporary_password"]
    assert temporary and made["user"]["must_change_password"]
    tom = Browser(browser.server)
    try:
        status, body = await tom.api(
            "POST", "/api/v1/session", {"username": "tom", "password": temporary}
        )
        assert status == 200 and body["user"]["must_change_password"]
        status, body = await tom.api("GET", "/api/v1/pools/overview")
        assert status == 403 and body["error"]["code"] == "password_change_required"
        status, _, resp = await tom.get("/")
        assert status == 303 and resp.headers["Location"] == "/account/password"
        status, html, _ = await tom.get("/account/password")
        assert status == 200 and 'id="must-change"' in html
        status, body = await tom.api(
            "PUT",
            "/api/v1/account/password",
            {"old": "not it", "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        )
        assert status == 400 and body["error"]["field"] == "old"
        status, body = await tom.api(
            "PUT",
            "/api/v1/account/password",
            {"old": temporary, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        )
        assert status == 200, body
        status, body = await tom.api("GET", "/api/v1/pools/overview")
        assert status == 200 and body == {"pools": []}
    finally:
        await tom.close()
    # The temporary password is gone with the change.
    again = Browser(browser.server)
    try:
        status, _ = await again.api(
            "POST", "/api/v1/session", {"username": "tom", "password": temporary}
        )
        assert status == 401
    finally:
        await again.close()


async def test_the_sign_in_form_sends_a_temporary_password_to_its_change(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    made = await create(browser, username="tia")
    tia = Browser(browser.server)
    try:
        status, _, resp = await tia.post_form(
            "/login",
            {"username": "tia", "password": made["temporary_password"], "next": "/backup"},
        )
        assert status == 303 and resp.headers["Location"] == "/account/password"
        status, html, _ = await tia.get("/account/password")
        assert status == 200 and 'id="must-change"' in html
        status, _, resp = await tia.post_form(
            "/account/password",
            {"old": made["temporary_password"], "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        )
        assert status == 303 and resp.headers["Location"] == "/account"
        status, _, _ = await tia.get("/backup")
        assert status == 200
    finally:
        await tia.close()


async def test_disabling_ends_sessions_tokens_and_streams_at_once(
    browser: Browser, settings: Settings, admin_pool: tuple[Pool, XapiClient]
) -> None:
    pool, client = admin_pool
    made = await create(browser, username="dan", password=ADMIN_PASSWORD)
    user_id = made["user"]["id"]
    status, _ = await browser.api(
        "POST",
        "/api/v1/grants",
        {"subject": f"user:{user_id}", "object": f"pool:{pool.uuid}", "role": "viewer"},
    )
    assert status == 201
    dan = await signed_in(browser.server, "dan")
    try:
        status, body = await dan.api("POST", "/api/v1/tokens", {"name": "script"})
        token = body["token"]
        assert await bearer(dan, token, "/api/v1/pools/overview") == 200
        async with dan.session.get(dan.url("/api/v1/events")) as stream:
            assert stream.status == 200
            first = await stream.content.readline()
            assert first.startswith(b"event: overview")
            status, body = await browser.api(
                "PATCH", f"/api/v1/users/{user_id}", {"disabled": True}
            )
            assert status == 200 and body["user"]["disabled"]
            # A change in the pool makes the stream look again: it ends.
            vm = (await client.call("VM.get_by_name_label", "web-01"))[0]
            await client.call("VM.set_name_label", vm, "web-01-x")
            rest = await stream.content.read()
            assert b"web-01-x" not in rest
        status, _ = await dan.api("GET", "/api/v1/session")
        assert status == 401
        assert await bearer(dan, token, "/api/v1/pools/overview") == 401
        again = Browser(browser.server)
        try:
            status, _ = await again.api(
                "POST", "/api/v1/session", {"username": "dan", "password": ADMIN_PASSWORD}
            )
            assert status == 401
        finally:
            await again.close()
    finally:
        await dan.close()
    events = {e["event"] for e in await audit_events(browser)}
    assert "user_disabled" in events


async def test_deleting_ends_everything_and_takes_the_grants(
    browser: Browser, settings: Settings, admin_pool: tuple[Pool, XapiClient]
) -> None:
    pool, _ = admin_pool
    made = await create(browser, username="del", password=ADMIN_PASSWORD)
    user_id = made["user"]["id"]
    await browser.api(
        "POST",
        "/api/v1/grants",
        {"subject": f"user:{user_id}", "object": f"pool:{pool.uuid}", "role": "admin"},
    )
    gone = await signed_in(browser.server, "del")
    try:
        status, html, _ = await browser.get(f"/admin/users/{user_id}/delete")
        assert status == 200 and "Delete the account del?" in html and "1 grant(s)" in html
        status, _, resp = await browser.post_form(f"/admin/users/{user_id}/delete", {})
        assert status == 303 and resp.headers["Location"] == "/admin/users"
        status, _ = await gone.api("GET", "/api/v1/session")
        assert status == 401
    finally:
        await gone.close()
    _, grants = await browser.api("GET", "/api/v1/grants")
    assert grants["grants"] == []
    # A new account never inherits the old one's id (AUTOINCREMENT), nor its grants.
    again = await create(browser, username="del", password=ADMIN_PASSWORD)
    assert again["user"]["id"] > user_id


async def test_the_last_super_administrator_stays(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    _, me = await browser.api("GET", "/api/v1/session")
    my_id = me["user"]["id"]
    for change in ({"role": "user"}, {"disabled": True}):
        status, body = await browser.api("PATCH", f"/api/v1/users/{my_id}", change)
        assert status in (400, 409), body
    status, body = await browser.api("DELETE", f"/api/v1/users/{my_id}")
    assert status == 400 and "your own" in body["error"]["message"]
    second = await create(browser, username="bea", role="admin", password=ADMIN_PASSWORD)
    status, _ = await browser.api("PATCH", f"/api/v1/users/{my_id}", {"role": "user"})
    assert status == 200
    # Now bea is the last one.
    bea = await signed_in(browser.server, "bea")
    try:
        status, body = await bea.api(
            "PATCH", f"/api/v1/users/{second['user']['id']}", {"role": "support"}
        )
        assert status == 409 and body["error"]["code"] == "conflict"
    finally:
        await bea.close()


async def test_a_group_gives_its_members_its_grants(
    browser: Browser, settings: Settings, admin_pool: tuple[Pool, XapiClient]
) -> None:
    pool, _ = admin_pool
    made = await create(browser, username="gus", password=ADMIN_PASSWORD)
    status, body = await browser.api("POST", "/api/v1/groups", {"name": "ops"})
    assert status == 201
    group_id = body["group"]["id"]
    status, body = await browser.api(
        "POST", f"/api/v1/groups/{group_id}/members", {"user_id": made["user"]["id"]}
    )
    assert status == 200 and [m["username"] for m in body["group"]["members"]] == ["gus"]
    status, body = await browser.api(
        "POST",
        "/api/v1/grants",
        {"subject": f"group:{group_id}", "object": f"pool:{pool.uuid}", "role": "viewer"},
    )
    assert status == 201 and body["grant"]["object_name"] == pool.name
    gus = await signed_in(browser.server, "gus")
    try:
        _, overview = await gus.api("GET", "/api/v1/pools/overview")
        assert [p["id"] for p in overview["pools"]] == [pool.id]
        status, _ = await browser.api(
            "DELETE", f"/api/v1/groups/{group_id}/members/{made['user']['id']}"
        )
        assert status == 200
        _, overview = await gus.api("GET", "/api/v1/pools/overview")
        assert overview["pools"] == []
    finally:
        await gus.close()
    events = [e["event"] for e in await audit_events(browser)]
    for event in ("group_created", "group_member_added", "grant_added", "group_member_removed"):
        assert event in events


async def test_grant_changes_need_the_csrf_token_and_are_audited(
    browser: Browser, settings: Settings, admin_pool: tuple[Pool, XapiClient]
) -> None:
    pool, _ = admin_pool
    made = await create(browser, username="cy", password=ADMIN_PASSWORD)
    grant = {
        "subject": f"user:{made['user']['id']}",
        "object": f"pool:{pool.uuid}",
        "role": "viewer",
    }
    status, body = await browser.api("POST", "/api/v1/grants", grant, csrf=False)
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    status, body = await browser.api(
        "POST", "/api/v1/grants", grant, csrf=False, headers={"X-CSRF-Token": "forged"}
    )
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    form = {"subject": grant["subject"], "object": grant["object"], "role": "viewer"}
    status, html, _ = await browser.post_form("/admin/grants", form, csrf=False)
    assert status == 403 and 'data-code="csrf_failed"' in html
    _, listed = await browser.api("GET", "/api/v1/grants")
    assert listed["grants"] == []

    status, _, resp = await browser.post_form("/admin/grants", {**form, "next": "/admin/grants"})
    assert status == 303 and resp.headers["Location"] == "/admin/grants"
    status, body = await browser.api("POST", "/api/v1/grants", {**grant, "role": "operator"})
    assert status == 201 and body["grant"]["role"] == "operator"
    grant_id = body["grant"]["id"]
    status, html, _ = await browser.get("/admin/grants")
    assert status == 200 and pool.name in html and "operator" in html
    status, body = await browser.api("DELETE", f"/api/v1/grants/{grant_id}", csrf=False)
    assert status == 403
    status, _, _ = await browser.post_form(f"/admin/grants/{grant_id}/remove", {})
    assert status == 303
    entries = [e for e in await audit_events(browser) if e["event"].startswith("grant_")]
    assert [e["event"] for e in reversed(entries)] == [
        "grant_added",
        "grant_changed",
        "grant_removed",
    ]
    assert all(
        e["username"] == "alice" and e["detail"]["object"] == f"pool:{pool.uuid}" for e in entries
    )
    assert entries[1]["detail"]["was"] == "viewer"


@pytest.mark.parametrize(
    ("grant", "field"),
    [
        ({"subject": "user:999", "object": "all", "role": "viewer"}, "subject"),
        ({"subject": "nobody", "object": "all", "role": "viewer"}, "subject"),
        ({"subject": "user:1", "object": "vm:not-a-uuid", "role": "viewer"}, "object"),
        (
            {
                "subject": "user:1",
                "object": "vm:0b4a3f39-8a4e-4c43-9c2b-1f1f1f1f1f1f",
                "role": "viewer",
            },
            "object",
        ),
        ({"subject": "user:1", "object": "datastore", "role": "viewer"}, "object"),
        ({"subject": "user:1", "object": "all", "role": "owner"}, "role"),
    ],
)
async def test_a_grant_on_nothing_is_refused(
    browser: Browser, settings: Settings, grant: dict[str, str], field: str
) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api("POST", "/api/v1/grants", grant)
    assert status == 400 and body["error"]["field"] == field, body


async def test_the_object_picker_names_live_objects(
    browser: Browser, settings: Settings, admin_pool: tuple[Pool, XapiClient]
) -> None:
    pool, _ = admin_pool
    status, body = await browser.api("GET", "/api/v1/grants/objects")
    assert status == 200
    names = {o["name"] for g in body["groups"] for o in g["objects"]}
    assert {"VM web-01", "VM db-01", f"Pool {pool.name}"} <= names
    status, html, _ = await browser.get("/admin/grants")
    assert status == 200 and ">VM web-01</option>" in html


async def test_a_session_id_planted_before_sign_in_is_not_the_one_after(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    victim = Browser(browser.server)
    try:
        planted = "attacker-chosen-session-id"
        victim.session.cookie_jar.update_cookies({SESSION_COOKIE: planted}, URL(browser.server.url))
        status, _ = await victim.api(
            "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
        )
        assert status == 200
        cookies = {c.key: c.value for c in victim.session.cookie_jar}
        assert cookies[SESSION_COOKIE] != planted
        attacker = Browser(browser.server)
        try:
            attacker.session.cookie_jar.update_cookies(
                {SESSION_COOKIE: planted}, URL(browser.server.url)
            )
            status, _ = await attacker.api("GET", "/api/v1/session")
            assert status == 401
        finally:
            await attacker.close()
    finally:
        await victim.close()


async def test_sign_in_is_kept_as_the_last_sign_in(browser: Browser, settings: Settings) -> None:
    await complete_setup(browser, settings)
    await create(browser, username="lea", password=ADMIN_PASSWORD)
    _, users = await browser.api("GET", "/api/v1/users")
    [lea] = [u for u in users["users"] if u["username"] == "lea"]
    assert lea["last_sign_in"] is None
    await (await signed_in(browser.server, "lea")).close()
    _, users = await browser.api("GET", "/api/v1/users")
    [lea] = [u for u in users["users"] if u["username"] == "lea"]
    assert lea["last_sign_in"] is not None
    status, html, _ = await browser.get("/admin/users")
    assert (
        status == 200
        and 'data-user="lea"' in html
        and "never" not in html.split('data-user="lea"')[1].split("</tr>")[0]
    )


async def test_a_token_carries_at_most_its_role(
    browser: Browser, settings: Settings, admin_pool: tuple[Pool, XapiClient]
) -> None:
    pool, _ = admin_pool
    status, body = await browser.api(
        "POST", "/api/v1/tokens", {"name": "monitoring", "max_role": "viewer"}
    )
    assert status == 201
    token = body["token"]
    assert await bearer(browser, token, "/api/v1/pools/overview") == 200
    assert await bearer(browser, token, f"/api/v1/pools/{pool.id}") == 200
    assert await bearer(browser, token, "/api/v1/users") == 403
    assert await bearer(browser, token, "/api/v1/backup/storage") == 403
    async with browser.session.post(
        browser.url("/api/v1/backup/jobs"),
        json={"name": "x", "selector": "pool", "pool_id": str(pool.id)},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status == 403
    status, body = await browser.api("POST", "/api/v1/tokens", {"name": "x", "max_role": "god"})
    assert status == 400


async def test_the_people_pages_render(
    browser: Browser,
    settings: Settings,
    admin_pool: tuple[Pool, XapiClient],
    pool_sim: RunningSimulator,
) -> None:
    made = await create(browser, username="pam", password=ADMIN_PASSWORD)
    status, body = await browser.api("POST", "/api/v1/groups", {"name": "pam's team"})
    group_id = body["group"]["id"]
    for path in (
        "/admin/users",
        f"/admin/users/{made['user']['id']}",
        "/admin/groups",
        f"/admin/groups/{group_id}",
        f"/admin/groups/{group_id}/delete",
        "/admin/grants",
        f"/admin/grants?object=pool:{admin_pool[0].uuid}",
    ):
        status, html, _ = await browser.get(path)
        assert status == 200, (path, html[:300])
        assert "pam" in html or path.startswith("/admin/grants")
    status, html, _ = await browser.post_form(
        "/admin/users", {"username": "pat", "role": "support"}
    )
    assert status == 200 and 'id="temporary-password"' in html
    status, html, _ = await browser.get("/admin/users")
    assert 'data-user="pat"' in html
