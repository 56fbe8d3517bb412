"""An LDAP provider's settings: what the admin form accepts, and every
refusal naming its field."""

from __future__ import annotations

import subprocess

import pytest

from xenkeep.auth.errors import ProviderConfigError
from xenkeep.auth.providers.ldap.directory import _leading_cn
from xenkeep.auth.providers.ldap.settings import (
    FIELDS,
    LdapSettings,
    Security,
    ServerAddress,
    clean,
)


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA certificate made by openssl."""
    directory = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"),
            "-days", "2", "-subj", "/CN=Unit CA",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return (directory / "ca.pem").read_text()


def good(**overrides: str) -> dict[str, str]:
    values = {
        "servers": "ldaps://dc1.corp.example ldaps://dc2.corp.example:3269",
        "security": "ldaps",
        "bind_dn": "cn=xenkeep,ou=services,dc=corp,dc=example",
        "bind_password": "service secret",
        "base_dn": "ou=people,dc=corp,dc=example",
        "user_filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
        "group_source": "search",
        "group_filter": "(&(objectClass=groupOfNames)(member={dn}))",
    }
    values.update(overrides)
    return values


def refused(values: dict[str, str], stored: dict[str, str] | None = None) -> ProviderConfigError:
    with pytest.raises(ProviderConfigError) as caught:
        clean(values, stored or {})
    return caught.value


def test_good_settings_and_their_defaults() -> None:
    config, secrets = clean(good(), {})
    assert secrets == {"bind_password": "service secret"}
    assert "bind_password" not in config
    settings = LdapSettings.from_saved(config, secrets)
    assert settings.servers == (
        ServerAddress("ldaps", "dc1.corp.example", 636),
        ServerAddress("ldaps", "dc2.corp.example", 3269),
    )
    assert settings.verify_hostname and settings.timeout == 5
    assert settings.group_base_dn == "ou=people,dc=corp,dc=example"  # empty: the people's base
    assert "service secret" not in repr(settings)


def test_fields_left_out_have_their_defaults_and_empty_ones_stay_empty() -> None:
    config, _ = clean(good(), {})
    assert config["attr_username"] == "uid" and config["attr_subject"] == "entryUUID"
    assert config["security"] == "ldaps" and config["disabled_check"] == "none"
    assert config["enabled_filter"] == "(!(pwdAccountLockedTime=*))"
    assert not config["skip_hostname_check"] and not config["allow_insecure"]
    defaults = {f.name: f.default for f in FIELDS}
    assert clean({**defaults, **good()}, {})[0] == config
    config, _ = clean(good(attr_email="", attr_subject=""), {})
    assert config["attr_email"] == "" and config["attr_subject"] == ""


@pytest.mark.parametrize(
    ("servers", "security", "words"),
    [
        ("", "ldaps", "required"),
        ("http://dc1.corp.example", "ldaps", "ldaps://host or ldap://host"),
        ("ldaps://dc1.corp.example/dc=corp", "ldaps", "only scheme, host and port"),
        ("ldaps://dc1.corp.example?x", "ldaps", "only scheme, host and port"),
        ("ldaps://admin:pw@dc1.corp.example", "ldaps", "no user name or password"),
        ("ldaps://dc1.corp.example:99999", "ldaps", "not an address"),
        ("ldaps://dc1.corp.example:0", "ldaps", "1 to 65535"),
        ("ldaps://bad_host!", "ldaps", "not a host name"),
        ("ldap://dc1.corp.example", "ldaps", "LDAPS addresses start with ldaps://"),
        ("ldaps://dc1.corp.example", "starttls", "StartTLS the address starts with ldap://"),
        ("ldaps://a.example ldaps://a.example", "ldaps", "listed twice"),
        (" ".join(f"ldaps://dc{n}.example" for n in range(9)), "ldaps", "at most 8"),
        ("ldaps://dc1.corp.example\x1b[2J", "ldaps", "control characters"),
        ("ldaps://" + "a" * 1100, "ldaps", "at most 1024"),
    ],
)
def test_bad_servers(servers: str, security: str, words: str) -> None:
    error = refused(good(servers=servers, security=security))
    assert error.field == "servers" and words in error.message, error.message


def test_ipv6_and_ip_addresses() -> None:
    config, secrets = clean(good(servers="ldaps://[2001:db8::1]:636 ldaps://192.0.2.7"), {})
    settings = LdapSettings.from_saved(config, secrets)
    assert [s.url for s in settings.servers] == [
        "ldaps://[2001:db8::1]:636",
        "ldaps://192.0.2.7:636",
    ]


def test_no_tls_needs_the_explicit_choice() -> None:
    plain = good(servers="ldap://ldap.corp.example", security="none")
    error = refused(plain)
    assert error.field == "allow_insecure" and "readable" in error.message
    config, _ = clean({**plain, "allow_insecure": "on"}, {})
    assert config["security"] == "none"


def test_unknown_choices() -> None:
    for name in ("security", "group_source", "group_name", "disabled_check"):
        error = refused(good(**{name: "sideways"}))
        assert error.field == name and "is not one of" in error.message


def test_the_ca_must_be_pem_certificates(ca_pem: str) -> None:
    config, _ = clean(good(ca_pem=ca_pem + "\n" + ca_pem), {})
    assert config["ca_pem"].count("BEGIN CERTIFICATE") == 2
    for bad, words in (
        ("just some text", "not a PEM certificate"),
        (ca_pem + "\ntrailing words", "not a PEM certificate"),
        (
            "-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----",
            "never paste a private key",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----",
            "cannot be read",
        ),
        (ca_pem * 17, "at most 16"),
        ("\x00" + ca_pem, "control characters"),
    ):
        error = refused(good(ca_pem=bad))
        assert error.field == "ca_pem" and words in error.message, error.message


def test_the_service_password_is_kept_and_never_shown() -> None:
    stored = {"bind_password": "stored secret"}
    _, secrets = clean(good(bind_password=""), stored)
    assert secrets == stored  # left empty on an edit: kept
    _, secrets = clean(good(bind_password="new secret"), stored)
    assert secrets == {"bind_password": "new secret"}
    error = refused(good(bind_password=""))
    assert error.field == "bind_password" and "required" in error.message
    # Anonymous search: no password kept, and one typed alone is a mistake.
    _, secrets = clean(good(bind_dn="", bind_password=""), stored)
    assert secrets == {}
    assert refused(good(bind_dn="", bind_password="x")).field == "bind_dn"
    assert refused(good(bind_password="a\x00b")).field == "bind_password"
    assert refused(good(bind_password="x" * 600)).field == "bind_password"


@pytest.mark.parametrize("name", ["bind_dn", "base_dn", "group_base_dn"])
def test_bad_dns(name: str) -> None:
    for bad in ("not a dn", "cn=a,,dc=x", "cn=a\ndc=x"):
        error = refused(good(**{name: bad}))
        assert error.field == name, error.message
    assert refused(good(base_dn="")).field == "base_dn"


@pytest.mark.parametrize(
    ("name", "bad", "words"),
    [
        ("user_filter", "(uid=alice)", "must contain {username}"),
        ("user_filter", "uid={username}", "not an LDAP filter"),
        ("user_filter", "(&(uid={username})", "not an LDAP filter"),
        ("user_filter", "(uid={user})", "unknown placeholder {user}"),
        ("user_filter", "(&(uid={username})(cn={dn}))", "unknown placeholder {dn}"),
        ("user_filter", "", "required"),
        ("group_filter", "(objectClass=groupOfNames)", "must contain {dn} or {username}"),
        ("group_filter", "", "required when groups are searched"),
        ("enabled_filter", "(!(x={username}))", "none is filled in here"),
    ],
)
def test_bad_filters(name: str, bad: str, words: str) -> None:
    values = good(**{name: bad})
    if name == "enabled_filter":
        values["disabled_check"] = "filter"
    error = refused(values)
    assert error.field == name and words in error.message, error.message


def test_filters_only_when_used() -> None:
    config, _ = clean(good(group_source="memberof", group_filter=""), {})
    assert config["group_filter"] == ""
    error = refused(good(disabled_check="filter", enabled_filter=""))
    assert error.field == "enabled_filter"


@pytest.mark.parametrize(
    "name", ["attr_username", "attr_display_name", "attr_email", "attr_subject"]
)
def test_attribute_names(name: str) -> None:
    for bad in ("two words", "uid)", "*", "x" * 65):
        assert refused(good(**{name: bad})).field == name
    config, _ = clean(good(**{name: "1.2.840.113556.1.4.2"}), {})
    assert config[name] == "1.2.840.113556.1.4.2"


def test_timeout() -> None:
    for bad in ("0", "61", "-1", "5.5", "five"):
        assert refused(good(timeout=bad)).field == "timeout"
    assert clean(good(timeout="60"), {})[0]["timeout"] == 60


def test_a_saved_record_is_checked_again() -> None:
    config, secrets = clean(good(), {})
    with pytest.raises(ProviderConfigError):
        LdapSettings.from_saved({**config, "security": "starttls"}, secrets)
    assert Security("ldaps") is Security.LDAPS


def test_group_names_from_member_of() -> None:
    assert _leading_cn("CN=Backup Admins,OU=Groups,DC=corp,DC=example") == "Backup Admins"
    assert _leading_cn("cn=Smith\\, John (IT),ou=g,dc=x") == "Smith, John (IT)"
    assert _leading_cn("cn=Zo\\c3\\ab,ou=g,dc=x") == "Zoë"
    assert _leading_cn("ou=Admins,dc=x") == "ou=Admins,dc=x"
    assert _leading_cn("not a dn") == "not a dn"


def test_form_fields_name_their_kinds() -> None:
    names = [f.name for f in FIELDS]
    assert len(names) == len(set(names))
    assert {f.name for f in FIELDS if f.kind == "secret"} == {"bind_password"}
