"""Hostile SAML answers, made from real ones the IdP (SimpleSAMLphp) sent and
posted to the daemon's callback as a browser would: each is refused with a
clear message, signs nobody in, makes no account, and is audited.

Where a check other than the signature is under test, the changed answer is
signed again with the IdP's own key (``saml_forge``): the signature is then
good, and only that check stands in the way."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import urlencode

import pytest

from tests.integration.auth.providers.saml_flow import (
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
from tests.support import saml_forge
from tests.support.idp_saml import SIGN_NOTHING, IdpSession, PostedAnswer
from tests.support.pki import self_signed
from tests.support.web import Browser

__all__ = ["person", "saml"]  # fixtures

pytestmark = pytest.mark.slow

SIGNATURE_WORDS = "signature does not verify with the IdP's certificate"


async def refused(saml: Saml, person: Browser, fields: dict[str, str], words: str) -> str:
    """Post ``fields``: refused with ``words`` shown, nobody signed in, no
    account, the failure audited. The message shown."""
    earlier = await saml.failures()
    before = sum(e["count"] for e in earlier)
    status, page = await post(person, fields)
    assert status == 401, page[:2000]
    message = shown_error(page)
    assert words in message, message
    assert await signed_in_as(person) is None
    assert await saml.accounts() == []
    failures = await saml.failures()
    assert sum(e["count"] for e in failures) == before + 1
    # The audit log counts a repeat (same person, same address) in the entry
    # it already has; a first failure gets an entry of its own, with why.
    if len(failures) > len(earlier):
        assert words in failures[0]["detail"]["why"], failures[0]
    return message


def changed(posted: PostedAnswer, xml: str) -> dict[str, str]:
    return {**posted.fields, "SAMLResponse": saml_forge.encode(xml)}


async def test_an_unsigned_assertion_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    posted = await answer(person, idp_session)
    xml = saml_forge.unsigned(saml_forge.decode(posted.saml_response))
    assert "Signature" not in xml
    await refused(saml, person, changed(posted, xml), "not signed")


async def test_an_idp_that_signs_nothing_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    await saml.register(**SIGN_NOTHING)
    posted = await answer(person, idp_session)
    assert "Signature" not in saml_forge.decode(posted.saml_response)
    message = await refused(saml, person, posted.fields, "not signed")
    assert "always" in message


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda xml: xml.replace(">Alice Liddell<", ">Mallory<"), "a display name"),
        (lambda xml: xml.replace(">staff<", ">administrators<"), "a group"),
        (
            lambda xml: re.sub(r"(NameID[^>]*>)[0-9a-f]{40}<", r"\g<1>" + "0" * 40 + "<", xml),
            "the NameID",
        ),
    ],
    ids=["display-name", "group", "nameid"],
)
async def test_a_tampered_assertion_is_refused(
    saml: Saml,
    person: Browser,
    idp_session: IdpSession,
    change: Callable[[str], str],
    what: str,
) -> None:
    posted = await answer(person, idp_session)
    xml = saml_forge.decode(posted.saml_response)
    tampered = change(xml)
    assert tampered != xml, f"{what} not found in the answer"
    await refused(saml, person, changed(posted, tampered), SIGNATURE_WORDS)


async def test_an_assertion_signed_by_another_key_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession, tmp_path_factory: pytest.TempPathFactory
) -> None:
    mallory = self_signed(tmp_path_factory.mktemp("mallory"), "mallory", "XenKeep test IdP")
    posted = await answer(person, idp_session)
    xml = saml_forge.decode(posted.saml_response).replace(">staff<", ">administrators<")
    forged = saml_forge.signed_assertion(xml, mallory)
    # The attacker's certificate travels in the signature: it must not count.
    assert mallory.cert_base64()[:64] in forged
    await refused(saml, person, changed(posted, forged), SIGNATURE_WORDS)


async def test_a_response_posted_twice_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    posted = await answer(person, idp_session)
    status, _ = await post(person, posted)
    assert status == 200
    (account,) = await saml.accounts()
    await refused_in_another_browser(saml, posted, "expired or was already used")
    assert [a["id"] for a in await saml.accounts()] == [account["id"]]


async def test_an_assertion_seen_before_is_refused_even_with_its_flow_back(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    """The replay cache, behind the one-time flow: were the flow's state
    ever to be found again, the assertion's ID is still refused."""
    posted = await answer(person, idp_session)
    row = await saml.sql("SELECT state_hash, provider_id, data_enc, created_at FROM auth_flows")
    status, _ = await post(person, posted)
    assert status == 200
    (flow,) = row
    await saml.sql(
        "INSERT INTO auth_flows (state_hash, provider_id, data_enc, created_at) "
        "VALUES (?, ?, ?, ?)",
        (flow["state_hash"], flow["provider_id"], flow["data_enc"], flow["created_at"]),
    )
    await refused_in_another_browser(saml, posted, "already used once (a replay)")


async def test_an_assertion_for_another_audience_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    posted = await answer(person, idp_session)
    xml = saml_forge.decode(posted.saml_response)
    other = xml.replace(
        f"<saml:Audience>{saml.entity_id}</saml:Audience>",
        "<saml:Audience>https://other-sp.example/metadata</saml:Audience>",
    )
    assert other != xml
    forged = saml_forge.signed_assertion(other, saml.idp.signing)
    await refused(saml, person, changed(posted, forged), "meant for another service provider")


