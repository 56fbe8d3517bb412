"""Sign-in with SAML 2.0 through the daemon's real routes against a real IdP
(SimpleSAMLphp on loopback): the account it makes, group sync, the shapes
of answer IdPs send (response signed, assertion encrypted, urn:oid names,
transient NameIDs), metadata fetched over https with a pinned CA, the SP
metadata, "test this configuration", and what is never shown or logged."""

from __future__ import annotations

import base64
import logging
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.browser.ui import free_port
from tests.integration.auth.providers.saml_flow import (
    NAME,
    SLUG,
    Saml,
    answer,
    begin,
    person,
    post,
    refused_in_another_browser,
    saml,
    shown_error,
    signed_in_as,
)
from tests.support.idp_saml import (
    ENCRYPT_ASSERTION,
    OID_ATTRIBUTE_NAMES,
    SIGN_RESPONSE_ONLY,
    USER,
    IdpRefused,
    IdpSession,
    SamlIdp,
)
from tests.support.pki import loopback_ca
from tests.support.web import Browser, complete_setup
from xenkeep.config import Settings

__all__ = ["person", "saml"]  # fixtures

pytestmark = pytest.mark.slow


def fingerprint(pem: str) -> str:
    digest = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


async def test_sign_in_makes_an_account_without_rights_and_finds_it_again(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    status, page = await post(person, await answer(person, idp_session))
    assert status == 200, page
    assert 'id="continue"' in page
    assert await signed_in_as(person) == "alice"
    (account,) = await saml.accounts()
    assert account["username"] == "alice"
    assert account["display_name"] == "Alice Liddell"
    assert account["email"] == "alice@example.test"
    assert account["role"] == "user"
    # The subject is the IdP's persistent NameID (opaque), not the name.
    assert re.fullmatch(r"[0-9a-f]{40}", account["external_id"]), account["external_id"]

    # Again, from another browser: the same account, found by its NameID.
    other = Browser(saml.server)
    again = IdpSession(saml.idp)
    try:
        status, page = await post(other, await answer(other, again))
        assert status == 200, page
        assert await signed_in_as(other) == "alice"
    finally:
        await other.close()
        await again.close()
    assert [a["id"] for a in await saml.accounts()] == [account["id"]]

    status, body = await saml.admin.api("GET", "/api/v1/audit?limit=50")
    events = [e["event"] for e in body["entries"]]
    assert events.count("provider_sign_in") == 2
    assert events.count("user_created") == 1


async def test_the_next_page_survives_the_round_trip(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    url = await begin(person, next_path="/account")
    status, page = await post(person, await idp_session.sign_in(url, "bob", USER["bob"].password))
    assert status == 200
    assert 'href="/account"' in page
    # Off-site targets are not kept (open redirect).
    url = await begin(person, next_path="https://evil.example/")
    status, page = await post(person, await idp_session.sign_in(url, "bob", USER["bob"].password))
    assert status == 200 and "evil.example" not in page


async def test_groups_are_synced_through_the_mappings(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    await saml.sql("INSERT INTO groups (name, created_at) VALUES ('Operators', 0), ('Everyone', 0)")
    groups = {g["name"]: g["id"] for g in await saml.sql("SELECT id, name FROM groups")}
    status, page, _ = await saml.admin.post_form(
        f"/admin/providers/{saml.provider['id']}/mappings",
        {"mappings": "backup-operators = Operators\nstaff = Everyone\n"},
    )
    assert status == 303, page
    for username in ("alice", "bob"):
        tab = IdpSession(saml.idp)
        try:
            status, _ = await post(person, await answer(person, tab, username))
            assert status == 200
        finally:
            await tab.close()
    members = await saml.sql(
        "SELECT u.username, m.group_id, m.source FROM group_members m "
        "JOIN users u ON u.id = m.user_id ORDER BY u.username, m.group_id"
    )
    assert members == [
        {"username": "alice", "group_id": groups["Operators"], "source": "provider"},
        {"username": "alice", "group_id": groups["Everyone"], "source": "provider"},
        {"username": "bob", "group_id": groups["Everyone"], "source": "provider"},
    ]


@pytest.mark.parametrize(
    "options",
    [SIGN_RESPONSE_ONLY, ENCRYPT_ASSERTION, {**ENCRYPT_ASSERTION, **SIGN_RESPONSE_ONLY}],
    ids=["response-signed", "assertion-encrypted", "encrypted-in-signed-response"],
)
async def test_answers_of_other_shapes_are_accepted(
    saml: Saml, person: Browser, idp_session: IdpSession, options: dict[str, object]
) -> None:
    await saml.register(**options)
    posted = await answer(person, idp_session)
    document = posted.saml_response
    status, page = await post(person, posted)
    assert status == 200, page
    assert await signed_in_as(person) == "alice"
    if "assertion.encryption" in options:
        assert b"EncryptedAssertion" in base64.b64decode(document)


async def test_urn_oid_attribute_names_resolve(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    await saml.register(**OID_ATTRIBUTE_NAMES)
    posted = await answer(person, idp_session)
    assert b"urn:oid:0.9.2342.19200300.100.1.3" in base64.b64decode(posted.saml_response)
    status, page = await post(person, posted)
    assert status == 200, page
    (account,) = await saml.accounts()
    assert (account["username"], account["email"], account["display_name"]) == (
        "alice",
        "alice@example.test",
        "Alice Liddell",
    )


async def test_a_transient_nameid_with_an_identifier_attribute(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    transient = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
    await saml.change(nameid_format=transient, subject_attribute="uid")
    await saml.register(NameIDFormat=transient)
    for _ in range(2):
        tab = IdpSession(saml.idp)
        try:
            status, page = await post(person, await answer(person, tab))
            assert status == 200, page
        finally:
            await tab.close()
    (account,) = await saml.accounts()
    assert account["external_id"] == "alice"


async def test_a_transient_nameid_alone_identifies_nobody(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    # The SP asks for persistent ids; an IdP that sends transient ones anyway
    # would make a new account at every sign-in.
    await saml.change(nameid_format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified")
    await saml.register(NameIDFormat="urn:oasis:names:tc:SAML:2.0:nameid-format:transient")
    status, page = await post(person, await answer(person, idp_session))
    assert status == 401
    assert "transient NameID" in shown_error(page)
    assert await saml.accounts() == []


async def test_a_wrong_password_at_the_idp_brings_nobody_back(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    with pytest.raises(IdpRefused):
        await idp_session.sign_in(await begin(person), "alice", "not her password")
    assert await saml.accounts() == []
    assert await signed_in_as(person) is None


async def test_an_account_disabled_here_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    status, _ = await post(person, await answer(person, idp_session))
    assert status == 200
    await saml.sql("UPDATE users SET disabled = 1 WHERE provider_id = ?", (saml.provider["id"],))
    await refused_in_another_browser(saml, await answer(person, idp_session), "disabled")


async def test_a_disabled_provider_offers_no_sign_in(saml: Saml, person: Browser) -> None:
    await saml.change(enabled=False)
    status, text, _ = await person.get(f"/auth/{SLUG}/start")
    assert status == 404, text
    status, text, _ = await person.get("/login")
    assert NAME not in text


async def test_the_sp_metadata(saml: Saml, person: Browser, tmp_path: Path) -> None:
    status, text, resp = await person.get(f"/auth/{SLUG}/metadata")
    assert status == 200
    assert resp.headers["Content-Type"].startswith("application/samlmetadata+xml")
    assert f'entityID="{saml.entity_id}"' in text
    callback = f"{saml.server.url.rstrip('/')}/auth/{SLUG}/callback"
    assert f'Location="{callback}"' in text
    assert "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" in text
    assert 'WantAssertionsSigned="true"' in text and 'AuthnRequestsSigned="true"' in text
    assert "md5" not in text.lower()
    state = saml.settings.state_dir / "auth" / SLUG
    cert = (state / "sp-cert.pem").read_text()
    assert "".join(cert.strip().splitlines()[1:-1]) in "".join(text.split())
    key = state / "sp-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    private = key.read_text()
    assert "PRIVATE KEY" in private and "PRIVATE KEY" not in text
    # The same key pair, however often the metadata is asked for, and after
    # a change of settings (the IdP keeps trusting it).
    await saml.change(clock_skew=30)
    _, again, _ = await person.get(f"/auth/{SLUG}/metadata")
    assert again == text
    assert key.read_text() == private


async def test_an_sp_entity_id_of_ones_own(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    await saml.change(sp_entity_id="urn:xenkeep:test:backup")
    assert 'entityID="urn:xenkeep:test:backup"' in await saml.sp_metadata()
    await saml.register()
    status, page = await post(person, await answer(person, idp_session))
    assert status == 200, page


async def test_check_through_the_api_and_the_admin_page(saml: Saml) -> None:
    status, body = await saml.admin.api(
        "POST", f"/api/v1/auth/providers/{saml.provider['id']}/test", {}
    )
    assert status == 200, body
    assert body["ok"] is True, body
    steps = {s["label"]: s for s in body["steps"]}
    assert steps["IdP metadata"]["detail"] == "pasted in the settings"
    assert saml.idp.entity_id in steps["Identity provider"]["detail"]
    assert saml.idp.sso_url in steps["Identity provider"]["detail"]
    cert_detail = steps["IdP signing certificate"]["detail"]
    assert fingerprint(saml.idp.signing.cert_pem) in cert_detail
    assert "valid until" in cert_detail and "UTC" in cert_detail
    assert saml.entity_id in steps["This appliance's SP metadata"]["detail"]

    status, page, _ = await saml.admin.post_form(f"/admin/providers/{saml.provider['id']}/test", {})
    assert status == 200
    assert 'id="provider-check" data-ok="true"' in page
    assert fingerprint(saml.idp.signing.cert_pem) in page
    status, body = await saml.admin.api("GET", "/api/v1/audit?limit=20")
    assert [e for e in body["entries"] if e["event"] == "provider_tested"]


async def test_metadata_fetched_over_https_with_a_pinned_ca(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    await saml.change(
        idp_metadata_xml="",
        idp_metadata_url=saml.idp.metadata_url,
        idp_metadata_ca=saml.idp.tls.ca.cert_pem,
    )
    status, body = await saml.admin.api(
        "POST", f"/api/v1/auth/providers/{saml.provider['id']}/test", {}
    )
    assert body["ok"] is True, body
    assert body["steps"][0]["detail"].startswith(f"fetched from {saml.idp.metadata_url}")
    status, page = await post(person, await answer(person, idp_session))
    assert status == 200, page
    copies = list((saml.settings.state_dir / "auth" / SLUG).glob("idp-metadata-*.xml"))
    assert len(copies) == 1 and saml.idp.entity_id in copies[0].read_text()


async def test_metadata_from_an_address_with_another_ca_is_refused(
    saml: Saml, person: Browser, tmp_path: Path
) -> None:
    wrong = loopback_ca(tmp_path, "wrong").ca.cert_pem
    await saml.change(
        idp_metadata_xml="", idp_metadata_url=saml.idp.metadata_url, idp_metadata_ca=wrong
    )
    status, body = await saml.admin.api(
        "POST", f"/api/v1/auth/providers/{saml.provider['id']}/test", {}
    )
    assert body["ok"] is False
    assert "is not trusted" in body["steps"][0]["detail"], body
    status, text, _ = await person.get(f"/auth/{SLUG}/start")
    assert status == 503, text
    assert "cannot be had" in text and "not trusted" in text
    assert await saml.sql("SELECT count(*) AS n FROM auth_flows") == [{"n": 0}]


async def test_a_metadata_address_that_is_down(saml: Saml, person: Browser) -> None:
    await saml.change(
        idp_metadata_xml="", idp_metadata_url=f"https://127.0.0.1:{free_port()}/metadata"
    )
    status, body = await saml.admin.api(
        "POST", f"/api/v1/auth/providers/{saml.provider['id']}/test", {}
    )
    assert body["ok"] is False and "cannot fetch" in body["steps"][0]["detail"], body
    status, text, _ = await person.get(f"/auth/{SLUG}/start")
    assert status == 503 and "cannot fetch" in text


async def test_nothing_secret_is_shown_or_logged(
    saml: Saml, person: Browser, idp_session: IdpSession, caplog: pytest.LogCaptureFixture
) -> None:
    # What the daemon logs (at INFO; its own code at DEBUG too). pysaml2's
    # logger keeps the level the provider gives it.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="xenkeep")
    posted = await answer(person, idp_session)
    status, _ = await post(person, posted)
    assert status == 200
    status, _ = await post(person, posted)  # a replay, refused: logged too
    private = (saml.settings.state_dir / "auth" / SLUG / "sp-key.pem").read_text()
    key_body = "".join(private.strip().splitlines()[1:-1])[:64]
    status, api_text, _ = await saml.admin.get(f"/api/v1/auth/providers/{saml.provider['id']}")
    status, page, _ = await saml.admin.get(f"/admin/providers/{saml.provider['id']}")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (api_text, page, logged):
        assert key_body not in text
        assert "PRIVATE KEY" not in text
    assert posted.saml_response[:200] not in logged
    assert USER["alice"].password not in logged
    assert "Alice Liddell" not in logged


async def test_a_provider_made_in_the_admin_form(
    saml_idp: SamlIdp, browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings, username="root-admin")
    status, page, _ = await browser.get("/admin/providers/new?kind=saml")
    assert status == 200
    assert 'type="file" id="f-idp_metadata_xml-file"' in page
    status, page, resp = await browser.post_form(
        "/admin/providers",
        {"kind": "saml", "name": "Form SSO", "idp_metadata_xml": saml_idp.metadata_xml()},
    )
    assert status == 303, page
    status, page, _ = await browser.get(resp.headers["Location"])
    assert "/auth/form-sso/metadata" in page and "/auth/form-sso/callback" in page
    # Bad input comes back on the form, naming the field, and saves nothing.
    status, page, _ = await browser.post_form(
        "/admin/providers",
        {"kind": "saml", "name": "Bad SSO", "idp_metadata_url": "http://idp.example/md"},
    )
    assert status == 400
    assert "https" in page and "invalid" in page
    status, body = await browser.api("GET", "/api/v1/auth/providers")
    assert [p["name"] for p in body["providers"]] == ["Form SSO"]
