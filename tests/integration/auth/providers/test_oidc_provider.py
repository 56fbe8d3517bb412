"""Sign-in with OpenID Connect against a real OpenID provider (panva's
oidc-provider under Node, HTTPS on loopback), through the daemon's real
routes: the full code flow, and every way an answer can be wrong."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.auth.providers.conftest import (
    add_provider,
    audit_events,
    callback_base,
    memberships,
    new_group,
    user_rows,
)
from tests.support.idp_oidc import Client, OidcIdp, free_port
from tests.support.signin import SignInAgent, form_error, query_of, with_query
from tests.support.testca import TestCA
from tests.support.web import Browser
from xenkeep.config import Settings
from xenkeep.store import open_database

pytestmark = pytest.mark.slow


@dataclass
class Corp:
    """The daemon with an OpenID Connect provider "Corp SSO" (slug corp)."""

    idp: OidcIdp
    admin: Browser
    client: Client
    provider: dict[str, Any]
    agent_factory: Any
    failures: int = 0

    def agent(self) -> SignInAgent:
        return self.agent_factory(self.idp.ca.ca_path)

    async def through_idp(
        self, agent: SignInAgent, account: str = "alice", next_path: str | None = None
    ) -> str:
        """Start at the daemon, sign in at the provider: the callback URL."""
        login, password = self.idp.login_of(account)
        url = await agent.start("corp", next_path)
        return await agent.at_idp(
            url, {"login": login, "password": password}, form_ids=("op-login",)
        )


async def provider_settings(idp: OidcIdp, client: Client, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Corp SSO",
        "slug": "corp",
        "issuer": idp.issuer,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "scopes": "openid profile email groups",
        "groups_claim": "groups",
        "ca_pem": idp.ca.ca_pem,
        **extra,
    }


@pytest.fixture
async def corp(admin: Browser, oidc_idp: OidcIdp, agent_factory: Any) -> Corp:
    oidc_idp.untamper()
    base = await callback_base(admin)
    client = oidc_idp.register_client(f"{base}/auth/corp/callback")
    provider = await add_provider(admin, "oidc", **await provider_settings(oidc_idp, client))
    return Corp(oidc_idp, admin, client, provider, agent_factory)


async def assert_refused(
    corp: Corp, agent: SignInAgent, settings: Settings, status: int, page: str, words: str
) -> None:
    """A refusal: the sign-in page says why, nobody is signed in, no
    account was made, and the audit log has the failure."""
    shown = form_error(page)
    assert status == 401, (status, shown or page[:2000])
    assert words in shown, shown
    assert 'id="login-form"' in page
    assert await agent.session_user() is None
    assert [u["username"] for u in await user_rows(settings)] == ["alice"]
    # Repeated failures from one address fold into one entry, counted.
    failures = await audit_events(corp.admin, "provider_sign_in_failed")
    corp.failures += 1
    assert sum(e["count"] for e in failures) == corp.failures, failures
    assert failures[0]["detail"]["provider"] == "Corp SSO"


async def test_sign_in_makes_an_account_without_rights_and_syncs_groups(
    corp: Corp, settings: Settings
) -> None:
    group_id = await new_group(settings, "Operators")
    status, body = await corp.admin.api(
        "PUT",
        f"/api/v1/auth/providers/{corp.provider['id']}",
        {
            **await provider_settings(corp.idp, corp.client),
            "enabled": True,
            "mappings": [{"group": "xenkeep-operators", "group_id": group_id}],
        },
    )
    assert status == 200, body

    agent = corp.agent()
    url = await agent.start("corp", "/operations")
    asked = query_of(url)
    assert url.startswith(corp.idp.issuer + "/auth?")
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert len(asked["state"]) >= 43 and len(asked["nonce"]) >= 43
    assert asked["redirect_uri"].endswith("/auth/corp/callback")
    login, password = corp.idp.login_of("alice")
    callback = await agent.at_idp(
        url, {"login": login, "password": password}, form_ids=("op-login",)
    )
    assert query_of(callback)["iss"] == corp.idp.issuer
    status, page = await agent.callback(callback)
    assert status == 200, page[:2000]
    assert 'content="0; url=/operations"' in page

    who = await agent.session_user()
    assert who is not None
    # The local administrator is alice: the provider's alice is someone else.
    assert who["user"]["username"] == "alice@corp"
    assert who["user"]["role"] == "user" and who["user"]["source"] == "oidc"
    assert who["user"]["display_name"] == "Alice Liddell"
    made = (await user_rows(settings))[-1]
    assert made["external_id"] == f"{corp.idp.issuer} alice"
    assert made["email"] == "alice@example.org"
    assert await memberships(settings, made["id"]) == [(group_id, "provider")]
    db = await open_database(settings.database_path)
    try:
        # The ID token is remembered until it expires: never accepted twice.
        replays = await db.fetchall("SELECT token_id, expires_at FROM auth_replay")
    finally:
        await db.close()
    # oidc-provider's ID tokens carry no jti: the token's hash stands for it.
    assert len(replays) == 1 and len(replays[0]["token_id"]) == len("sha256:") + 64
    assert replays[0]["token_id"].startswith("sha256:")
    assert replays[0]["expires_at"] > time.time()
    assert [
        e["detail"].get("provider") for e in await audit_events(corp.admin, "provider_sign_in")
    ] == ["Corp SSO"]
    assert len(await audit_events(corp.admin, "user_created")) == 1

    # Again, in another browser: the same account, found by its subject.
    again = corp.agent()
    status, _ = await again.callback(await corp.through_idp(again))
    assert status == 200
    assert (await again.session_user() or {})["user"]["id"] == made["id"]
    assert len(await user_rows(settings)) == 2


@pytest.mark.parametrize(
    ("alg", "auth_method"),
    [("ES256", "client_secret_post"), ("HS256", "client_secret_basic")],
)
async def test_other_signatures_and_client_authentication(
    admin: Browser, oidc_idp: OidcIdp, agent_factory: Any, alg: str, auth_method: str
) -> None:
    oidc_idp.untamper()
    base = await callback_base(admin)
    client = oidc_idp.register_client(
        f"{base}/auth/corp/callback", alg=alg, auth_method=auth_method
    )
    provider = await add_provider(admin, "oidc", **await provider_settings(oidc_idp, client))
    corp = Corp(oidc_idp, admin, client, provider, agent_factory)
    agent = corp.agent()
    status, page = await agent.callback(await corp.through_idp(agent))
    assert status == 200, page[:2000]
    assert (await agent.session_user() or {})["user"]["username"] == "alice@corp"


TAMPERED = [
    pytest.param("signature", {}, {}, "has a wrong signature", id="flipped-signature-byte"),
    pytest.param("payload", {"sub": "mallory"}, {}, "has a wrong signature", id="edited-payload"),
    pytest.param("alg-none", {}, {}, "is not signed (alg none)", id="alg-none"),
    pytest.param("hs256-public-key", {}, {}, "has a wrong signature", id="hs256-with-public-key"),
    pytest.param(
        "resign",
        {"aud": "someone-else"},
        {},
        "issued to another application (aud)",
        id="wrong-audience",
    ),
    pytest.param(
        "resign",
        {"aud": ["someone-else", "CLIENT"]},
        {},
        "another application (azp)",
        id="extra-audience",
    ),
    pytest.param(
        "resign",
        {"iss": "https://evil.example"},
        {},
        "someone other than the configured issuer",
        id="wrong-issuer",
    ),
    pytest.param(
        "resign",
        {"nonce": "not-this-one"},
        {},
        "does not belong to this sign-in (nonce)",
        id="bad-nonce",
    ),
    pytest.param(
        "resign", {"nonce": None}, {}, "does not belong to this sign-in (nonce)", id="no-nonce"
    ),
    pytest.param("resign", {"exp": 1_000_000_000}, {}, "has expired", id="expired"),
    pytest.param(
        "resign", {"iat": 4_000_000_000}, {}, "issued in the future", id="issued-in-future"
    ),
    pytest.param(
        "resign",
        {},
        {"kid": "not-a-published-key"},
        "not among the provider's published keys",
        id="unknown-key",
    ),
    pytest.param("resign", {}, {"typ": "logout+jwt"}, "not an ID token", id="other-token-type"),
]


@pytest.mark.parametrize(("kind", "claims", "header", "words"), TAMPERED)
async def test_a_tampered_id_token_is_refused(
    corp: Corp,
    settings: Settings,
    kind: str,
    claims: dict[str, Any],
    header: dict[str, Any],
    words: str,
) -> None:
    if isinstance(claims.get("aud"), list):
        claims = {"aud": [a.replace("CLIENT", corp.client.client_id) for a in claims["aud"]]}
    agent = corp.agent()
    callback = await corp.through_idp(agent)
    corp.idp.tamper(kind, claims, header)
    try:
        status, page = await agent.callback(callback)
    finally:
        corp.idp.untamper()
    await assert_refused(corp, agent, settings, status, page, words)


async def test_a_bad_or_missing_state_is_refused(corp: Corp, settings: Settings) -> None:
    agent = corp.agent()
    callback = await corp.through_idp(agent)
    status, page = await agent.callback(with_query(callback, state=secrets.token_urlsafe(32)))
    await assert_refused(corp, agent, settings, status, page, "expired or was already used")
    status, page = await agent.callback(with_query(callback, state=""))
    await assert_refused(corp, agent, settings, status, page, "expired or was already used")


async def test_a_replayed_callback_is_refused(corp: Corp, settings: Settings) -> None:
    agent = corp.agent()
    callback = await corp.through_idp(agent)
    status, _ = await agent.callback(callback)
    assert status == 200
    # The same answer once more, from someone who saw the URL.
    thief = corp.agent()
    status, page = await thief.callback(callback)
    assert status == 401 and "expired or was already used" in page
    assert await thief.session_user() is None
    assert len(await user_rows(settings)) == 2


async def test_the_same_callback_twice_at_once_signs_in_once(
    corp: Corp, settings: Settings
) -> None:
    agent = corp.agent()
    callback = await corp.through_idp(agent)
    other = corp.agent()
    results = await asyncio.gather(agent.callback(callback), other.callback(callback))
    assert sorted(status for status, _ in results) == [200, 401]
    assert len(await user_rows(settings)) == 2


async def test_a_used_code_is_refused_with_a_fresh_state(corp: Corp, settings: Settings) -> None:
    agent = corp.agent()
    first = await corp.through_idp(agent)
    status, _ = await agent.callback(first)
    assert status == 200
    # A new sign-in of someone else, carrying the code already used.
    other = corp.agent()
    fresh = await corp.through_idp(other, "bob")
    status, page = await other.callback(with_query(fresh, code=query_of(first)["code"]))
    assert status == 401 and "refused the sign-in code: invalid_grant" in page, page[:3000]
    assert await other.session_user() is None
    assert len(await user_rows(settings)) == 2


async def test_an_expired_code_is_refused(corp: Corp, settings: Settings) -> None:
    agent = corp.agent()
    callback = await corp.through_idp(agent)
    assert corp.idp.expire_codes() >= 1
    status, page = await agent.callback(callback)
    await assert_refused(
        corp, agent, settings, status, page, "refused the sign-in code: invalid_grant"
    )


async def test_a_code_from_a_mixed_up_issuer_is_refused(corp: Corp, settings: Settings) -> None:
    agent = corp.agent()
    callback = await corp.through_idp(agent)
    status, page = await agent.callback(with_query(callback, iss="https://evil.example"))
    await assert_refused(corp, agent, settings, status, page, "is not from Corp SSO's issuer")


async def test_declined_at_the_provider(corp: Corp, settings: Settings) -> None:
    agent = corp.agent()
    url = await agent.start("corp")
    callback = await agent.at_idp(url, {}, form_ids=("op-login",), button=("cancel", "1"))
    assert query_of(callback)["error"] == "access_denied"
    status, page = await agent.callback(callback)
    await assert_refused(
        corp, agent, settings, status, page, "the sign-in was declined at Corp SSO"
    )


@pytest.mark.parametrize(
    ("next_path", "lands"),
    [
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("/backup/jobs?x=1", "/backup/jobs?x=1"),
    ],
)
async def test_the_return_path_stays_on_the_appliance(
    corp: Corp, next_path: str, lands: str
) -> None:
    agent = corp.agent()
    status, page = await agent.callback(await corp.through_idp(agent, next_path=next_path))
    assert status == 200, page[:2000]
    assert f'content="0; url={lands.replace("&", "&amp;")}"' in page, page
    assert f'href="{lands}"' in page
    assert "evil" not in page


async def test_a_disabled_account_is_refused(corp: Corp, settings: Settings) -> None:
    agent = corp.agent()
    status, _ = await agent.callback(await corp.through_idp(agent))
    assert status == 200
    db = await open_database(settings.database_path)
    try:
        await db.execute("UPDATE users SET disabled = 1 WHERE username = 'alice@corp'")
    finally:
        await db.close()
    again = corp.agent()
    status, page = await again.callback(await corp.through_idp(again))
    assert status == 401 and "this account is disabled on this appliance" in page
    assert await again.session_user() is None


async def test_e_mail_rules(
    admin: Browser, oidc_idp: OidcIdp, agent_factory: Any, settings: Settings
) -> None:
    oidc_idp.untamper()
    base = await callback_base(admin)
    client = oidc_idp.register_client(f"{base}/auth/corp/callback")
    provider = await add_provider(
        admin,
        "oidc",
        **await provider_settings(
            oidc_idp,
            client,
            require_email_verified=True,
            allowed_domains="example.org, corp.example",
        ),
    )
    corp = Corp(oidc_idp, admin, client, provider, agent_factory)
    agent = corp.agent()
    status, page = await agent.callback(await corp.through_idp(agent, "bob"))
    await assert_refused(
        corp, agent, settings, status, page, "(bob@elsewhere.example) is not verified"
    )
    status, body = await admin.api(
        "PUT",
        f"/api/v1/auth/providers/{provider['id']}",
        {
            **await provider_settings(oidc_idp, client),
            "enabled": True,
            "allowed_domains": "corp.example",
        },
    )
    assert status == 200, body
    agent = corp.agent()
    status, page = await agent.callback(await corp.through_idp(agent, "alice"))
    await assert_refused(
        corp, agent, settings, status, page, "its domain is not one this appliance accepts"
    )


async def test_wrong_issuer_in_discovery(
    admin: Browser, oidc_idp: OidcIdp, agent_factory: Any
) -> None:
    # The provider's certificate covers localhost too: only the issuer differs.
    await add_provider(
        admin,
        "oidc",
        name="Corp SSO",
        slug="corp",
        issuer=f"https://localhost:{oidc_idp.port}",
        client_id="xenkeep",
        client_secret="s3cret",
        ca_pem=oidc_idp.ca.ca_pem,
    )
    agent = agent_factory(oidc_idp.ca.ca_path)
    status, page, _ = await agent.get(agent.daemon_url + "/auth/corp/start")
    assert status == 503, page[:2000]
    assert f"names the issuer &#39;{oidc_idp.issuer}&#39;, not the configured" in page, page[:3000]
    assert 'id="login-form"' in page


async def test_a_provider_that_is_down(admin: Browser, agent_factory: Any) -> None:
    await add_provider(
        admin,
        "oidc",
        name="Corp SSO",
        slug="corp",
        issuer=f"https://127.0.0.1:{free_port()}",
        client_id="xenkeep",
        client_secret="s3cret",
    )
    agent = agent_factory()
    status, page, _ = await agent.get(agent.daemon_url + "/auth/corp/start")
    shown = form_error(page)
    assert status == 503 and "cannot reach Corp SSO at 127.0.0.1:" in shown, shown
    assert "Connection refused" in shown, shown


async def test_a_certificate_of_another_ca_is_not_trusted(
    admin: Browser, oidc_idp: OidcIdp, agent_factory: Any, tmp_path: Path
) -> None:
    other = TestCA(tmp_path / "other-ca", "Someone else's CA")
    await add_provider(
        admin,
        "oidc",
        name="Corp SSO",
        slug="corp",
        issuer=oidc_idp.issuer,
        client_id="xenkeep",
        client_secret="s3cret",
        ca_pem=other.ca_pem,
    )
    agent = agent_factory()
    status, page, _ = await agent.get(agent.daemon_url + "/auth/corp/start")
    assert status == 503, page[:2000]
    assert "the TLS certificate of Corp SSO at 127.0.0.1:" in page and "is not trusted" in page
    # Without a pinned CA, the system's CAs do not know the test CA either.
    status, body = await admin.api("GET", "/api/v1/auth/providers")
    provider_id = body["providers"][0]["id"]
    status, body = await admin.api(
        "PUT",
        f"/api/v1/auth/providers/{provider_id}",
        {"name": "Corp SSO", "issuer": oidc_idp.issuer, "client_id": "xenkeep", "enabled": True},
    )
    assert status == 200, body
    status, page, _ = await agent.get(agent.daemon_url + "/auth/corp/start")
    assert status == 503 and "is not trusted" in page


async def test_testing_the_configuration(corp: Corp) -> None:
    provider_id = corp.provider["id"]
    status, body = await corp.admin.api("POST", f"/api/v1/auth/providers/{provider_id}/test", {})
    assert status == 200, body
    assert body["ok"] is True, body
    labels = [s["label"] for s in body["steps"]]
    assert labels == [
        "Discovery document",
        "Signing keys",
        "Client id and secret",
        "Redirect address",
    ]
    assert "invalid_grant" in body["steps"][2]["detail"]

    # The admin page's form: the same answer, rendered.
    status, page, _ = await corp.admin.get(f"/admin/providers/{provider_id}")
    assert status == 200
    status, page, _ = await corp.admin.post_form(f"/admin/providers/{provider_id}/test", {})
    assert status == 200 and 'id="provider-check" data-ok="true"' in page, page[:3000]

    # A wrong secret: the client step says so.
    status, body = await corp.admin.api(
        "PUT",
        f"/api/v1/auth/providers/{provider_id}",
        {
            **await provider_settings(corp.idp, corp.client),
            "client_secret": "not-the-secret",
            "enabled": True,
        },
    )
    assert status == 200, body
    status, body = await corp.admin.api("POST", f"/api/v1/auth/providers/{provider_id}/test", {})
    assert status == 200 and body["ok"] is False
    client_step = body["steps"][2]
    assert client_step["ok"] is False and "invalid_client" in client_step["detail"], client_step
    assert "not-the-secret" not in str(body)
    audit = await audit_events(corp.admin, "provider_tested")
    assert [e["detail"]["ok"] for e in audit[:3]] == [False, True, True]


async def test_secrets_are_never_shown_nor_logged(
    corp: Corp, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = corp.client.client_secret
    agent = corp.agent()
    status, _ = await agent.callback(await corp.through_idp(agent))
    assert status == 200
    provider_id = corp.provider["id"]
    status, body = await corp.admin.api("GET", f"/api/v1/auth/providers/{provider_id}")
    assert body["config"]["client_secret"] is True
    status, listing = await corp.admin.api("GET", "/api/v1/auth/providers")
    status, page, _ = await corp.admin.get(f"/admin/providers/{provider_id}")
    status, audit = await corp.admin.api("GET", "/api/v1/audit")
    for shown in (str(body), str(listing), page, str(audit), caplog.text):
        assert secret not in shown
    # Saving the form with the secret left empty keeps it: sign-in still works.
    status, body = await corp.admin.api(
        "PUT",
        f"/api/v1/auth/providers/{provider_id}",
        {**await provider_settings(corp.idp, corp.client), "client_secret": "", "enabled": True},
    )
    assert status == 200
    again = corp.agent()
    status, _ = await again.callback(await corp.through_idp(again))
    assert status == 200
    db = await open_database(settings.database_path)
    try:
        row = await db.fetchone("SELECT config, secrets_enc FROM auth_providers")
    finally:
        await db.close()
    assert row is not None and secret not in str(dict(row))
