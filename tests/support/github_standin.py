"""A stand-in for GitHub, which cannot be reached from a test machine.

It serves, over HTTPS on loopback, what XenKeep's GitHub sign-in uses, as
GitHub's documentation describes it (the Enterprise Server layout: the web
at ``/``, the REST API under ``/api/v3``):

- ``GET /login/oauth/authorize`` (client_id, redirect_uri, scope, state,
  allow_signup, code_challenge, code_challenge_method): the sign-in page
  (``/login``, ``POST /session``), then the authorization page whose
  "Authorize" sends ``code`` and ``state`` to the redirect URI and whose
  "Cancel" sends ``error=access_denied``. A redirect_uri must have the
  registered callback's host and port and a path under its path, else
  ``error=redirect_uri_mismatch`` goes to the registered callback.
  An app already authorized for the same scopes is not asked again.
- ``POST /login/oauth/access_token`` (client_id, client_secret, code,
  redirect_uri, code_verifier): JSON with ``Accept: application/json``,
  form-encoded otherwise; refusals with HTTP 200 and ``error``
  (incorrect_client_credentials, redirect_uri_mismatch,
  bad_verification_code, unverified_user_email); codes used once, valid
  ten minutes; the PKCE verifier checked when a challenge was sent.
- ``GET /api/v3/``, ``/user``, ``/user/emails`` (needs user:email or user),
  ``/user/orgs`` and ``/user/teams`` (need read:org or user): bearer or
  ``token`` authorization, ``X-OAuth-Scopes``, 401 "Bad credentials",
  pages of ``per_page`` (default 30, at most 100) with a ``Link`` header.

It runs in its own thread with its own event loop, so both async tests and
Chromium tests (synchronous) can use it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from aiohttp import web

from tests.support.idp_oidc import free_port
from tests.support.testca import ServerCert, TestCA

DOCS = "https://docs.github.com"
AUTHORIZE_ERRORS = f"{DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-request-errors"
TOKEN_ERRORS = "/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"
MISMATCH = "The redirect_uri MUST match the registered callback URL for this application."
CODE_SECONDS = 600
SESSION_COOKIE = "user_session"


@dataclass
class Account:
    """A GitHub user as the stand-in knows it."""

    id: int
    login: str
    password: str
    name: str | None
    emails: list[dict[str, Any]]
    orgs: list[str] = field(default_factory=list)
    teams: list[tuple[str, str]] = field(default_factory=list)


def default_accounts() -> dict[str, Account]:
    return {
        a.login: a
        for a in (
            Account(
                583231,
                "mona",
                "mona-octocat-42",
                "Mona Lisa Octocat",
                [
                    {
                        "email": "mona@example.com",
                        "primary": True,
                        "verified": True,
                        "visibility": "private",
                    },
                    {
                        "email": "583231+mona@users.noreply.github.com",
                        "primary": False,
                        "verified": True,
                        "visibility": None,
                    },
                ],
                orgs=["Acme", "widgets"],
                teams=[("Acme", "ops"), ("Acme", "backup-admins"), ("widgets", "sales")],
            ),
            Account(
                9919,
                "hubot",
                "hubot-unverified-42",
                None,
                [
                    {
                        "email": "hubot@example.com",
                        "primary": True,
                        "verified": False,
                        "visibility": "public",
                    }
                ],
                orgs=["Acme"],
            ),
            Account(
                1234567,
                "outsider",
                "outsider-nope-42",
                "Out Sider",
                [
                    {
                        "email": "out@elsewhere.example",
                        "primary": True,
                        "verified": True,
                        "visibility": None,
                    }
                ],
                orgs=["other-org"],
            ),
            # In very many organisations: the lists come in pages.
            Account(
                7654321,
                "joiner",
                "joiner-many-42",
                "Joiner",
                [
                    {
                        "email": "joiner@example.com",
                        "primary": True,
                        "verified": True,
                        "visibility": None,
                    }
                ],
                orgs=[f"org-{n:03d}" for n in range(150)] + ["Acme"],
                teams=[(f"org-{n:03d}", "team") for n in range(120)],
            ),
        )
    }


@dataclass
class OAuthApp:
    client_id: str
    client_secret: str
    callback_url: str


@dataclass
class _Code:
    app: OAuthApp
    login: str
    scopes: tuple[str, ...]
    redirect_uri: str
    challenge: str
    expires: float


class GitHubStandin:
    """The stand-in's state: apps, accounts, sessions, codes, tokens."""

    def __init__(self, ca: TestCA, cert: ServerCert, port: int) -> None:
        self.ca = ca
        self.cert = cert
        self.port = port
        self.web_url = f"https://127.0.0.1:{port}"
        self.api_url = f"{self.web_url}/api/v3"
        self.accounts = default_accounts()
        self.apps: dict[str, OAuthApp] = {}
        self._sessions: dict[str, str] = {}
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._authorized: set[tuple[str, str, tuple[str, ...]]] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # --- what the tests do -------------------------------------------------------

    def register_app(self, callback_url: str) -> OAuthApp:
        """An OAuth app, as its owner registers it in GitHub's settings."""
        app = OAuthApp("Ov23li" + secrets.token_hex(7), secrets.token_hex(20), callback_url)
        with self._lock:
            self.apps[app.client_id] = app
        return app

    def expire_codes(self) -> None:
        with self._lock:
            for code in self._codes.values():
                code.expires = 0.0

    # --- running -----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        future.result(60)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(60)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/login/oauth/authorize", self._authorize)
        app.router.add_post("/login/oauth/authorize", self._authorize_answer)
        app.router.add_post("/login/oauth/access_token", self._access_token)
        app.router.add_get("/login", self._login_page)
        app.router.add_post("/session", self._session)
        app.router.add_get("/api/v3/", self._api_root)
        app.router.add_get("/api/v3/user", self._user)
        app.router.add_get("/api/v3/user/emails", self._emails)
        app.router.add_get("/api/v3/user/orgs", self._orgs)
        app.router.add_get("/api/v3/user/teams", self._teams)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert.cert), str(self.cert.key))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()

    # --- the web: signing in and authorizing -----------------------------------------

    def _signed_in(self, request: web.Request) -> Account | None:
        login = self._sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        return self.accounts.get(login) if login else None

    @staticmethod
    def _page(title: str, body: str) -> web.Response:
        return web.Response(
            text=f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title></head><body><main>{body}</main></body></html>",
            content_type="text/html",
        )

    @staticmethod
    def _redirect_ok(registered: str, asked: str) -> bool:
        """GitHub's rule: same host and port, path under the registered path."""
        r, a = urlsplit(registered), urlsplit(asked)
        return (r.scheme, r.hostname, r.port) == (a.scheme, a.hostname, a.port) and (
            a.path == r.path or a.path.startswith(r.path.rstrip("/") + "/")
        )

    @staticmethod
    def _to(url: str, params: dict[str, str]) -> web.HTTPFound:
        parts = urlsplit(url)
        query = [*parse_qsl(parts.query), *params.items()]
        return web.HTTPFound(urlunsplit(parts._replace(query=urlencode(query))))

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        app = self.apps.get(q.get("client_id", ""))
        if app is None:
            return web.Response(status=404, text="Not Found")
        redirect_uri = q.get("redirect_uri") or app.callback_url
        state = q.get("state", "")
        if not self._redirect_ok(app.callback_url, redirect_uri):
            raise self._to(
                app.callback_url,
                {
                    "error": "redirect_uri_mismatch",
                    "error_description": MISMATCH,
                    "error_uri": f"{AUTHORIZE_ERRORS}/#redirect-uri-mismatch",
                    "state": state,
                },
            )
        account = self._signed_in(request)
        if account is None:
            raise web.HTTPFound(
                "/login?" + urlencode({"client_id": app.client_id, "return_to": request.path_qs})
            )
        scopes = tuple(sorted(set(q.get("scope", "").replace(",", " ").split())))
        if (account.login, app.client_id, scopes) in self._authorized:
            raise self._issue(app, account, scopes, redirect_uri, state, q)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in q.items()
        )
        return self._page(
            "Authorize application",
            f"<h1>Authorize {html.escape(app.client_id)}</h1>"
            f"<p>wants access to: {html.escape(', '.join(scopes) or 'public data')}</p>"
            f'<form method="post" action="/login/oauth/authorize" id="js-oauth-authorize">{hidden}'
            '<button type="submit" name="authorize" value="1" id="js-oauth-authorize-btn">'
            "Authorize</button>"
            '<button type="submit" name="authorize" value="0" id="js-oauth-cancel">Cancel</button>'
            "</form>",
        )

    async def _authorize_answer(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        app = self.apps.get(form.get("client_id", ""))
        account = self._signed_in(request)
        if app is None or account is None:
            return web.Response(status=422, text="Unprocessable")
        redirect_uri = form.get("redirect_uri") or app.callback_url
        if not self._redirect_ok(app.callback_url, redirect_uri):
            return web.Response(status=422, text="Unprocessable")
        state = form.get("state", "")
        if form.get("authorize") != "1":
            raise self._to(
                redirect_uri,
                {
                    "error": "access_denied",
                    "error_description": "The user has denied your application access.",
                    "error_uri": f"{AUTHORIZE_ERRORS}/#access-denied",
                    "state": state,
                },
            )
        scopes = tuple(sorted(set(form.get("scope", "").replace(",", " ").split())))
        self._authorized.add((account.login, app.client_id, scopes))
        raise self._issue(app, account, scopes, redirect_uri, state, form)

    def _issue(
        self,
        app: OAuthApp,
        account: Account,
        scopes: tuple[str, ...],
        redirect_uri: str,
        state: str,
        params: Any,
    ) -> web.HTTPFound:
        challenge = ""
        if params.get("code_challenge"):
            challenge = params["code_challenge"]
        code = secrets.token_hex(10)
        with self._lock:
            self._codes[code] = _Code(
                app, account.login, scopes, redirect_uri, challenge, time.time() + CODE_SECONDS
            )
        return self._to(redirect_uri, {"code": code, "state": state})

    async def _login_page(self, request: web.Request, error: str = "") -> web.Response:
        return_to = request.query.get("return_to", "/")
        shown = f'<p class="flash-error" id="login-error">{html.escape(error)}</p>' if error else ""
        return self._page(
            "Sign in to GitHub",
            f"<h1>Sign in to GitHub (stand-in)</h1>{shown}"
            '<form method="post" action="/session" id="login">'
            f'<input type="hidden" name="return_to" value="{html.escape(return_to)}">'
            f'<input type="hidden" name="authenticity_token" value="{secrets.token_hex(16)}">'
            '<label>Username or email address <input name="login" id="login_field"></label>'
            '<label>Password <input type="password" name="password" id="password"></label>'
            '<button type="submit" name="commit" value="Sign in" id="sign-in">Sign in</button>'
            "</form>",
        )

    async def _session(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        account = self.accounts.get(str(form.get("login", "")))
        return_to = str(form.get("return_to", "/"))
        if not return_to.startswith("/") or return_to.startswith("//"):
            return_to = "/"
        if account is None or account.password != form.get("password"):
            return await self._login_page(request, "Incorrect username or password.")
        session = secrets.token_urlsafe(24)
        self._sessions[session] = account.login
        response = web.HTTPFound(return_to)
        response.set_cookie(SESSION_COOKIE, session, secure=True, httponly=True, samesite="Lax")
        raise response

    # --- the token endpoint ----------------------------------------------------------

    async def _access_token(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        as_json = "application/json" in request.headers.get("Accept", "")

        def answer(values: dict[str, str]) -> web.Response:
            if as_json:
                return web.json_response(values)
            return web.Response(
                text=urlencode(values), content_type="application/x-www-form-urlencoded"
            )

        def refuse(error: str, description: str, anchor: str) -> web.Response:
            return answer(
                {
                    "error": error,
                    "error_description": description,
                    "error_uri": f"{TOKEN_ERRORS}/#{anchor}",
                }
            )

        app = self.apps.get(form.get("client_id", ""))
        if app is None or not secrets.compare_digest(
            app.client_secret, form.get("client_secret", "")
        ):
            return refuse(
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
                "incorrect-client-credentials",
            )
        with self._lock:
            code = self._codes.pop(form.get("code", ""), None)
        if code is None or code.app is not app or code.expires < time.time():
            return refuse(
                "bad_verification_code",
                "The code passed is incorrect or expired.",
                "bad-verification-code",
            )
        if form.get("redirect_uri") and form["redirect_uri"] != code.redirect_uri:
            return refuse(
                "redirect_uri_mismatch",
                MISMATCH,
                "redirect-uri-mismatch2",
            )
        if code.challenge:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
                return refuse(
                    "bad_verification_code",
                    "The code passed is incorrect or expired.",
                    "bad-verification-code",
                )
        account = self.accounts[code.login]
        primary = next(e for e in account.emails if e["primary"])
        if not primary["verified"]:
            return refuse(
                "unverified_user_email",
                "The user must have a verified primary email.",
                "unverified-user-email",
            )
        token = "gho_" + secrets.token_urlsafe(27)
        with self._lock:
            self._tokens[token] = (account.login, code.scopes)
        return answer(
            {"access_token": token, "scope": ",".join(code.scopes), "token_type": "bearer"}
        )

    # --- the REST API ----------------------------------------------------------------

    def _api_error(self, status: int, message: str) -> web.Response:
        return web.json_response(
            {"message": message, "documentation_url": f"{DOCS}/rest", "status": str(status)},
            status=status,
        )

    def _caller(self, request: web.Request) -> tuple[Account, tuple[str, ...]] | web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        found = self._tokens.get(token) if scheme.lower() in ("bearer", "token") else None
        if found is None:
            return self._api_error(401, "Bad credentials")
        return self.accounts[found[0]], found[1]

    def _list(
        self, request: web.Request, items: list[Any], scopes: tuple[str, ...]
    ) -> web.Response:
        try:
            per_page = min(max(int(request.query.get("per_page", "30")), 1), 100)
            page = max(int(request.query.get("page", "1")), 1)
        except ValueError:
            return self._api_error(400, "Invalid request")
        chunk = items[(page - 1) * per_page : page * per_page]
        response = web.json_response(chunk, headers={"X-OAuth-Scopes": ", ".join(scopes)})
        last = max(1, -(-len(items) // per_page))
        if page < last:
            base = f"{self.api_url}{request.path.removeprefix('/api/v3')}"
            links = [
                f'<{base}?{urlencode({"per_page": per_page, "page": page + 1})}>; rel="next"',
                f'<{base}?{urlencode({"per_page": per_page, "page": last})}>; rel="last"',
            ]
            response.headers["Link"] = ", ".join(links)
        return response

    async def _api_root(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "current_user_url": f"{self.api_url}/user",
                "emails_url": f"{self.api_url}/user/emails",
            }
        )

    async def _user(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        account, scopes = caller
        public = next((e["email"] for e in account.emails if e["visibility"] == "public"), None)
        return web.json_response(
            {
                "login": account.login,
                "id": account.id,
                "node_id": base64.b64encode(f"04:User{account.id}".encode()).decode(),
                "type": "User",
                "site_admin": False,
                "name": account.name,
                "email": public,
                "html_url": f"{self.web_url}/{account.login}",
            },
            headers={"X-OAuth-Scopes": ", ".join(scopes)},
        )

    async def _emails(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        account, scopes = caller
        if not {"user", "user:email"} & set(scopes):
            return self._api_error(404, "Not Found")
        return self._list(request, account.emails, scopes)

    async def _orgs(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        account, scopes = caller
        if not {"user", "read:org", "admin:org"} & set(scopes):
            return self._api_error(403, "Resource not accessible by integration")
        orgs = [
            {"login": o, "id": 1000 + n, "url": f"{self.api_url}/orgs/{o}"}
            for n, o in enumerate(account.orgs)
        ]
        return self._list(request, orgs, scopes)

    async def _teams(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        account, scopes = caller
        if not {"user", "repo", "read:org"} & set(scopes):
            return self._api_error(403, "Resource not accessible by integration")
        teams = [
            {
                "id": 5000 + n,
                "name": slug.replace("-", " ").title(),
                "slug": slug,
                "privacy": "closed",
                "organization": {"login": org, "id": 1000 + account.orgs.index(org)},
            }
            for n, (org, slug) in enumerate(account.teams)
        ]
        return self._list(request, teams, scopes)


def start_standin(directory: Path) -> GitHubStandin:
    ca = TestCA(directory / "ca", "XenKeep test CA (GitHub stand-in)")
    standin = GitHubStandin(ca, ca.issue("github"), free_port())
    standin.start()
    return standin


@pytest.fixture(scope="session")
def github_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHubStandin]:
    """The GitHub stand-in on loopback (HTTPS, its own CA)."""
    standin = start_standin(tmp_path_factory.mktemp("github-standin"))
    try:
        yield standin
    finally:
        standin.stop()


__all__ = ["GitHubStandin", "OAuthApp", "github_standin"]