def _shifted(xml: str, attribute: str, seconds: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
    return re.sub(rf'{attribute}="[^"]+"', f'{attribute}="{stamp}"', xml)


async def test_an_expired_assertion_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    posted = await answer(person, idp_session)
    xml = saml_forge.decode(posted.saml_response)
    # Issued an hour ago, valid for five minutes: long past the 120 s skew.
    old = _shifted(
        _shifted(_shifted(xml, "NotOnOrAfter", -3300), "NotBefore", -3700), "IssueInstant", -3600
    )
    forged = saml_forge.signed_assertion(old, saml.idp.signing)
    await refused(saml, person, changed(posted, forged), "has expired")


async def test_an_assertion_expired_within_the_skew_is_accepted(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    posted = await answer(person, idp_session)
    xml = saml_forge.decode(posted.saml_response)
    late = saml_forge.signed_assertion(_shifted(xml, "NotOnOrAfter", -30), saml.idp.signing)
    status, page = await post(person, changed(posted, late))
    assert status == 200, shown_error(page)


async def test_an_assertion_not_yet_valid_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    posted = await answer(person, idp_session)
    xml = saml_forge.decode(posted.saml_response)
    early = _shifted(_shifted(xml, "NotBefore", 1800), "NotOnOrAfter", 3600)
    forged = saml_forge.signed_assertion(early, saml.idp.signing)
    await refused(saml, person, changed(posted, forged), "not valid yet")


async def test_an_unsolicited_response_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    # Signed in at the IdP once (that answer is never posted)...
    await answer(person, idp_session)
    # ...then the IdP sends an answer of its own accord (IdP-initiated).
    unsolicited = await idp_session.unsolicited(saml.entity_id)
    assert "InResponseTo" not in saml_forge.decode(unsolicited.saml_response)
    assert await saml.accounts() == []
    status, page = await post(person, unsolicited)
    assert status == 401
    assert "expired or was already used" in shown_error(page)
    # With the state of a sign-in that was started here: still not its answer.
    fresh = await begin(person)
    relay = re.search(r"RelayState=([^&]+)", fresh)
    assert relay
    fields = {"SAMLResponse": unsolicited.saml_response, "RelayState": relay.group(1)}
    await refused(saml, person, fields, "not for a sign-in started here")


async def test_an_answer_to_another_request_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    first = await answer(person, idp_session)
    second = await answer(person, idp_session)
    crossed = {"SAMLResponse": first.saml_response, "RelayState": second.relay_state}
    await refused(saml, person, crossed, "not for a sign-in started here")


async def test_an_answer_from_another_issuer_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    posted = await answer(person, idp_session)
    xml = saml_forge.decode(posted.saml_response).replace(
        f">{saml.idp.entity_id}</saml:Issuer>", ">https://evil-idp.example/metadata</saml:Issuer>"
    )
    forged = saml_forge.signed_assertion(xml, saml.idp.signing)
    await refused(saml, person, changed(posted, forged), "issuer this provider does not know")


async def test_an_answer_for_another_address_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    posted = await answer(person, idp_session)
    callback = f"{saml.server.url.rstrip('/')}/auth/{SLUG}/callback"
    xml = saml_forge.decode(posted.saml_response).replace(
        f'Recipient="{callback}"', 'Recipient="https://other-sp.example/acs"'
    )
    forged = saml_forge.signed_assertion(xml, saml.idp.signing)
    await refused(saml, person, changed(posted, forged), "another address")


@pytest.mark.parametrize(
    ("response", "words"),
    [
        ("not base64 at all!", "not base64"),
        (saml_forge.encode("<not-xml"), "not a valid SAML response"),
        (saml_forge.encode("<samlp:Foo xmlns:samlp='urn:x'/>"), "not a valid SAML response"),
        ("", "no SAML response was posted back"),
    ],
    ids=["not-base64", "not-xml", "not-a-response", "empty"],
)
async def test_garbage_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession, response: str, words: str
) -> None:
    posted = await answer(person, idp_session)
    await refused(saml, person, {**posted.fields, "SAMLResponse": response}, words)


async def test_an_answer_brought_back_by_get_is_refused(
    saml: Saml, person: Browser, idp_session: IdpSession
) -> None:
    # The HTTP-Redirect binding is not one an AuthnResponse may use (and a
    # real answer is longer than a request line may be: aiohttp answers 400).
    posted = await answer(person, idp_session)
    query = urlencode({"SAMLResponse": saml_forge.encode("<x/>"), "RelayState": posted.relay_state})
    status, text, _ = await person.get(f"/auth/{SLUG}/callback?{query}")
    assert status == 401, text[:3000]
    assert "HTTP-POST" in text
    assert await saml.accounts() == []


async def test_an_oversized_answer_is_refused_before_parsing(saml: Saml, person: Browser) -> None:
    status, text = await post(person, {"SAMLResponse": "A" * (300 * 1024), "RelayState": "x"})
    assert status == 400, text[:500]
    assert await saml.accounts() == []
