"""Sign-in with GitHub through the daemon's real routes, against the GitHub
stand-in (tests/support/github_standin.py: GitHub's OAuth and REST
endpoints as its documentation describes them; github.com itself cannot be
reached from a test machine)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
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
from tests.support.github_standin import GitHubStandin, OAuthApp
from tests.support.signin import SignInAgent, form_error, query_of, with_query
from tests.support.web import Browser
from xenkeep.config import Settings

pytestmark = pytest.mark.slow

AUTHORIZE = ("authorize", "1")
CANCEL = ("authorize", "0")


@dataclass
class Octo:
    """The daemon with a GitHub provider (slug github) on the stand-in."""

    standin: GitHubStandin
    admin: Browser
    app: OAuthApp
    provider: dict[str, Any]
    agent_factory: Any

    def agent(self) -> SignInAgent:
        return self.agent_factory(self.standin.ca.ca_path)

    async def through_github(
        self, agent: SignInAgent, login: str = "mona", button: tuple[str, str] = AUTHORIZE
    ) -> str:
        account = self.standin.accounts[login]
        url = await agent.start("github")
        return await agent.at_idp(
            url,
            {"login": account.login, "password": account.password},
            form_ids=("login", "js-oauth-authorize"),
            button=button,
        )


def settings_for(standin: GitHubStandin, app: OAuthApp, **extra: Any) -> dict[str, Any]:
    return {
        "name": "GitHub",
        "slug": "github",
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "web_url": standin.web_url,
        "api_url": standin.api_url,
        "ca_pem": standin.ca.ca_pem,
        "allowed_orgs": "acme",
        "teams_as_groups": True,
        **extra,
    }


@pytest.fixture
async def octo(admin: Browser, github_standin: GitHubStandin, agent_factory: Any) -> Octo:
    app = github_standin.register_app(f"{await callback_base(admin)}/auth/github/callback")
    provider = await add_provider(admin, "github", **settings_for(github_standin, app))
    return Octo(github_standin, admin, app, provider, agent_factory)


async def refused(agent: SignInAgent, settings: Settings, status: int, page: str) -> str:
    """The refusal's words, once checked that nothing changed."""
    assert status == 401, (status, form_error(page) or page[:2000])
    assert await agent.session_user() is None
    assert [u["username"] for u in await user_rows(settings)] == ["alice"]
    return form_error(page)


async def test_github_standin_sign_in_with_organisations_and_teams(
    octo: Octo, settings: Settings
) -> None:
    ops = await new_group(settings, "Ops")
    status, body = await octo.admin.api(
        "PUT",
        f"/api/v1/auth/providers/{octo.provider['id']}",
        {
            **settings_for(octo.standin, octo.app),
            "enabled": True,
            "mappings": [{"group": "Acme/Ops", "group_id": ops}],
        },
    )
    assert status == 200, body

    agent = octo.agent()
    url = await agent.start("github")
    asked = query_of(url)
    assert url.startswith(octo.standin.web_url + "/login/oauth/authorize?")
    assert asked["scope"] == "read:user user:email read:org"
    assert asked["code_challenge_method"] == "S256" and asked["allow_signup"] == "false"
    account = octo.standin.accounts["mona"]
    callback = await agent.at_idp(
        url,
        {"login": account.login, "password": account.password},
        form_ids=("login", "js-oauth-authorize"),
        button=AUTHORIZE,
    )
    status, page = await agent.callback(callback)
    assert status == 200, form_error(page) or page[:2000]
    who = await agent.session_user()
    assert who is not None
    assert who["user"]["username"] == "mona" and who["user"]["role"] == "user"
    assert who["user"]["source"] == "github" and who["user"]["display_name"] == "Mona Lisa Octocat"
    made = (await user_rows(settings))[-1]
    assert made["external_id"] == "583231" and made["email"] == "mona@example.com"
    assert await memberships(settings, made["id"]) == [(ops, "provider")]
    assert len(await audit_events(octo.admin, "provider_sign_in")) == 1

    # Already authorized: GitHub does not ask again, and the account is found by id.
    again = octo.agent()
    status, _ = await again.callback(await octo.through_github(again))
    assert status == 200
    assert (await again.session_user() or {})["user"]["id"] == made["id"]


async def test_github_standin_lists_in_many_pages(octo: Octo, settings: Settings) -> None:
    status, body = await octo.admin.api(
        "PUT",
        f"/api/v1/auth/providers/{octo.provider['id']}",
        {**settings_for(octo.standin, octo.app), "enabled": True},
    )
    assert status == 200
    agent = octo.agent()
    status, page = await agent.callback(await octo.through_github(agent, "joiner"))
    assert status == 200, form_error(page)
    status, body = await octo.admin.api(
        "POST", f"/api/v1/auth/providers/{octo.provider['id']}/test", {}
    )
    assert body["ok"] is True, body
    # Acme comes last, on the second page of organisations: allowed.
    assert (await agent.session_user() or {})["user"]["username"] == "joiner"


