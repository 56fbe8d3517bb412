"""Hostile SAML answers made from real ones: a SAMLResponse the IdP really
sent, changed the way an attacker would, and signed again with ``xmlsec1``
(by the IdP's own key, to prove a check other than the signature refuses
it, or by another key)."""

from __future__ import annotations

import base64
import re
import subprocess
import tempfile
from pathlib import Path

from tests.support.pki import KeyPair

XMLSEC1 = "/usr/bin/xmlsec1"
ASSERTION_NODE = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"

_SIGNATURE = re.compile(r"<ds:Signature\b.*?</ds:Signature>", re.S)
_ASSERTION_START = re.compile(r"<saml:Assertion\b[^>]*\bID=\"([^\"]+)\"[^>]*>")

_TEMPLATE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>\
<ds:Reference URI="#{id}"><ds:Transforms>\
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>\
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>\
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>\
<ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>\
<ds:SignatureValue></ds:SignatureValue>\
<ds:KeyInfo><ds:X509Data><ds:X509Certificate></ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
</ds:Signature>"""


def decode(saml_response: str) -> str:
    """The XML of a posted SAMLResponse."""
    return base64.b64decode(saml_response).decode()


def encode(xml: str) -> str:
    """A SAMLResponse field for ``xml``."""
    return base64.b64encode(xml.encode()).decode()


def unsigned(xml: str) -> str:
    """``xml`` with every signature taken out."""
    return _SIGNATURE.sub("", xml)


def assertion_id(xml: str) -> str:
    found = _ASSERTION_START.search(xml)
    assert found, "no saml:Assertion in the answer"
    return found.group(1)


def signed_assertion(xml: str, keys: KeyPair) -> str:
    """``xml`` with its assertion signed (again) by ``keys``, whose
    certificate goes into the signature as an attacker's would."""
    xml = unsigned(xml)
    start = _ASSERTION_START.search(xml)
    assert start, "no saml:Assertion in the answer"
    issuer_end = xml.index("</saml:Issuer>", start.end()) + len("</saml:Issuer>")
    template = _TEMPLATE.format(id=start.group(1))
    with tempfile.TemporaryDirectory(prefix="saml-forge-") as tmp:
        source = Path(tmp) / "in.xml"
        target = Path(tmp) / "out.xml"
        source.write_text(xml[:issuer_end] + template + xml[issuer_end:])
        subprocess.run(
            [
                XMLSEC1,
                "--sign",
                "--privkey-pem",
                f"{keys.key},{keys.cert}",
                "--id-attr:ID",
                ASSERTION_NODE,
                "--output",
                str(target),
                str(source),
            ],
            check=True,
            capture_output=True,
        )
        return target.read_text()
