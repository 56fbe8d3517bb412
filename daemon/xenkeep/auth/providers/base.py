"""The contract between the provider framework and one kind of provider.

A provider *type* (one per kind) describes its settings as fields, checks
what an administrator typed into them, and builds a *provider* from a saved
record. A provider signs a person in one of two ways:

- **password** (LDAP): the sign-in form's user name and password are handed
  to :meth:`PasswordProvider.authenticate`;
- **redirect** (OpenID Connect, GitHub, Google, SAML): :meth:`RedirectProvider.start`
  sends the browser to the identity provider with a one-time state, and the
  callback brings back what :meth:`RedirectProvider.finish` checks.

Either way the answer is an :class:`ExternalIdentity`: who the person is at
that provider. The framework, not the provider, turns it into an account.
Providers raise the errors of :mod:`xenkeep.auth.errors` (a rejected sign-in,
a provider that cannot be reached, a setting that does not fit).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal


class ProviderKind(StrEnum):
    """The kinds of sign-in provider (``auth_providers.kind``)."""

    LDAP = "ldap"
    OIDC = "oidc"
    GITHUB = "github"
    GOOGLE = "google"
    SAML = "saml"


class FlowStyle(StrEnum):
    """How a provider takes a person's credentials."""

    PASSWORD = "password"
    REDIRECT = "redirect"


FieldKind = Literal["text", "url", "secret", "textarea", "bool", "select", "number"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One setting of a provider type, as the admin form shows it.

    ``secret`` fields are stored encrypted, never shown back; left empty on
    an edit they keep the stored value.
    """

    name: str
    label: str
    kind: FieldKind = "text"
    required: bool = False
    help: str = ""
    default: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    # Longest accepted value (a PEM bundle or SAML metadata is long).
    max_length: int = 512


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """Who signed in, as the provider says.

    ``subject`` is the provider's stable identifier (an LDAP entry's UUID or
    DN, an OIDC ``sub``, a GitHub user id, a SAML NameID): never a name that
    can be given to someone else later. ``groups`` are the provider's group
    names (LDAP group DNs or names, a ``groups`` claim, GitHub ``org/team``),
    mapped to XenKeep groups by the administrator's mappings.
    """

    subject: str
    username: str
    display_name: str = ""
    email: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """A configured provider, as saved (secrets decrypted; never logged)."""

    id: int
    kind: ProviderKind
    name: str
    slug: str
    enabled: bool
    is_default: bool
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(repr=False)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def style(self) -> FlowStyle:
        """Password or redirect, by kind."""
        return FlowStyle.PASSWORD if self.kind is ProviderKind.LDAP else FlowStyle.REDIRECT


@dataclass(frozen=True, slots=True)
class ProviderEnv:
    """What a provider may need from the appliance.

    ``callback_url`` is the absolute URL the identity provider sends the
    browser back to (``https://<appliance>/auth/<slug>/callback``);
    ``metadata_url`` the SAML service provider's metadata
    (``/auth/<slug>/metadata``); ``state_dir`` a directory of this provider's
    own for files a library needs on disk (certificates, metadata).
    """

    callback_url: str
    metadata_url: str
    state_dir: Path


@dataclass(frozen=True, slots=True)
class CheckStep:
    """One line of a "test this configuration" answer."""

    label: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What testing a configuration found: each step, and the identity a
    given user resolved to (password providers, when a user was given)."""

    steps: tuple[CheckStep, ...]
    identity: ExternalIdentity | None = None

    @property
    def ok(self) -> bool:
        """True when every step passed."""
        return all(s.ok for s in self.steps)


@dataclass(frozen=True, slots=True)
class RedirectStart:
    """Where to send the browser, and what the callback must find again.

    ``flow_id`` is the value the callback carries back (an OIDC ``state``, a
    SAML ``RelayState``); ``flow_data`` (a nonce, a PKCE verifier, a SAML
    request id) is kept encrypted, server-side, until that callback, and is
    used once.
    """

    url: str
    flow_id: str
    flow_data: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Callback:
    """What came back to ``/auth/<slug>/callback``: query and form fields."""

    method: str
    params: Mapping[str, str]


class Provider(ABC):
    """A configured provider, ready to sign people in."""

    def __init__(self, record: ProviderRecord, env: ProviderEnv) -> None:
        self.record = record
        self.env = env

    @abstractmethod
    async def check(self, username: str = "", password: str = "") -> CheckResult:
        """Test the configuration (and, for a password provider given a
        user, look that user up and show what was found)."""

    def metadata(self) -> tuple[str, bytes] | None:
        """A document the provider publishes (SAML SP metadata): content
        type and body; None for kinds that have none."""
        return None


class PasswordProvider(Provider):
    """A provider that checks a user name and password itself (LDAP)."""

    @abstractmethod
    async def authenticate(self, username: str, password: str) -> ExternalIdentity:
        """The identity behind these credentials; CredentialsRejectedError
        when they are wrong or the account is disabled there,
        ProviderUnavailableError when the server cannot be reached."""


class RedirectProvider(Provider):
    """A provider the browser is sent to (OIDC, GitHub, Google, SAML)."""

    @abstractmethod
    async def start(self) -> RedirectStart:
        """Begin a sign-in: the identity provider's URL and the flow's state."""

    @abstractmethod
    def flow_id(self, callback: Callback) -> str:
        """The flow id a callback carries (``state``, ``RelayState``), or ''."""

    @abstractmethod
    async def finish(self, callback: Callback, flow_data: Mapping[str, str]) -> ExternalIdentity:
        """Check the callback against its flow and return the identity;
        CredentialsRejectedError for anything refused (an error from the
        identity provider, a bad signature, a replay), naming why."""

    def replay_key(self, callback: Callback) -> tuple[str, float] | None:
        """An id the identity provider put on this answer (an assertion ID,
        an ID token's ``jti``) and until when it is valid, so the framework
        refuses it a second time; None when there is none."""
        return None


class ProviderType(ABC):
    """One kind of provider: its settings and how to build it."""

    kind: ProviderKind
    #: Shown to the administrator ("LDAP / Active Directory").
    label: str
    fields: tuple[FieldSpec, ...]

    @abstractmethod
    def clean(
        self, values: Mapping[str, str], stored_secrets: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Check the form's values: (config without secrets, secrets).

        ``values`` holds the raw strings of :attr:`fields`; a secret left
        empty keeps ``stored_secrets``' value. Raises ProviderConfigError
        naming the field. Pure: no network (testing does that).
        """

    @abstractmethod
    def build(self, record: ProviderRecord, env: ProviderEnv) -> Provider:
        """A provider for a saved record."""
