"""What an administrator types into the OpenID Connect, Google and GitHub
forms: checked without the network, every refusal naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.testca import TestCA
from xenkeep.auth.errors import ProviderConfigError
from xenkeep.auth.providers import oidc
from xenkeep.auth.providers.base import ProviderEnv, ProviderKind, ProviderRecord, ProviderType
from xenkeep.auth.providers.github import GitHubType
from xenkeep.auth.providers.oidc import GoogleType, OidcType

OIDC_OK = {
    "issuer": "https://sso.example.com/realms/corp",
    "client_id": "xenkeep",
    "client_secret": "s3cret-value",
}
GOOGLE_OK = {"client_id": "1234.apps.googleusercontent.com", "client_secret": "GOCSPX-abc"}
GITHUB_OK = {"client_id": "Ov23liABCDEF", "client_secret": "f" * 40}


def refused(
    ptype: ProviderType, values: dict[str, str], stored: dict[str, str] | None = None
) -> ProviderConfigError:
    with pytest.raises(ProviderConfigError) as caught:
        ptype.clean(values, stored or {})
    return caught.value


def test_generic_oidc_defaults() -> None:
    config, secrets = OidcType().clean(OIDC_OK, {})
    assert config["issuer"] == "https://sso.example.com/realms/corp"
    assert config["scopes"] == "openid profile email"
    assert config["username_claim"] == "preferred_username"
    assert config["email_claim"] == "email" and config["groups_claim"] == ""
    assert config["require_email_verified"] is False and config["ca_pem"] == ""
    assert secrets == {"client_secret": "s3cret-value"}
    assert "s3cret" not in str(config)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("issuer", "", "required"),
        ("issuer", "http://sso.example.com", "https://"),
        ("issuer", "ftp://sso.example.com", "https://"),
        ("issuer", "https://", "host name"),
        ("issuer", "https://user:pw@sso.example.com", "no user name"),
        ("issuer", "https://sso.example.com/?tenant=1", "without ?query"),
        ("issuer", "https://sso.example.com:99999", "not a valid"),
        ("issuer", "https://sso.example.com/\x00", "control characters"),
        ("issuer", "https://" + "a" * 600 + ".example", "at most 512"),
        ("client_id", "", "required"),
        ("client_id", "two words", "printable, no spaces"),
        ("client_id", "x\u202e", "control characters"),
        ("client_secret", "", "required"),
        ("client_secret", "line\nbreak", "control characters"),
        ("client_secret", "x" * 2000, "at most 1024"),
        ("scopes", "profile email", "must include openid"),
        ("scopes", 'openid "quoted"', "not a scope"),
        ("username_claim", "user name", "a claim name"),
        ("groups_claim", "groups\r\n", "control characters"),
        ("allowed_domains", "example.com, not a domain", "not a domain name"),
        ("allowed_domains", "example.com\x1b[31m", "control characters"),
        ("ca_pem", "not a certificate", "paste PEM certificates"),
        (
            "ca_pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "cannot be read",
        ),
        ("ca_pem", "x" * 70_000, "at most 65536"),
    ],
)
def test_generic_oidc_refusals_name_the_field(field: str, value: str, words: str) -> None:
    error = refused(OidcType(), {**OIDC_OK, field: value})
    assert error.field == field
    assert words in error.message, error.message


def test_a_secret_left_empty_keeps_the_stored_one() -> None:
    _, secrets = OidcType().clean({**OIDC_OK, "client_secret": ""}, {"client_secret": "kept"})
    assert secrets == {"client_secret": "kept"}


def test_a_pinned_ca_is_kept_as_its_certificates(tmp_path: Any) -> None:
    ca = TestCA(tmp_path)
    messy = "\r\n".join(["some text before", ca.ca_pem.replace("\n", "\r\n"), "after"])
    config, _ = OidcType().clean({**OIDC_OK, "ca_pem": messy}, {})
    assert config["ca_pem"] == ca.ca_pem


def test_domains_are_lower_cased_and_deduplicated() -> None:
    config, _ = OidcType().clean(
        {**OIDC_OK, "allowed_domains": "Example.COM @example.com,corp.example"}, {}
    )
    assert config["allowed_domains"] == "example.com corp.example"


def record(kind: ProviderKind, config: dict[str, Any], secrets: dict[str, str]) -> ProviderRecord:
    return ProviderRecord(1, kind, "X", "x", True, False, config, secrets)


def env(tmp_path: Any) -> ProviderEnv:
    return ProviderEnv(
        "https://keep.example/auth/x/callback", "https://keep.example/auth/x/metadata", tmp_path
    )


def test_google_has_its_issuer_and_claims_fixed(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(oidc.TEST_GOOGLE_ISSUER_ENV, raising=False)
    config, secrets = GoogleType().clean({**GOOGLE_OK, "hosted_domain": "Example.com"}, {})
    assert config == {
        "client_id": "1234.apps.googleusercontent.com",
        "hosted_domain": "example.com",
        "allowed_domains": "",
    }
    built = GoogleType().build(record(ProviderKind.GOOGLE, config, secrets), env(tmp_path))
    s = built.settings
    assert s.issuer == "https://accounts.google.com"
    assert s.issuers == ("https://accounts.google.com", "accounts.google.com")
    assert (s.username_claim, s.email_claim, s.display_name_claim) == ("email", "email", "name")
    assert s.groups_claim == "" and s.require_email_verified and s.google
    assert s.scopes == ("openid", "email", "profile") and s.ca_file == ""


def test_the_google_test_hook_points_elsewhere(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(oidc.TEST_GOOGLE_ISSUER_ENV, "https://127.0.0.1:8443")
    monkeypatch.setenv(oidc.TEST_GOOGLE_CA_ENV, "/tmp/ca.pem")
    config, secrets = GoogleType().clean(GOOGLE_OK, {})
    s = GoogleType().build(record(ProviderKind.GOOGLE, config, secrets), env(tmp_path)).settings
    assert s.issuer == "https://127.0.0.1:8443" and s.issuers == ("https://127.0.0.1:8443",)
    assert s.ca_file == "/tmp/ca.pem"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("client_id", "", "required"),
        ("client_secret", "", "required"),
        ("hosted_domain", "example.com other.com", "only one domain"),
        ("hosted_domain", "not_a_domain", "not a domain name"),
        ("allowed_domains", "x" * 5000, "at most 4096"),
    ],
)
def test_google_refusals_name_the_field(field: str, value: str, words: str) -> None:
    error = refused(GoogleType(), {**GOOGLE_OK, field: value})
    assert error.field == field and words in error.message, error.message


def test_github_defaults_and_enterprise(tmp_path: Any) -> None:
    config, secrets = GitHubType().clean({**GITHUB_OK, "allowed_orgs": "Acme, widgets"}, {})
    assert config["web_url"] == "https://github.com" and config["api_url"] == ""
    assert config["allowed_orgs"] == "acme widgets" and config["teams_as_groups"] is False
    s = GitHubType().build(record(ProviderKind.GITHUB, config, secrets), env(tmp_path)).settings
    assert s.api_url == "https://api.github.com"
    assert s.scopes == ("read:user", "user:email", "read:org")
    config, secrets = GitHubType().clean({**GITHUB_OK, "web_url": "https://ghe.example.com/"}, {})
    s = GitHubType().build(record(ProviderKind.GITHUB, config, secrets), env(tmp_path)).settings
    assert (s.web_url, s.api_url) == ("https://ghe.example.com", "https://ghe.example.com/api/v3")
    assert s.scopes == ("read:user", "user:email")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("client_id", "", "required"),
        ("client_id", "with space", "letters, digits"),
        ("client_secret", "", "required"),
        ("allowed_orgs", "acme, -bad-", "not an organisation login"),
        ("allowed_orgs", "acme,evil\x00", "control characters"),
        ("web_url", "http://github.example.com", "https://"),
        ("api_url", "javascript:alert(1)", "https://"),
        ("ca_pem", "-----BEGIN CERTIFICATE-----", "paste PEM"),
    ],
)
def test_github_refusals_name_the_field(field: str, value: str, words: str) -> None:
    error = refused(GitHubType(), {**GITHUB_OK, field: value})
    assert error.field == field and words in error.message, error.message
