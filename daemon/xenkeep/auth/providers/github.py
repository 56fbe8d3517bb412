"""Sign-in with GitHub (github.com or GitHub Enterprise Server): OAuth 2.

GitHub is not OpenID Connect: there is no ID token. The authorization code
flow (with ``state`` and PKCE) gives an access token, and who the person is
comes from the REST API: ``/user`` (the numeric id is the subject: a login
can be renamed and taken by someone else), ``/user/emails`` (the primary,
verified address), and when asked ``/user/orgs`` and ``/user/teams`` for
groups named ``org`` and ``org/team``. An "allowed organisations" setting
lets only their members in.

Addresses follow GitHub's documentation: authorize at
``<web>/login/oauth/authorize``, token at ``<web>/login/oauth/access_token``
(refusals come back as HTTP 200 with an ``error``), the API at
``https://api.github.com`` or ``<web>/api/v3`` for Enterprise Server. Pages
of lists follow the ``Link`` header, only ever to the API's own origin (the
token is never sent elsewhere).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from xenkeep.auth.errors import CredentialsRejectedError, ProviderUnavailableError
from xenkeep.auth.providers import oauth
from xenkeep.auth.providers.base import (
    Callback,
    CheckResult,
    CheckStep,
    ExternalIdentity,
    FieldSpec,
    ProviderEnv,
    ProviderKind,
    ProviderRecord,
    ProviderType,
    RedirectProvider,
    RedirectStart,
)
from xenkeep.auth.providers.http import IdpHttp, printable
from xenkeep.auth.providers.values import FormReader

GITHUB_WEB = "https://github.com"
GITHUB_API = "https://api.github.com"
#: The REST API version XenKeep speaks (GitHub's dated versions).
API_VERSION = "2022-11-28"
PER_PAGE = 100
#: Most pages of one list read (10,000 organisations or teams).
MAX_PAGES = 100
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


@dataclass(frozen=True, slots=True)
class GitHubSettings:
    """One GitHub provider's settings."""

    client_id: str
    client_secret: str
    web_url: str
    api_url: str
    allowed_orgs: tuple[str, ...]
    teams_as_groups: bool
    ca_pem: str = ""

    @property
    def needs_orgs(self) -> bool:
        return bool(self.allowed_orgs) or self.teams_as_groups

    @property
    def scopes(self) -> tuple[str, ...]:
        return ("read:user", "user:email") + (("read:org",) if self.needs_orgs else ())


def primary_email(emails: Any, name: str) -> str:
    """The primary address of ``/user/emails``, which must be verified."""
    if not isinstance(emails, list):
        raise ProviderUnavailableError(f"{name}'s list of e-mail addresses is not a list")
    for entry in emails:
        if isinstance(entry, dict) and entry.get("primary") is True:
            address = entry.get("email")
            if not isinstance(address, str) or "@" not in address:
                break
            if entry.get("verified") is not True:
                raise CredentialsRejectedError(
                    f"your primary e-mail address at {name} is not verified",
                    hint=f"verify it at {name}, then sign in again",
                )
            return printable(address, 254)
    raise CredentialsRejectedError(f"{name} shows no primary e-mail address for you")


def groups_of(orgs: list[Any], teams: list[Any]) -> tuple[str, ...]:
    """Organisation logins and ``org/team-slug`` names, lower-cased (GitHub's
    names are case-insensitive)."""
    names: list[str] = []
    for org in orgs:
        login = org.get("login") if isinstance(org, dict) else None
        if isinstance(login, str) and _LOGIN.match(login):
            names.append(login.lower())
    for team in teams:
        if not isinstance(team, dict):
            continue
        slug = team.get("slug")
        owner = team.get("organization")
        login = owner.get("login") if isinstance(owner, dict) else None
        if isinstance(slug, str) and isinstance(login, str) and _LOGIN.match(login):
            names.append(f"{login.lower()}/{printable(slug, 100).lower()}")
    return tuple(dict.fromkeys(names))


