"""The Google preset against a real OpenID provider that speaks with Google's
claim names (``email``, ``email_verified``, ``name``, ``hd``; no groups; the
claims in the ID token itself, RS256 only). Google's servers cannot be
reached from a test machine: the preset's test hook points it there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.auth.providers.conftest import (
    add_provider,
    callback_base,
    memberships,
    new_group,
    user_rows,
)
from tests.support.idp_oidc import Client, OidcIdp
from tests.support.signin import SignInAgent, form_error, query_of
from tests.support.web import Browser
from xenkeep.auth.providers import oidc
from xenkeep.config import Settings

pytestmark = pytest.mark.slow

CAROL_SUB = "110169484474386276334"


@dataclass
class Google:
    idp: OidcIdp
    admin: Browser
    client: Client
    provider: dict[str, Any]
    agent_factory: Any

    def agent(self) -> SignInAgent:
        return self.agent_factory(self.idp.ca.ca_path)

    async def sign_in(self, login: str) -> tuple[SignInAgent, int, str]:
        agent = self.agent()
        account = next(a for a in self.idp.accounts.values() if a["login"] == login)
        url = await agent.start("google")
        callback = await agent.at_idp(
            url, {"login": login, "password": account["password"]}, form_ids=("op-login",)
        )
        status, page = await agent.callback(callback)
        return agent, status, page


async def make_google(
    admin: Browser, idp: OidcIdp, agent_factory: Any, monkeypatch: pytest.MonkeyPatch, **values: Any
) -> Google:
    monkeypatch.setenv(oidc.TEST_GOOGLE_ISSUER_ENV, idp.issuer)
    monkeypatch.setenv(oidc.TEST_GOOGLE_CA_ENV, str(idp.ca.ca_path))
    idp.untamper()
    client = idp.register_client(f"{await callback_base(admin)}/auth/google/callback")
    provider = await add_provider(
        admin,
        "google",
        name="Google",
        slug="google",
        client_id=client.client_id,
        client_secret=client.client_secret,
        **values,
    )
    return Google(idp, admin, client, provider, agent_factory)


@pytest.fixture
async def workspace(
    admin: Browser, google_idp: OidcIdp, agent_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> Google:
    """The preset restricted to the example.com Workspace."""
    return await make_google(
        admin, google_idp, agent_factory, monkeypatch, hosted_domain="example.com"
    )


async def test_a_workspace_account_signs_in_and_its_domain_maps_to_a_group(
    workspace: Google, settings: Settings
) -> None:
    staff = await new_group(settings, "Staff")
    form = {
        "name": "Google",
        "client_id": workspace.client.client_id,
        "hosted_domain": "example.com",
        "enabled": True,
    }
    status, body = await workspace.admin.api(
        "PUT",
        f"/api/v1/auth/providers/{workspace.provider['id']}",
        {**form, "mappings": [{"group": "example.com", "group_id": staff}]},
    )
    assert status == 200, body

    agent = workspace.agent()
    url = await agent.start("google")
    asked = query_of(url)
    assert asked["scope"] == "openid email profile" and asked["hd"] == "example.com"
    await agent.close()
    agent, status, page = await workspace.sign_in("carol")
    assert status == 200, form_error(page) or page[:2000]
    who = await agent.session_user()
    assert who is not None
    assert who["user"]["username"] == "carol@example.com"
    assert who["user"]["display_name"] == "Carol Danvers" and who["user"]["source"] == "google"
    made = next(u for u in await user_rows(settings) if u["username"] == "carol@example.com")
    assert made["external_id"] == f"{workspace.idp.issuer} {CAROL_SUB}"
    assert await memberships(settings, made["id"]) == [(staff, "provider")]


async def test_an_account_outside_the_workspace_is_refused(workspace: Google) -> None:
    agent, status, page = await workspace.sign_in("erin")
    assert status == 401
    assert "only accounts of example.com may sign in here with Google" in form_error(page)
    assert await agent.session_user() is None


async def test_an_unverified_address_is_refused(workspace: Google) -> None:
    agent, status, page = await workspace.sign_in("frank")
    assert status == 401
    assert "(frank@example.com) is not verified" in form_error(page)
    assert await agent.session_user() is None


async def test_any_account_of_allowed_domains(
    admin: Browser, google_idp: OidcIdp, agent_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    google = await make_google(
        admin, google_idp, agent_factory, monkeypatch, allowed_domains="gmail.com"
    )
    agent, status, page = await google.sign_in("erin")
    assert status == 200, form_error(page)
    assert (await agent.session_user() or {})["user"]["username"] == "erin@gmail.com"
    agent, status, page = await google.sign_in("carol")
    assert status == 401
    assert "its domain is not one this appliance accepts" in form_error(page)


async def test_hs256_is_refused_when_discovery_does_not_list_it(workspace: Google) -> None:
    agent = workspace.agent()
    url = await agent.start("google")
    callback = await agent.at_idp(
        url, {"login": "carol", "password": "carol-workspace-42"}, form_ids=("op-login",)
    )
    workspace.idp.tamper("hs256-client-secret")
    try:
        status, page = await agent.callback(callback)
    finally:
        workspace.idp.untamper()
    assert status == 401
    assert "which the provider's discovery does not list" in form_error(page)
    assert await agent.session_user() is None


async def test_the_preset_offers_no_issuer_and_tests_its_configuration(workspace: Google) -> None:
    status, body = await workspace.admin.api("GET", "/api/v1/auth/provider-types")
    google = next(t for t in body["types"] if t["kind"] == "google")
    assert [f["name"] for f in google["fields"]] == [
        "client_id",
        "client_secret",
        "hosted_domain",
        "allowed_domains",
    ]
    status, body = await workspace.admin.api(
        "POST", f"/api/v1/auth/providers/{workspace.provider['id']}/test", {}
    )
    assert status == 200 and body["ok"] is True, body
    assert f"issuer {workspace.idp.issuer}" in body["steps"][0]["detail"]