async def test_github_standin_a_bad_state_is_refused(octo: Octo, settings: Settings) -> None:
    agent = octo.agent()
    callback = await octo.through_github(agent)
    status, page = await agent.callback(with_query(callback, state=secrets.token_urlsafe(32)))
    assert "expired or was already used" in await refused(agent, settings, status, page)
    # Nor twice the real one.
    status, _ = await agent.callback(callback)
    assert status == 200
    thief = octo.agent()
    status, page = await thief.callback(callback)
    assert status == 401 and "expired or was already used" in form_error(page)


async def test_github_standin_a_denied_authorization(octo: Octo, settings: Settings) -> None:
    agent = octo.agent()
    callback = await octo.through_github(agent, button=CANCEL)
    assert query_of(callback)["error"] == "access_denied"
    status, page = await agent.callback(callback)
    said = await refused(agent, settings, status, page)
    assert (
        "the sign-in was declined at GitHub (The user has denied your application access.)" in said
    )
    failures = await audit_events(octo.admin, "provider_sign_in_failed")
    assert "declined" in failures[0]["detail"]["why"]


async def test_github_standin_an_unverified_primary_e_mail(octo: Octo, settings: Settings) -> None:
    agent = octo.agent()
    status, page = await agent.callback(await octo.through_github(agent, "hubot"))
    said = await refused(agent, settings, status, page)
    assert "your primary e-mail address at GitHub is not verified" in said


async def test_github_standin_an_organisation_not_allowed(octo: Octo, settings: Settings) -> None:
    agent = octo.agent()
    status, page = await agent.callback(await octo.through_github(agent, "outsider"))
    said = await refused(agent, settings, status, page)
    assert "outsider is not a member of an organisation allowed to sign in here" in said


async def test_github_standin_a_used_code_is_refused(octo: Octo, settings: Settings) -> None:
    agent = octo.agent()
    first = await octo.through_github(agent)
    status, _ = await agent.callback(first)
    assert status == 200
    other = octo.agent()
    fresh = await octo.through_github(other, "joiner")
    status, page = await other.callback(with_query(fresh, code=query_of(first)["code"]))
    assert status == 401
    assert "refused the sign-in code: bad_verification_code" in form_error(page)
    assert await other.session_user() is None


async def test_github_standin_wrong_client_secret_and_the_configuration_test(
    octo: Octo, settings: Settings
) -> None:
    provider_id = octo.provider["id"]
    status, body = await octo.admin.api("POST", f"/api/v1/auth/providers/{provider_id}/test", {})
    assert status == 200 and body["ok"] is True, body
    assert "bad_verification_code" in body["steps"][1]["detail"]
    status, body = await octo.admin.api(
        "PUT",
        f"/api/v1/auth/providers/{provider_id}",
        {**settings_for(octo.standin, octo.app), "client_secret": "0" * 40, "enabled": True},
    )
    assert status == 200, body
    status, body = await octo.admin.api("POST", f"/api/v1/auth/providers/{provider_id}/test", {})
    assert body["ok"] is False and "incorrect_client_credentials" in body["steps"][1]["detail"]
    agent = octo.agent()
    status, page = await agent.callback(await octo.through_github(agent))
    said = await refused(agent, settings, status, page)
    assert (
        "refused XenKeep's client credentials or registration: incorrect_client_credentials" in said
    )
    assert octo.app.client_secret not in str(body) and octo.app.client_secret not in page


async def test_github_standin_no_organisation_rules_reads_no_organisations(
    admin: Browser, github_standin: GitHubStandin, agent_factory: Any, settings: Settings
) -> None:
    app = github_standin.register_app(f"{await callback_base(admin)}/auth/github/callback")
    provider = await add_provider(
        admin, "github", **settings_for(github_standin, app, allowed_orgs="", teams_as_groups=False)
    )
    octo = Octo(github_standin, admin, app, provider, agent_factory)
    agent = octo.agent()
    url = await agent.start("github")
    assert query_of(url)["scope"] == "read:user user:email"
    account = github_standin.accounts["outsider"]
    callback = await agent.at_idp(
        url,
        {"login": account.login, "password": account.password},
        form_ids=("login", "js-oauth-authorize"),
        button=AUTHORIZE,
    )
    status, page = await agent.callback(callback)
    assert status == 200, form_error(page)
    assert (await agent.session_user() or {})["user"]["username"] == "outsider"