class GitHubProvider(RedirectProvider):
    """One configured GitHub (or GitHub Enterprise Server) OAuth app."""

    def __init__(self, record: ProviderRecord, env: ProviderEnv, settings: GitHubSettings) -> None:
        super().__init__(record, env)
        self.settings = settings
        self._http = IdpHttp(record.name, settings.ca_pem)

    @property
    def _token_url(self) -> str:
        return self.settings.web_url + "/login/oauth/access_token"

    async def start(self) -> RedirectStart:
        flow = oauth.new_flow()
        params = {
            "client_id": self.settings.client_id,
            "redirect_uri": self.env.callback_url,
            "scope": " ".join(self.settings.scopes),
            "state": flow.state,
            "code_challenge": flow.challenge,
            "code_challenge_method": "S256",
            # Signing in here must not become signing up there.
            "allow_signup": "false",
        }
        return RedirectStart(
            url=oauth.authorize_url(self.settings.web_url + "/login/oauth/authorize", params),
            flow_id=flow.state,
            flow_data={oauth.VERIFIER: flow.verifier, oauth.REDIRECT_URI: self.env.callback_url},
        )

    def flow_id(self, callback: Callback) -> str:
        return callback.params.get("state", "")

    async def finish(self, callback: Callback, flow_data: Mapping[str, str]) -> ExternalIdentity:
        name = self.record.name
        code = oauth.callback_code(callback, name)
        try:
            tokens = await oauth.exchange_code(
                self._http,
                self._token_url,
                client_id=self.settings.client_id,
                client_secret=self.settings.client_secret,
                code=code,
                redirect_uri=flow_data[oauth.REDIRECT_URI],
                verifier=flow_data[oauth.VERIFIER],
                # GitHub's documented way: the credentials in the body.
                auth="client_secret_post",
            )
        except oauth.TokenRefusedError as exc:
            if exc.error == "unverified_user_email":
                raise CredentialsRejectedError(
                    f"your primary e-mail address at {name} is not verified",
                    hint=f"verify it at {name}, then sign in again",
                ) from None
            raise
        token = str(tokens["access_token"])
        user = await self._api(token, "/user", "user record")
        if not isinstance(user, dict):
            raise ProviderUnavailableError(f"{name}'s user record is not an object")
        user_id = user.get("id")
        login = user.get("login")
        if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
            raise ProviderUnavailableError(f"{name}'s user record has no numeric id")
        if not isinstance(login, str) or not _LOGIN.match(login):
            raise ProviderUnavailableError(f"{name}'s user record has no valid login")
        emails = await self._pages(token, "/user/emails", "e-mail addresses", "user:email")
        email = primary_email(emails, name)
        groups: tuple[str, ...] = ()
        if self.settings.needs_orgs:
            orgs = await self._pages(token, "/user/orgs", "organisations", "read:org")
            teams = []
            if self.settings.teams_as_groups:
                teams = await self._pages(token, "/user/teams", "teams", "read:org")
            groups = groups_of(orgs, teams)
            member_of = {g for g in groups if "/" not in g}
            if self.settings.allowed_orgs and not member_of & set(self.settings.allowed_orgs):
                raise CredentialsRejectedError(
                    f"{login} is not a member of an organisation allowed to sign in here",
                    hint=f"ask to join one, and grant XenKeep access to it at {name}",
                )
            if not self.settings.teams_as_groups:
                groups = ()
        display = user.get("name")
        return ExternalIdentity(
            subject=str(user_id),
            username=login,
            display_name=printable(display, 128) if isinstance(display, str) else "",
            email=email,
            groups=groups,
        )

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }

    async def _api(self, token: str, path: str, what: str) -> Any:
        return await self._http.get_json(
            self.settings.api_url + path, what=what, headers=self._headers(token)
        )

    async def _pages(self, token: str, path: str, what: str, scope: str) -> list[Any]:
        """Every item of a paginated list, following ``Link: rel="next"``
        while it stays on the API's own origin."""
        origin = urlsplit(self.settings.api_url)[:2]
        url = f"{self.settings.api_url}{path}?per_page={PER_PAGE}"
        items: list[Any] = []
        for _ in range(MAX_PAGES):
            answer = await self._http.request("GET", url, what=what, headers=self._headers(token))
            if answer.status != 200:
                raise ProviderUnavailableError(
                    f"{self.record.name} did not list your {what} (HTTP {answer.status})",
                    hint=f"the sign-in must be granted the {scope} scope",
                )
            page = answer.json(what, self.record.name)
            if not isinstance(page, list):
                raise ProviderUnavailableError(f"{self.record.name}'s {what} are not a list")
            items.extend(page)
            found = _NEXT.search(answer.headers.get("Link", ""))
            if found is None:
                return items
            url = found.group(1)
            if urlsplit(url)[:2] != origin:
                raise ProviderUnavailableError(
                    f"{self.record.name}'s next page of {what} is elsewhere "
                    f"({url[:100]}): not followed"
                )
        raise ProviderUnavailableError(f"{self.record.name} lists more {what} than XenKeep reads")

    async def check(self, username: str = "", password: str = "") -> CheckResult:
        steps: list[CheckStep] = []
        try:
            root = await self._http.get_json(self.settings.api_url + "/", what="API")
        except ProviderUnavailableError as exc:
            steps.append(CheckStep("API", False, exc.with_hint))
            return CheckResult(tuple(steps))
        steps.append(
            CheckStep(
                "API",
                isinstance(root, dict),
                f"{self.settings.api_url} answers"
                if isinstance(root, dict)
                else "not GitHub's API",
            )
        )
        steps += await oauth.client_steps(
            self._http,
            self._token_url,
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            redirect_uri=self.env.callback_url,
            auth="client_secret_post",
            redirect_label="Authorization callback URL",
        )
        return CheckResult(tuple(steps))


