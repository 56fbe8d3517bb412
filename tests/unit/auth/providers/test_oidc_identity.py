"""Who verified claims describe, under a provider's rules (pure)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from xenkeep.auth.errors import CredentialsRejectedError, ProviderUnavailableError
from xenkeep.auth.providers.oidc import OidcSettings, identity_of, parse_discovery

GENERIC = OidcSettings(
    issuer="https://sso.example.com",
    client_id="xenkeep",
    client_secret="s",
    scopes=("openid",),
    username_claim="preferred_username",
    display_name_claim="name",
    email_claim="email",
    groups_claim="groups",
    allowed_domains=(),
    require_email_verified=False,
)
GOOGLE = replace(
    GENERIC,
    issuer="https://accounts.google.com",
    username_claim="email",
    groups_claim="",
    require_email_verified=True,
    google=True,
)


def test_the_subject_is_issuer_and_sub_and_groups_are_cleaned() -> None:
    found = identity_of(
        {
            "sub": "u-1",
            "preferred_username": "alice",
            "name": "Alice\x00 Liddell",
            "groups": ["ops", "ops", 7, "", "a\u202eb", "x" * 600],
        },
        GENERIC,
        "Corp",
    )
    assert found.subject == "https://sso.example.com u-1"
    assert found.username == "alice" and found.display_name == "Alice Liddell"
    assert found.groups == ("ops", "ab", "x" * 512)
    assert identity_of({"sub": "u", "groups": "one"}, GENERIC, "Corp").groups == ("one",)
    assert identity_of({"sub": "u", "groups": {"a": 1}}, GENERIC, "Corp").groups == ()
    # No user name claim: the e-mail, else the subject.
    assert (
        identity_of({"sub": "u", "email": "a@b.example"}, GENERIC, "Corp").username == "a@b.example"
    )
    assert identity_of({"sub": "u"}, GENERIC, "Corp").username == "u"


@pytest.mark.parametrize("verified", [True, "true", "TRUE"])
def test_verified_as_a_boolean_or_a_string(verified: Any) -> None:
    settings = replace(GENERIC, require_email_verified=True)
    found = identity_of(
        {"sub": "u", "email": "a@example.com", "email_verified": verified}, settings, "Corp"
    )
    assert found.email == "a@example.com"


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"sub": "u"}, "gave no e-mail address"),
        ({"sub": "u", "email": "a@example.com", "email_verified": False}, "is not verified"),
        ({"sub": "u", "email": "a@example.com", "email_verified": "yes"}, "is not verified"),
        ({"sub": "u", "email": "a@evil.example", "email_verified": True}, "its domain is not"),
        ({"sub": "u", "email": "a@sub.example.com", "email_verified": True}, "its domain is not"),
    ],
)
def test_e_mail_rules(claims: dict[str, Any], words: str) -> None:
    settings = replace(GENERIC, allowed_domains=("example.com",))
    with pytest.raises(CredentialsRejectedError, match=words):
        identity_of(claims, settings, "Corp")


def test_google_groups_are_its_domains() -> None:
    claims = {"sub": "1", "email": "carol@example.com", "email_verified": True, "hd": "Example.com"}
    found = identity_of(claims, GOOGLE, "Google")
    assert found.username == "carol@example.com" and found.groups == ("example.com",)
    found = identity_of({**claims, "email": "carol@alias.example"}, GOOGLE, "Google")
    assert found.groups == ("example.com", "alias.example")
    with pytest.raises(CredentialsRejectedError, match=r"only accounts of corp\.example"):
        identity_of(claims, replace(GOOGLE, hosted_domain="corp.example"), "Google")
    with pytest.raises(CredentialsRejectedError, match=r"only accounts of example\.com"):
        identity_of(
            {k: v for k, v in claims.items() if k != "hd"},
            replace(GOOGLE, hosted_domain="example.com"),
            "Google",
        )


def discovery(**changes: Any) -> dict[str, Any]:
    doc = {
        "issuer": "https://sso.example.com",
        "authorization_endpoint": "https://sso.example.com/auth",
        "token_endpoint": "https://sso.example.com/token",
        "jwks_uri": "https://sso.example.com/jwks",
    }
    return {k: v for k, v in {**doc, **changes}.items() if v is not None}


def test_discovery_defaults() -> None:
    found = parse_discovery(discovery(), GENERIC, "Corp", 0.0)
    assert found.client_auth == "client_secret_basic" and found.algorithms == ("RS256",)
    assert found.userinfo_endpoint == "" and found.iss_parameter is False
    found = parse_discovery(
        discovery(token_endpoint_auth_methods_supported=["client_secret_post"]),
        GENERIC,
        "Corp",
        0.0,
    )
    assert found.client_auth == "client_secret_post"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"issuer": "https://sso.example.com/"}, "not the configured"),
        ({"issuer": None}, "not the configured"),
        ({"jwks_uri": None}, "no https:// jwks_uri"),
        (
            {"authorization_endpoint": "http://sso.example.com/auth"},
            "no https:// authorization_endpoint",
        ),
        (
            {"token_endpoint_auth_methods_supported": ["private_key_jwt"]},
            "neither client_secret_basic",
        ),
        ({"response_types_supported": ["id_token"]}, "authorization code flow"),
        ({"code_challenge_methods_supported": ["plain"]}, "PKCE with S256"),
    ],
)
def test_discovery_refusals(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(ProviderUnavailableError, match=words):
        parse_discovery(discovery(**changes), GENERIC, "Corp", 0.0)
