"""SAML settings and IdP metadata, checked before anything is saved: each
bad value is refused naming its field, and metadata that could only fail
later (no certificate, no usable endpoint, expired, several IdPs, a DTD) is
refused with why."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.pki import KeyPair, self_signed
from xenkeep.auth.errors import ProviderConfigError
from xenkeep.auth.providers import catalog
from xenkeep.auth.providers.base import ProviderKind
from xenkeep.auth.providers.saml import NAMEID_TRANSIENT, SamlType
from xenkeep.auth.providers.saml_metadata import (
    MetadataError,
    parse_idp_metadata,
    pem_certificates,
)

REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return self_signed(tmp_path_factory.mktemp("keys"), "idp", "Test IdP")


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return self_signed(tmp_path_factory.mktemp("keys"), "other", "Some CA")


def entity(
    keys: KeyPair,
    entity_id: str = "https://idp.example.test/metadata",
    *,
    sso: str = "https://idp.example.test/sso",
    binding: str = REDIRECT,
    use: str | None = "signing",
    valid_until: str | None = None,
    certificate: str | None = None,
) -> str:
    use_attr = f' use="{use}"' if use else ""
    until = f' validUntil="{valid_until}"' if valid_until else ""
    cert = keys.cert_base64() if certificate is None else certificate
    return (
        f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}"{until}>'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"<md:KeyDescriptor{use_attr}><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}"
        "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        f'<md:SingleSignOnService Binding="{binding}" Location="{sso}"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def aggregate(*entities: str, valid_until: str | None = None) -> str:
    until = f' validUntil="{valid_until}"' if valid_until else ""
    return (
        f'<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"{until}>'
        + "".join(entities)
        + "</md:EntitiesDescriptor>"
    )


def clean(**values: str) -> dict[str, Any]:
    config, secrets = SamlType().clean(values, {})
    assert secrets == {}
    return config


def refused(field: str, **values: str) -> str:
    with pytest.raises(ProviderConfigError) as caught:
        SamlType().clean(values, {})
    assert caught.value.field == field, (caught.value.field, caught.value.message)
    return caught.value.message


def test_the_catalog_offers_saml() -> None:
    catalog.load()
    assert catalog.provider_type(ProviderKind.SAML).label == "SAML 2.0"


def test_pasted_metadata_is_read_and_the_defaults_apply(signing: KeyPair) -> None:
    config = clean(idp_metadata_xml="  \n" + entity(signing) + "\n")
    # Not named: the only IdP of the metadata, whichever it is after an edit.
    assert config["idp_entity_id"] == ""
    assert config["idp_metadata_url"] == ""
    assert config["nameid_format"] == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    assert config["attr_username"] == "uid, urn:oid:0.9.2342.19200300.100.1.1"
    assert config["attr_groups"].startswith("groups, ")
    assert config["clock_skew"] == 120


def test_a_metadata_address_with_a_pinned_ca(other: KeyPair) -> None:
    ca = other.cert_pem
    config = clean(
        idp_metadata_url="https://idp.example.test/saml2/idp/metadata.php", idp_metadata_ca=ca
    )
    assert config["idp_metadata_url"].startswith("https://")
    assert "BEGIN CERTIFICATE" in config["idp_metadata_ca"]


@pytest.mark.parametrize(
    ("field", "values", "words"),
    [
        ("idp_metadata_xml", {}, "paste its XML or give its https address"),
        ("idp_metadata_url", {"idp_metadata_url": "http://idp.example.test/md"}, "https"),
        ("idp_metadata_url", {"idp_metadata_url": "ftp://idp.example.test/md"}, "https"),
        ("idp_metadata_url", {"idp_metadata_url": "https://user:pw@idp.test/md"}, "user name"),
        ("idp_metadata_url", {"idp_metadata_url": "https:///md"}, "https://host"),
        ("idp_metadata_url", {"idp_metadata_url": "https://idp.test/\x00"}, "control"),
        ("idp_metadata_url", {"idp_metadata_url": "https://x/" + "a" * 2000}, "longer"),
        (
            "idp_metadata_ca",
            {"idp_metadata_url": "https://idp.test/md", "idp_metadata_ca": "not a cert"},
            "PEM certificates",
        ),
        ("idp_metadata_xml", {"idp_metadata_xml": "<nope"}, "not XML"),
        ("idp_metadata_xml", {"idp_metadata_xml": "<a>\x07</a>"}, "control"),
        ("idp_metadata_xml", {"idp_metadata_xml": "x" * (1024 * 1024 + 1)}, "longer"),
        ("idp_metadata_xml", {"idp_metadata_xml": "<html/>"}, "not SAML metadata"),
    ],
)
def test_bad_metadata_settings_are_refused_naming_the_field(
    field: str, values: dict[str, str], words: str
) -> None:
    assert words in refused(field, **values)


def test_metadata_pasted_and_an_address_both_is_refused(signing: KeyPair) -> None:
    message = refused(
        "idp_metadata_xml", idp_metadata_xml=entity(signing), idp_metadata_url="https://idp.test/"
    )
    assert "one of the two" in message


def test_a_ca_without_an_address_is_refused(signing: KeyPair, other: KeyPair) -> None:
    ca = other.cert_pem
    assert "address" in refused(
        "idp_metadata_ca", idp_metadata_xml=entity(signing), idp_metadata_ca=ca
    )


def test_a_dtd_and_entities_are_refused(signing: KeyPair) -> None:
    # The billion-laughs / external-entity shapes: never expanded.
    hostile = (
        '<?xml version="1.0"?><!DOCTYPE md [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + entity(signing).replace("Test IdP", "&x;")
    )
    assert "DTD" in refused("idp_metadata_xml", idp_metadata_xml=hostile)


def test_metadata_that_would_only_fail_later_is_refused(signing: KeyPair) -> None:
    cases = {
        "no signing certificate": entity(signing, use="encryption"),
        "no HTTP-Redirect": entity(signing, binding=POST),
        "is not https": entity(signing, sso="http://idp.example.test/sso"),
        "cannot be read": entity(signing, certificate="bm90IGEgY2VydA=="),
        "expired on 2001-01-01": entity(signing, valid_until="2001-01-01T00:00:00Z"),
        "is not a date": entity(signing, valid_until="soon"),
        "no SAML 2.0 identity provider": aggregate(),
    }
    for words, document in cases.items():
        message = refused("idp_metadata_xml", idp_metadata_xml=document)
        assert words in message, (words, message)


def test_an_aggregate_needs_the_idp_named(signing: KeyPair) -> None:
    two = aggregate(
        entity(signing, "https://one.test/idp", sso="https://one.test/sso"),
        entity(signing, "https://two.test/idp", sso="https://two.test/sso"),
    )
    assert "name the one to use" in refused("idp_metadata_xml", idp_metadata_xml=two)
    assert "no identity provider" in refused(
        "idp_metadata_xml", idp_metadata_xml=two, idp_entity_id="https://three.test/idp"
    )
    config = clean(idp_metadata_xml=two, idp_entity_id="https://two.test/idp")
    assert config["idp_entity_id"] == "https://two.test/idp"
    chosen = parse_idp_metadata(two, "https://two.test/idp")
    # Only the chosen IdP is given to the SAML library: no other entity of
    # the aggregate can vouch for an assertion.
    assert chosen.sso_url == "https://two.test/sso"
    assert "one.test" not in chosen.entity_xml


def test_an_aggregate_that_expired_is_refused(signing: KeyPair) -> None:
    old = aggregate(entity(signing), valid_until="2002-02-02T00:00:00Z")
    assert "expired on 2002-02-02" in refused("idp_metadata_xml", idp_metadata_xml=old)
    fine = parse_idp_metadata(aggregate(entity(signing), valid_until="2999-01-01T00:00:00.5Z"))
    assert fine.valid_until is not None


def test_certificate_facts_are_what_an_admin_compares(signing: KeyPair) -> None:
    idp = parse_idp_metadata(entity(signing))
    (facts,) = idp.certificate_facts()
    assert len(facts.sha256.split(":")) == 32
    assert facts.subject == "CN=Test IdP"
    assert "UTC" in facts.expiry_words(0.0) and "valid until" in facts.expiry_words(0.0)
    assert facts.expiry_words(facts.not_after + 1).startswith("expired on")


@pytest.mark.parametrize(
    ("field", "values", "words"),
    [
        ("sp_entity_id", {"sp_entity_id": "not a uri"}, "URI"),
        ("sp_entity_id", {"sp_entity_id": "noscheme"}, "URI"),
        ("idp_entity_id", {"idp_entity_id": "bad\x01id"}, "control"),
        ("nameid_format", {"nameid_format": "urn:made:up"}, "from the list"),
        ("subject_attribute", {"subject_attribute": "two words"}, "one attribute name"),
        ("subject_attribute", {"nameid_format": NAMEID_TRANSIENT}, "transient"),
        ("attr_email", {"attr_email": "mail, e mail"}, "not an attribute name"),
        ("attr_groups", {"attr_groups": ",".join(f"g{i}" for i in range(13))}, "at most 12"),
        ("attr_username", {"attr_username": "uid\x00"}, "control"),
        ("clock_skew", {"clock_skew": "-1"}, "0 to 600"),
        ("clock_skew", {"clock_skew": "601"}, "0 to 600"),
        ("clock_skew", {"clock_skew": "1e3"}, "0 to 600"),
    ],
)
def test_bad_sp_settings_are_refused_naming_the_field(
    signing: KeyPair, field: str, values: dict[str, str], words: str
) -> None:
    assert words in refused(field, idp_metadata_xml=entity(signing), **values)


def test_sp_settings_are_kept_as_given(signing: KeyPair) -> None:
    config = clean(
        idp_metadata_xml=entity(signing),
        sp_entity_id="urn:xenkeep:backup",
        nameid_format=NAMEID_TRANSIENT,
        subject_attribute="eduPersonPrincipalName",
        attr_username=" uid ,, urn:oid:0.9.2342.19200300.100.1.1 ",
        attr_groups="",
        clock_skew="0",
    )
    assert config["sp_entity_id"] == "urn:xenkeep:backup"
    assert config["subject_attribute"] == "eduPersonPrincipalName"
    assert config["attr_username"] == "uid, urn:oid:0.9.2342.19200300.100.1.1"
    assert config["attr_groups"] == ""
    assert config["clock_skew"] == 0


def test_no_setting_turns_signatures_off() -> None:
    names = {f.name for f in SamlType().fields}
    assert not {n for n in names if "sign" in n or "unsigned" in n or "insecure" in n}


def test_a_pem_bundle_is_every_certificate_or_refused(signing: KeyPair, other: KeyPair) -> None:
    one, two = signing.cert_pem, other.cert_pem
    assert len(pem_certificates(one + two)) == 2
    with pytest.raises(MetadataError):
        pem_certificates(one + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


_FIELD_NAMES = [f.name for f in SamlType().fields]


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(_FIELD_NAMES),
        st.one_of(
            st.text(max_size=300),
            st.sampled_from(["https://idp.test/md", "<md:EntityDescriptor/>", "600", "-0"]),
        ),
    )
)
def test_any_input_is_accepted_or_refused_naming_a_field(values: dict[str, str]) -> None:
    try:
        SamlType().clean(values, {})
    except ProviderConfigError as exc:
        assert exc.field in _FIELD_NAMES, exc.field
        assert exc.message