class GitHubType(ProviderType):
    """GitHub's OAuth apps (github.com or GitHub Enterprise Server)."""

    kind = ProviderKind.GITHUB
    label = "GitHub"
    fields = (
        *oauth.client_fields(
            "Of an OAuth app: GitHub, Settings, Developer settings, OAuth Apps "
            "(or your organisation's settings)."
        ),
        FieldSpec(
            "allowed_orgs",
            "Allowed organisations",
            help="Comma-separated organisation logins: only their members may sign in. "
            "Empty: anyone with a GitHub account (they have no rights until granted).",
            max_length=4096,
        ),
        FieldSpec(
            "teams_as_groups",
            "Organisations and teams as groups",
            "bool",
            help="Read the person's organisations (acme) and teams (acme/ops) at each "
            "sign-in, for the group mappings.",
        ),
        FieldSpec(
            "web_url",
            "GitHub address",
            "url",
            default=GITHUB_WEB,
            help="https://github.com, or your GitHub Enterprise Server (https://github.example.com).",
        ),
        FieldSpec(
            "api_url",
            "API address",
            "url",
            help="Empty: https://api.github.com for github.com, <GitHub address>/api/v3 "
            "for Enterprise Server.",
        ),
        FieldSpec(
            "ca_pem",
            "Trusted CA certificates (PEM)",
            "textarea",
            help="Only for an Enterprise Server whose certificate a private CA signed.",
            max_length=64 * 1024,
        ),
    )

    def clean(
        self, values: Mapping[str, str], stored_secrets: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        form = FormReader(self.fields, values, stored_secrets)
        web_url = form.https_url("web_url") or GITHUB_WEB
        config: dict[str, Any] = {
            "client_id": form.text(
                "client_id", pattern=_CLIENT_ID, hint="letters, digits, . _ - (as GitHub shows it)"
            ),
            "allowed_orgs": " ".join(
                o.lower()
                for o in form.words(
                    "allowed_orgs", pattern=_LOGIN, hint="not an organisation login"
                )
            ),
            "teams_as_groups": form.flag("teams_as_groups"),
            "web_url": web_url,
            "api_url": form.https_url("api_url"),
            "ca_pem": form.ca_pem("ca_pem"),
        }
        return config, {"client_secret": form.secret("client_secret")}

    def build(self, record: ProviderRecord, env: ProviderEnv) -> GitHubProvider:
        c = record.config
        web_url = str(c.get("web_url") or GITHUB_WEB)
        api_url = str(c.get("api_url") or "") or (
            GITHUB_API if web_url == GITHUB_WEB else web_url + "/api/v3"
        )
        settings = GitHubSettings(
            client_id=str(c["client_id"]),
            client_secret=record.secrets.get("client_secret", ""),
            web_url=web_url,
            api_url=api_url,
            allowed_orgs=tuple(str(c.get("allowed_orgs", "")).split()),
            teams_as_groups=bool(c.get("teams_as_groups")),
            ca_pem=str(c.get("ca_pem") or ""),
        )
        return GitHubProvider(record, env, settings)


TYPES: Mapping[ProviderKind, ProviderType] = {ProviderKind.GITHUB: GitHubType()}
