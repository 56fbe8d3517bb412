"""Sign-in with OpenID Connect: any provider with discovery, and Google.

The flow is the authorization code flow with PKCE (S256), a one-time
``state`` and a ``nonce`` (:mod:`oauth`); the framework keeps the nonce and
the verifier server-side until the callback. The discovery document
(``<issuer>/.well-known/openid-configuration``) is fetched and kept for an
hour; its ``issuer`` must be exactly the configured one. The ID token is
checked by :mod:`idtoken`; the claims it lacks (a provider may keep the
profile for the userinfo endpoint) are read from userinfo, whose ``sub``
must be the token's. The person is ``<issuer> <sub>``: stable, and never a
name that can be given to someone else.

Google (kind ``google``) is the same with its issuer fixed, its claim names
(``email``, ``email_verified``, ``name``; no groups claim) and an optional
Google Workspace domain (``hd``). Its groups are its domain and its e-mail
domain, so ``example.com = Staff`` maps a whole organisation. Google's
servers cannot be reached from a test machine: :data:`TEST_GOOGLE_ISSUER_ENV`
points the preset at a local provider, for tests only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.common.security import generate_token

from xenkeep.auth.errors import (
    CredentialsRejectedError,
    ProviderConfigError,
    ProviderUnavailableError,
)
from xenkeep.auth.providers import idtoken, oauth
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

log = logging.getLogger(__name__)

GOOGLE_ISSUER = "https://accounts.google.com"
#: Google's ID tokens may name their issuer without the scheme.
GOOGLE_ISSUERS = (GOOGLE_ISSUER, "accounts.google.com")
#: Test hook: an issuer (and the PEM file of its CA) the Google preset uses
#: instead of Google's. Only the test suite sets them.
TEST_GOOGLE_ISSUER_ENV = "XENKEEP_TEST_GOOGLE_ISSUER"
TEST_GOOGLE_CA_ENV = "XENKEEP_TEST_GOOGLE_CA_FILE"

#: How long a discovery document and a key set are kept.
DISCOVERY_SECONDS = 3600
#: A key set is fetched again for an unknown key id at most this often.
KEYS_REFRESH_SECONDS = 60
NONCE = "nonce"
#: Most groups read from one person's claim (more are ignored).
MAX_GROUPS = 1000
MAX_GROUP = 512

_CLAIM = re.compile(r"^[A-Za-z0-9_.:/@-]{1,128}$")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")  # RFC 6749 3.3 scope-token
_CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
_CLAIM_HINT = "a claim name: letters, digits and _ . : / @ -"


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """One provider's settings, as :meth:`OidcType.clean` saved them."""

    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    username_claim: str
    display_name_claim: str
    email_claim: str
    groups_claim: str
    allowed_domains: tuple[str, ...]
    require_email_verified: bool
    ca_pem: str = ""
    #: A CA file to trust instead (the Google preset's test hook only).
    ca_file: str = ""
    #: Google: the Workspace domain a person must belong to ('' for any).
    hosted_domain: str = ""
    google: bool = False
    #: Issuer values an ID token may carry (Google has two spellings).
    token_issuers: tuple[str, ...] = ()

    @property
    def issuers(self) -> tuple[str, ...]:
        return self.token_issuers or (self.issuer,)


@dataclass(frozen=True, slots=True)
class Discovery:
    """What a discovery document says that the sign-in uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    client_auth: oauth.ClientAuth
    algorithms: tuple[str, ...]
    iss_parameter: bool
    fetched_at: float = field(default=0.0, compare=False)


def _https(doc: Mapping[str, Any], key: str, name: str, *, required: bool = True) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.startswith("https://") or len(value) > 2048:
        raise ProviderUnavailableError(
            f"{name}'s discovery document has no https:// {key}"
            + (f" (it says {printable(str(value), 100)!r})" if value is not None else "")
        )
    return value


def parse_discovery(doc: Any, settings: OidcSettings, name: str, now: float) -> Discovery:
    """The parts of a discovery document the flow needs, checked."""
    if not isinstance(doc, dict):
        raise ProviderUnavailableError(f"{name}'s discovery document is not a JSON object")
    issuer = doc.get("issuer")
    if issuer != settings.issuer:
        raise ProviderUnavailableError(
            f"{name}'s discovery document names the issuer "
            f"{printable(str(issuer), 200)!r}, not the configured {settings.issuer!r}",
            hint="set the issuer URL exactly as the provider names itself "
            "(a trailing slash matters)",
        )
    methods = doc.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    methods = methods if isinstance(methods, list) else []
    client_auth: oauth.ClientAuth
    if "client_secret_basic" in methods:
        client_auth = "client_secret_basic"
    elif "client_secret_post" in methods:
        client_auth = "client_secret_post"
    else:
        raise ProviderUnavailableError(
            f"{name} accepts neither client_secret_basic nor client_secret_post at its "
            "token endpoint, the ways XenKeep authenticates"
        )
    responses = doc.get("response_types_supported")
    if isinstance(responses, list) and "code" not in responses:
        raise ProviderUnavailableError(f"{name} does not offer the authorization code flow")
    challenges = doc.get("code_challenge_methods_supported")
    if isinstance(challenges, list) and "S256" not in challenges:
        raise ProviderUnavailableError(f"{name} does not support PKCE with S256")
    algs = doc.get("id_token_signing_alg_values_supported", ["RS256"])
    algorithms = tuple(a for a in algs if isinstance(a, str)) if isinstance(algs, list) else ()
    return Discovery(
        issuer=settings.issuer,
        authorization_endpoint=_https(doc, "authorization_endpoint", name),
        token_endpoint=_https(doc, "token_endpoint", name),
        jwks_uri=_https(doc, "jwks_uri", name),
        userinfo_endpoint=_https(doc, "userinfo_endpoint", name, required=False),
        client_auth=client_auth,
        algorithms=algorithms,
        iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
        fetched_at=now,
    )


def _verified(value: Any) -> bool:
    # Some providers send the boolean as a string.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    names = [printable(g, MAX_GROUP) for g in value if isinstance(g, str)]
    return tuple(dict.fromkeys(n for n in names if n))[:MAX_GROUPS]


def identity_of(claims: Mapping[str, Any], settings: OidcSettings, name: str) -> ExternalIdentity:
    """The person the verified claims describe, once the provider's rules
    (verified e-mail, allowed domains, Google Workspace domain) let them in."""
    sub = str(claims["sub"])
    email_value = claims.get(settings.email_claim)
    email = printable(email_value, 254) if isinstance(email_value, str) else ""
    verified = _verified(claims.get("email_verified"))
    domain = email.rpartition("@")[2].lower() if "@" in email else ""
    if settings.require_email_verified or settings.allowed_domains:
        if not email:
            raise CredentialsRejectedError(
                f"{name} gave no e-mail address for you, and this sign-in needs one",
                hint="an administrator may need to add the e-mail scope or claim",
            )
        if not verified:
            raise CredentialsRejectedError(
                f"your e-mail address at {name} ({email}) is not verified",
                hint=f"verify it at {name}, then sign in again",
            )
    if settings.allowed_domains and domain not in settings.allowed_domains:
        raise CredentialsRejectedError(
            f"{email} may not sign in here: its domain is not one this appliance accepts"
        )
    hosted = claims.get("hd")
    hosted_domain = hosted.lower() if isinstance(hosted, str) else ""
    if settings.hosted_domain and hosted_domain != settings.hosted_domain:
        raise CredentialsRejectedError(
            f"only accounts of {settings.hosted_domain} may sign in here with {name}",
            hint="choose that account at Google",
        )
    username_value = claims.get(settings.username_claim)
    username = printable(username_value, 128) if isinstance(username_value, str) else ""
    display = claims.get(settings.display_name_claim)
    if settings.google:
        groups = tuple(dict.fromkeys(d for d in (hosted_domain, domain if verified else "") if d))
    else:
        groups = _groups(claims.get(settings.groups_claim)) if settings.groups_claim else ()
    return ExternalIdentity(
        subject=f"{settings.issuer} {sub}",
        username=username or email or sub,
        display_name=printable(display, 128) if isinstance(display, str) else "",
        email=email if (verified or not settings.google) else "",
        groups=groups,
    )


class OidcProvider(RedirectProvider):
    """One configured OpenID Connect provider (generic or Google)."""

    def __init__(self, record: ProviderRecord, env: ProviderEnv, settings: OidcSettings) -> None:
        super().__init__(record, env)
        self.settings = settings
        self._http = IdpHttp(record.name, settings.ca_pem, ca_file=settings.ca_file)
        self._discovery: Discovery | None = None
        self._keys: list[dict[str, Any]] = []
        self._keys_at = 0.0
        self._lock = asyncio.Lock()
        # Replay ids of answers finish() accepted, by state, until the
        # framework asks for them (right after, in the same request).
        self._replays: OrderedDict[str, tuple[str, float]] = OrderedDict()

    # --- what the provider publishes ------------------------------------------

    async def discovery(self, *, fresh: bool = False) -> Discovery:
        """The discovery document (kept for :data:`DISCOVERY_SECONDS`)."""
        async with self._lock:
            now = time.time()
            cached = self._discovery
            if cached is not None and not fresh and now - cached.fetched_at < DISCOVERY_SECONDS:
                return cached
            url = self.settings.issuer + "/.well-known/openid-configuration"
            doc = await self._http.get_json(url, what="discovery document")
            self._discovery = parse_discovery(doc, self.settings, self.record.name, now)
            return self._discovery

    async def signing_keys(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        """The provider's published keys; ``refresh`` fetches them again
        (a key id not seen yet), at most once a minute."""
        found = await self.discovery()
        async with self._lock:
            now = time.time()
            stale = now - self._keys_at >= DISCOVERY_SECONDS
            if (
                self._keys
                and not stale
                and not (refresh and now - self._keys_at >= KEYS_REFRESH_SECONDS)
            ):
                return self._keys
            doc = await self._http.get_json(found.jwks_uri, what="key set")
            keys = doc.get("keys") if isinstance(doc, dict) else None
            if not isinstance(keys, list):
                raise ProviderUnavailableError(f"{self.record.name}'s key set has no keys")
            self._keys = [k for k in keys if isinstance(k, dict)]
            self._keys_at = now
            return self._keys

    # --- the flow --------------------------------------------------------------

    async def start(self) -> RedirectStart:
        found = await self.discovery()
        flow = oauth.new_flow()
        nonce = generate_token(43)
        params = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.env.callback_url,
            "scope": " ".join(self.settings.scopes),
            "state": flow.state,
            "nonce": nonce,
            "code_challenge": flow.challenge,
            "code_challenge_method": "S256",
        }
        if self.settings.hosted_domain:
            # A hint for Google's account chooser; the hd claim is what is checked.
            params["hd"] = self.settings.hosted_domain
        return RedirectStart(
            url=oauth.authorize_url(found.authorization_endpoint, params),
            flow_id=flow.state,
            flow_data={
                NONCE: nonce,
                oauth.VERIFIER: flow.verifier,
                oauth.REDIRECT_URI: self.env.callback_url,
            },
        )

    def flow_id(self, callback: Callback) -> str:
        return callback.params.get("state", "")

    async def finish(self, callback: Callback, flow_data: Mapping[str, str]) -> ExternalIdentity:
        name = self.record.name
        found = await self.discovery()
        code = oauth.callback_code(callback, name)
        # RFC 9207: the answer names who sent it, against mix-ups between providers.
        iss = callback.params.get("iss")
        if (iss is not None or found.iss_parameter) and iss not in self.settings.issuers:
            raise CredentialsRejectedError(
                f"the answer that came back is not from {name}'s issuer (iss "
                f"{printable(str(iss), 100)!r})"
            )
        tokens = await oauth.exchange_code(
            self._http,
            found.token_endpoint,
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            code=code,
            redirect_uri=flow_data[oauth.REDIRECT_URI],
            verifier=flow_data[oauth.VERIFIER],
            auth=found.client_auth,
        )
        token = tokens.get("id_token")
        if not isinstance(token, str) or not token:
            raise ProviderUnavailableError(
                f"{name} answered without an ID token",
                hint="the scopes must include openid",
            )
        claims = await self._verified_claims(token, flow_data[NONCE], tokens["access_token"])
        claims = await self._with_userinfo(claims, tokens["access_token"])
        identity = identity_of(claims, self.settings, name)
        self._remember_replay(callback, token, claims)
        return identity

    async def _verified_claims(self, token: str, nonce: str, access_token: str) -> dict[str, Any]:
        found = await self.discovery()
        expected = idtoken.Expected(
            issuers=self.settings.issuers,
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            nonce=nonce,
            algorithms=found.algorithms,
            access_token=access_token,
        )
        try:
            return idtoken.verify(token, await self.signing_keys(), expected, self.record.name)
        except idtoken.UnknownKeyError:
            # The provider may have rotated its keys since we fetched them.
            keys = await self.signing_keys(refresh=True)
            return idtoken.verify(token, keys, expected, self.record.name)

    def _wanted(self) -> tuple[str, ...]:
        s = self.settings
        wanted = [s.username_claim, s.display_name_claim, s.email_claim]
        if s.groups_claim:
            wanted.append(s.groups_claim)
        if s.require_email_verified or s.allowed_domains or s.google:
            wanted.append("email_verified")
        return tuple(wanted)

    async def _with_userinfo(self, claims: dict[str, Any], access_token: str) -> dict[str, Any]:
        """The token's claims, completed from userinfo when it lacks some."""
        found = await self.discovery()
        if not found.userinfo_endpoint or all(c in claims for c in self._wanted()):
            return claims
        info = await self._http.get_json(
            found.userinfo_endpoint,
            what="userinfo answer",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        if not isinstance(info, dict):
            raise ProviderUnavailableError(f"{self.record.name}'s userinfo answer is not an object")
        if info.get("sub") != claims["sub"]:
            raise CredentialsRejectedError(
                f"{self.record.name}'s userinfo answer is about someone else than its ID token"
            )
        # The signed token's claims win over the same names in userinfo.
        return {**info, **claims}

    def _remember_replay(self, callback: Callback, token: str, claims: Mapping[str, Any]) -> None:
        exp = claims.get("exp")
        until = float(exp) if isinstance(exp, int | float) else time.time() + 3600
        self._replays[self.flow_id(callback)] = (idtoken.replay_id(token, claims), until)
        while len(self._replays) > 1000:
            self._replays.popitem(last=False)

    def replay_key(self, callback: Callback) -> tuple[str, float] | None:
        return self._replays.pop(self.flow_id(callback), None)

    # --- testing the configuration ----------------------------------------------

    async def check(self, username: str = "", password: str = "") -> CheckResult:
        steps: list[CheckStep] = []
        try:
            found = await self.discovery(fresh=True)
        except ProviderUnavailableError as exc:
            steps.append(CheckStep("Discovery document", False, exc.with_hint))
            return CheckResult(tuple(steps))
        steps.append(
            CheckStep(
                "Discovery document",
                True,
                f"issuer {found.issuer}; sign-in at {found.authorization_endpoint}; "
                f"client authentication {found.client_auth}",
            )
        )
        try:
            self._keys_at = 0.0
            keys = await self.signing_keys()
        except ProviderUnavailableError as exc:
            steps.append(CheckStep("Signing keys", False, exc.with_hint))
        else:
            usable = [
                a for a in found.algorithms if a in idtoken.ASYMMETRIC or a in idtoken.SYMMETRIC
            ]
            steps.append(
                CheckStep(
                    "Signing keys",
                    bool(usable),
                    f"{len(keys)} published; ID token algorithms "
                    + (", ".join(usable) or "none usable"),
                )
            )
        steps += await oauth.client_steps(
            self._http,
            found.token_endpoint,
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            redirect_uri=self.env.callback_url,
            auth=found.client_auth,
            redirect_label="Redirect address",
        )
        return CheckResult(tuple(steps))


# --- the types ---------------------------------------------------------------------

_CA_FIELD = FieldSpec(
    "ca_pem",
    "Trusted CA certificates (PEM)",
    "textarea",
    help="Only for a provider whose certificate a private CA signed: its CA certificate(s). "
    "Then only these are trusted. Empty: the system's CAs.",
    max_length=64 * 1024,
)
_DOMAINS_FIELD = FieldSpec(
    "allowed_domains",
    "Allowed e-mail domains",
    help="Comma-separated, e.g. example.com, example.org. Empty: any. "
    "A person's e-mail must be verified and in one of them.",
    max_length=4096,
)


class OidcType(ProviderType):
    """Any OpenID Connect provider with discovery (Keycloak, Entra ID, Okta, Authentik...)."""

    kind = ProviderKind.OIDC
    label = "OpenID Connect"
    fields = (
        FieldSpec(
            "issuer",
            "Issuer URL",
            "url",
            required=True,
            help="Exactly as the provider names itself, e.g. https://sso.example.com/realms/corp; "
            "its /.well-known/openid-configuration is read from there.",
        ),
        *oauth.client_fields("As the provider shows it for the client you registered."),
        FieldSpec(
            "scopes",
            "Scopes",
            default="openid profile email",
            help="Space-separated; must include openid. Add groups if the provider needs it.",
        ),
        FieldSpec(
            "username_claim", "User name claim", default="preferred_username", max_length=128
        ),
        FieldSpec("display_name_claim", "Display name claim", default="name", max_length=128),
        FieldSpec("email_claim", "E-mail claim", default="email", max_length=128),
        FieldSpec(
            "groups_claim",
            "Groups claim",
            help="e.g. groups; empty: no groups are read. Map them below once saved.",
            max_length=128,
        ),
        _DOMAINS_FIELD,
        FieldSpec(
            "require_email_verified",
            "Require a verified e-mail address",
            "bool",
            help="Refuse people whose email_verified claim is not true.",
        ),
        _CA_FIELD,
    )

    def clean(
        self, values: Mapping[str, str], stored_secrets: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        form = FormReader(self.fields, values, stored_secrets)
        scopes = form.words("scopes", pattern=_SCOPE, hint="not a scope (no quotes, spaces or \\)")
        if "openid" not in scopes:
            raise ProviderConfigError("Scopes: must include openid", field="scopes")
        config: dict[str, Any] = {
            "issuer": form.https_url("issuer"),
            "client_id": form.text("client_id", pattern=_CLIENT_ID, hint="printable, no spaces"),
            "scopes": " ".join(scopes),
            "username_claim": form.text("username_claim", pattern=_CLAIM, hint=_CLAIM_HINT)
            or "preferred_username",
            "display_name_claim": form.text("display_name_claim", pattern=_CLAIM, hint=_CLAIM_HINT)
            or "name",
            "email_claim": form.text("email_claim", pattern=_CLAIM, hint=_CLAIM_HINT) or "email",
            "groups_claim": form.text("groups_claim", pattern=_CLAIM, hint=_CLAIM_HINT),
            "allowed_domains": " ".join(form.domains("allowed_domains")),
            "require_email_verified": form.flag("require_email_verified"),
            "ca_pem": form.ca_pem("ca_pem"),
        }
        return config, {"client_secret": form.secret("client_secret")}

    def build(self, record: ProviderRecord, env: ProviderEnv) -> OidcProvider:
        c = record.config
        settings = OidcSettings(
            issuer=str(c["issuer"]),
            client_id=str(c["client_id"]),
            client_secret=record.secrets.get("client_secret", ""),
            scopes=tuple(str(c.get("scopes", "openid")).split()),
            username_claim=str(c.get("username_claim") or "preferred_username"),
            display_name_claim=str(c.get("display_name_claim") or "name"),
            email_claim=str(c.get("email_claim") or "email"),
            groups_claim=str(c.get("groups_claim") or ""),
            allowed_domains=tuple(str(c.get("allowed_domains", "")).split()),
            require_email_verified=bool(c.get("require_email_verified")),
            ca_pem=str(c.get("ca_pem") or ""),
        )
        return OidcProvider(record, env, settings)


def google_endpoint() -> tuple[str, str]:
    """Google's issuer, or the test suite's stand-in for it and its CA file."""
    override = os.environ.get(TEST_GOOGLE_ISSUER_ENV, "")
    if override:
        log.warning("the Google preset uses %s instead of Google (test hook)", override)
        return override, os.environ.get(TEST_GOOGLE_CA_ENV, "")
    return GOOGLE_ISSUER, ""


class GoogleType(ProviderType):
    """Google accounts (Google Workspace or personal), through Google's OpenID Connect."""

    kind = ProviderKind.GOOGLE
    label = "Google"
    fields = (
        *oauth.client_fields(
            "From Google Cloud console, APIs & Services, Credentials: an OAuth client "
            "of type Web application."
        ),
        FieldSpec(
            "hosted_domain",
            "Google Workspace domain",
            help="e.g. example.com: only accounts of that Workspace may sign in. "
            "Empty: any Google account (then restrict the e-mail domains or rely on grants).",
            max_length=253,
        ),
        _DOMAINS_FIELD,
    )

    def clean(
        self, values: Mapping[str, str], stored_secrets: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        form = FormReader(self.fields, values, stored_secrets)
        hosted = form.domains("hosted_domain")
        if len(hosted) > 1:
            raise ProviderConfigError(
                "Google Workspace domain: only one domain", field="hosted_domain"
            )
        config: dict[str, Any] = {
            "client_id": form.text("client_id", pattern=_CLIENT_ID, hint="printable, no spaces"),
            "hosted_domain": hosted[0] if hosted else "",
            "allowed_domains": " ".join(form.domains("allowed_domains")),
        }
        return config, {"client_secret": form.secret("client_secret")}

    def build(self, record: ProviderRecord, env: ProviderEnv) -> OidcProvider:
        c = record.config
        issuer, ca_file = google_endpoint()
        settings = OidcSettings(
            issuer=issuer,
            client_id=str(c["client_id"]),
            client_secret=record.secrets.get("client_secret", ""),
            scopes=("openid", "email", "profile"),
            username_claim="email",
            display_name_claim="name",
            email_claim="email",
            groups_claim="",
            allowed_domains=tuple(str(c.get("allowed_domains", "")).split()),
            require_email_verified=True,
            ca_file=ca_file,
            hosted_domain=str(c.get("hosted_domain") or ""),
            google=True,
            token_issuers=GOOGLE_ISSUERS if issuer == GOOGLE_ISSUER else (issuer,),
        )
        return OidcProvider(record, env, settings)


TYPES: Mapping[ProviderKind, ProviderType] = {
    ProviderKind.OIDC: OidcType(),
    ProviderKind.GOOGLE: GoogleType(),
}
