"""Sign-in with SAML 2.0: the appliance is a service provider (SP).

The browser is sent to the identity provider (IdP) with a signed
AuthnRequest (HTTP-Redirect binding; RelayState is the framework's flow id,
the request's ID is kept in the flow's data), and comes back with a
Response posted to the callback (HTTP-POST binding). pysaml2 parses it and
checks the signatures with ``xmlsec1`` against the IdP's certificate from
its metadata (never a key the document carries); this module then checks
again, itself, everything a sign-in rests on: one assertion, signed (or in a
signed response), issued by that IdP, for this SP (audience), to this
callback (destination, recipient), in answer to this flow's request
(InResponseTo), within its validity (NotBefore / NotOnOrAfter, with the
configured clock skew). An unsigned assertion is always refused: there is
no setting to allow it.

The SP's key pair (signing AuthnRequests, decrypting encrypted assertions)
is made at first use in the provider's state directory, mode 0600, and
never shown; its certificate is in the SP metadata at
``/auth/<slug>/metadata``. pysaml2 is synchronous (and runs ``xmlsec1``):
everything it does runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from saml2.response import (
    IncorrectlySigned,
    StatusError,
    UnsolicitedResponse,
)
from saml2.saml import NAMEID_FORMAT_TRANSIENT as NAMEID_TRANSIENT
from saml2.sigver import DecryptError, MissingKey, SignatureError, SigverError, get_xmlsec_binary
from saml2.validate import ResponseLifetimeExceed, ToEarly
from saml2.xml.schema import XMLSchemaError, schema_saml_metadata

from xenkeep.auth.errors import (
    CredentialsRejectedError,
    ProviderConfigError,
    ProviderUnavailableError,
)
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
from xenkeep.auth.providers.saml_metadata import (
    IdpMetadata,
    MetadataError,
    MetadataFetcher,
    MetadataUnavailable,
    certificate_facts,
    parse_idp_metadata,
    pem_certificates,
    xml_time,
)

log = logging.getLogger(__name__)
# pysaml2 logs whole SAML documents (people's attributes) and tracebacks of
# every refused answer; this module reports each refusal itself, in words,
# to the person and the audit log.
logging.getLogger("saml2").setLevel(logging.CRITICAL)

NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
NAMEID_FORMATS: tuple[tuple[str, str], ...] = (
    (NAMEID_PERSISTENT, "persistent: a stable, opaque identifier (recommended)"),
    (NAMEID_EMAIL, "e-mail address"),
    (NAMEID_UNSPECIFIED, "unspecified: the IdP's choice"),
    (NAMEID_TRANSIENT, "transient: new at each sign-in (needs an identifier attribute)"),
)
SCM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SIG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
METADATA_CONTENT_TYPE = "application/samlmetadata+xml"

DEFAULT_SKEW = 120
MAX_SKEW = 600
# A pasted document fits in a form (the daemon takes bodies up to 1 MiB);
# a federation's larger aggregate is given by its address.
MAX_METADATA_FIELD = 512 * 1024
MAX_NAMES = 12
MAX_GROUPS = 500
SP_KEY_BITS = 3072
SP_CERT_DAYS = 10 * 366
#: Accepted answers whose replay key the framework has not asked for yet.
_PENDING_REPLAY_KEYS = 1024
UNSIGNED = "the assertion is not signed, nor the response around it: refused, always"
#: The flow data's key for the AuthnRequest's ID.
REQUEST_ID = "request_id"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ATTRIBUTE_NAME = re.compile(r"^[^\s,]{1,256}$")

FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "idp_metadata_xml",
        "IdP metadata (XML)",
        "textarea",
        help="paste the identity provider's metadata document (or load its file), "
        "or give its address below",
        max_length=MAX_METADATA_FIELD,
    ),
    FieldSpec(
        "idp_metadata_url",
        "IdP metadata address",
        "url",
        help="https://...; fetched when needed, kept, and fetched again every hour",
        max_length=1024,
    ),
    FieldSpec(
        "idp_metadata_ca",
        "CA of that address (PEM)",
        "textarea",
        help="trust only this CA for the metadata address; empty: the appliance's trusted CAs",
        max_length=64 * 1024,
    ),
    FieldSpec(
        "idp_entity_id",
        "IdP entity id",
        help="needed only when the metadata describes several identity providers",
        max_length=1024,
    ),
    FieldSpec(
        "sp_entity_id",
        "This appliance's entity id",
        help="empty: the service provider metadata address; it must not change once "
        "the IdP knows it (set the sign-in address first)",
        max_length=1024,
    ),
    FieldSpec(
        "nameid_format",
        "NameID format asked for",
        "select",
        default=NAMEID_PERSISTENT,
        choices=NAMEID_FORMATS,
    ),
    FieldSpec(
        "subject_attribute",
        "Identifier attribute",
        help="empty: the NameID identifies the person; otherwise the attribute that "
        "does (a stable id, never a name that can be given to someone else)",
        max_length=256,
    ),
    FieldSpec(
        "attr_username",
        "User name attribute(s)",
        default="uid, urn:oid:0.9.2342.19200300.100.1.1",
        help="the first of these the IdP sends; none: the e-mail, else the NameID",
        max_length=2048,
    ),
    FieldSpec(
        "attr_display_name",
        "Display name attribute(s)",
        default="displayName, urn:oid:2.16.840.1.113730.3.1.241, cn, urn:oid:2.5.4.3, "
        "http://schemas.microsoft.com/identity/claims/displayname",
        max_length=2048,
    ),
    FieldSpec(
        "attr_email",
        "E-mail attribute(s)",
        default="mail, urn:oid:0.9.2342.19200300.100.1.3, email, "
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        max_length=2048,
    ),
    FieldSpec(
        "attr_groups",
        "Groups attribute(s)",
        default="groups, memberOf, isMemberOf, urn:oid:1.3.6.1.4.1.5923.1.5.1.1, "
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
        help="every value of these is a group, for the group mappings",
        max_length=2048,
    ),
    FieldSpec(
        "clock_skew",
        "Clock skew allowed (seconds)",
        "number",
        default=str(DEFAULT_SKEW),
        help=f"how far the IdP's clock may be from this appliance's (0 to {MAX_SKEW})",
        max_length=8,
    ),
)
_SPECS = {f.name: f for f in FIELDS}
_ATTRIBUTE_FIELDS = ("attr_username", "attr_display_name", "attr_email", "attr_groups")


# --- settings -------------------------------------------------------------------


def _text(values: Mapping[str, str], name: str, *, multiline: bool = False) -> str:
    spec = _SPECS[name]
    value = values.get(name, spec.default)
    value = value.replace("\r\n", "\n").strip() if multiline else value.strip()
    if len(value) > spec.max_length:
        raise ProviderConfigError(
            f"{spec.label} is longer than {spec.max_length} characters", field=name
        )
    bad = _CONTROL.search(value) if multiline else not value.isprintable()
    if bad:
        raise ProviderConfigError(f"{spec.label} contains control characters", field=name)
    return value


def _names(values: Mapping[str, str], name: str) -> list[str]:
    label = _SPECS[name].label
    names = [n.strip() for n in _text(values, name).split(",") if n.strip()]
    if len(names) > MAX_NAMES:
        raise ProviderConfigError(f"{label}: at most {MAX_NAMES} attribute names", field=name)
    for n in names:
        if not _ATTRIBUTE_NAME.match(n):
            raise ProviderConfigError(
                f"{label}: {n[:60]!r} is not an attribute name (no spaces; commas separate names)",
                field=name,
            )
    return names


def _entity_id(values: Mapping[str, str], name: str) -> str:
    value = _text(values, name)
    if value and (" " in value or not urlsplit(value).scheme):
        raise ProviderConfigError(
            f"{_SPECS[name].label} is a URI (https://... or urn:...), without spaces", field=name
        )
    return value


@dataclass(frozen=True, slots=True)
class SamlSettings:
    """A SAML provider's settings, checked (what ``config`` holds)."""

    idp_metadata_xml: str
    idp_metadata_url: str
    idp_metadata_ca: str
    idp_entity_id: str
    sp_entity_id: str
    nameid_format: str
    subject_attribute: str
    attr_username: tuple[str, ...]
    attr_display_name: tuple[str, ...]
    attr_email: tuple[str, ...]
    attr_groups: tuple[str, ...]
    clock_skew: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SamlSettings:
        def names(key: str) -> tuple[str, ...]:
            return tuple(n.strip() for n in str(config.get(key, "")).split(",") if n.strip())

        return cls(
            idp_metadata_xml=str(config.get("idp_metadata_xml", "")),
            idp_metadata_url=str(config.get("idp_metadata_url", "")),
            idp_metadata_ca=str(config.get("idp_metadata_ca", "")),
            idp_entity_id=str(config.get("idp_entity_id", "")),
            sp_entity_id=str(config.get("sp_entity_id", "")),
            nameid_format=str(config.get("nameid_format", NAMEID_PERSISTENT)),
            subject_attribute=str(config.get("subject_attribute", "")),
            attr_username=names("attr_username"),
            attr_display_name=names("attr_display_name"),
            attr_email=names("attr_email"),
            attr_groups=names("attr_groups"),
            clock_skew=int(config.get("clock_skew", DEFAULT_SKEW)),
        )


def clean_settings(values: Mapping[str, str]) -> dict[str, Any]:
    """The form's values checked: the saved config (pure; ProviderConfigError
    names the field)."""
    xml = _text(values, "idp_metadata_xml", multiline=True)
    url = _text(values, "idp_metadata_url")
    ca = _text(values, "idp_metadata_ca", multiline=True)
    idp_entity_id = _entity_id(values, "idp_entity_id")
    if bool(xml) == bool(url):
        raise ProviderConfigError(
            "give the IdP's metadata: paste its XML or give its https address (one of the two)",
            field="idp_metadata_xml" if xml or not url else "idp_metadata_url",
        )
    if xml:
        try:
            parse_idp_metadata(xml, idp_entity_id)
        except MetadataError as exc:
            raise ProviderConfigError(str(exc), field="idp_metadata_xml") from None
        if ca:
            raise ProviderConfigError(
                "a CA is only used to fetch the metadata from an address", field="idp_metadata_ca"
            )
    else:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
            raise ProviderConfigError(
                "the metadata address is https://host/path (no user name or password in it): "
                "the IdP's certificate is in it, so it must not be open to tampering",
                field="idp_metadata_url",
            )
        if ca:
            try:
                pem_certificates(ca)
            except MetadataError as exc:
                raise ProviderConfigError(str(exc), field="idp_metadata_ca") from None
    fmt = values.get("nameid_format", NAMEID_PERSISTENT).strip() or NAMEID_PERSISTENT
    if fmt not in {v for v, _ in NAMEID_FORMATS}:
        raise ProviderConfigError("pick a NameID format from the list", field="nameid_format")
    subject_attribute = _text(values, "subject_attribute")
    if subject_attribute and not _ATTRIBUTE_NAME.match(subject_attribute):
        raise ProviderConfigError(
            "the identifier attribute is one attribute name, without spaces",
            field="subject_attribute",
        )
    if fmt == NAMEID_TRANSIENT and not subject_attribute:
        raise ProviderConfigError(
            "a transient NameID changes at every sign-in: name the attribute that "
            "identifies a person (or ask for persistent NameIDs)",
            field="subject_attribute",
        )
    skew_text = _text(values, "clock_skew") or str(DEFAULT_SKEW)
    if not skew_text.isdigit() or int(skew_text) > MAX_SKEW:
        raise ProviderConfigError(
            f"the clock skew is a number of seconds from 0 to {MAX_SKEW}", field="clock_skew"
        )
    return {
        "idp_metadata_xml": xml,
        "idp_metadata_url": url,
        "idp_metadata_ca": ca,
        "idp_entity_id": idp_entity_id,
        "sp_entity_id": _entity_id(values, "sp_entity_id"),
        "nameid_format": fmt,
        "subject_attribute": subject_attribute,
        # Kept as the form shows them (one line, comma-separated), so an edit
        # round-trips.
        **{name: ", ".join(_names(values, name)) for name in _ATTRIBUTE_FIELDS},
        "clock_skew": int(skew_text),
    }


# --- the SP's key pair --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpKeys:
    """The SP's private key and certificate files."""

    key: Path
    cert: Path


_KEYS_LOCK = threading.Lock()


def _matching(key_path: Path, cert_path: Path) -> bool:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    return key.public_key().public_bytes(pem, public) == cert.public_key().public_bytes(pem, public)


def _write_private(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def sp_key_pair(directory: Path, name: str) -> SpKeys:
    """The SP's key pair in ``directory``, made (RSA, self-signed) if missing
    or broken. Blocking: call it in a thread."""
    keys = SpKeys(directory / "sp-key.pem", directory / "sp-cert.pem")
    with _KEYS_LOCK:
        if keys.key.exists() and keys.cert.exists() and _matching(keys.key, keys.cert):
            return keys
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        key = rsa.generate_private_key(public_exponent=65537, key_size=SP_KEY_BITS)
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=SP_CERT_DAYS))
            .sign(key, hashes.SHA256())
        )
        _write_private(
            keys.key,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        )
        _write_private(keys.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        log.info("made the SAML service provider key pair in %s", directory)
        return keys


# --- answers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """A checked answer: who, and the assertion's id and end of validity."""

    identity: ExternalIdentity
    assertion_id: str
    valid_until: float


def _refusal(exc: Exception, idp_name: str) -> str:
    """Why pysaml2 refused an answer, in words."""
    text = str(exc)
    if isinstance(exc, StatusError):
        status = "".join(c for c in text.split("\n", 1)[-1] if c.isprintable())[:200]
        return f"{idp_name} did not sign you in ({status})"
    if isinstance(exc, UnsolicitedResponse):
        return "the answer is not for a sign-in started here (unsolicited or another request's)"
    if isinstance(exc, ResponseLifetimeExceed):
        return "the assertion has expired (its NotOnOrAfter is past, beyond the allowed clock skew)"
    if isinstance(exc, ToEarly):
        return "the assertion is not valid yet (NotBefore): check both clocks"
    if isinstance(exc, DecryptError):
        return "the encrypted assertion cannot be decrypted with this appliance's key"
    if isinstance(exc, MissingKey):
        return "the answer comes from an issuer this provider does not know"
    if "Neither the response nor the assertions are signed" in text:
        return UNSIGNED
    if isinstance(exc, SignatureError | SigverError | IncorrectlySigned | XMLSchemaError):
        return (
            "the answer's signature does not verify with the IdP's certificate "
            "(altered, signed by another key, or not signed)"
        )
    if "AudienceRestrictions" in text:
        return "the assertion is meant for another service provider (its audience is not us)"
    if "session id and requestURI" in text or "Came from" in text:
        return "the answer is not for a sign-in started here (InResponseTo)"
    if "recipient" in text.lower():
        return "the assertion is meant for another address (recipient)"
    return "the answer is not a valid SAML response"


def _attributes(response: Any) -> dict[str, list[str]]:
    """Every attribute of the assertion by its name, its friendly name and
    pysaml2's local name (``urn:oid:0.9.2342.19200300.100.1.1`` is ``uid``)."""
    found: dict[str, list[str]] = {}

    def add(key: str | None, vals: Iterable[Any]) -> None:
        if not key:
            return
        texts = [str(v).strip() for v in vals if v is not None and str(v).strip()]
        found.setdefault(key, [])
        found[key].extend(t for t in texts if t not in found[key])

    for statement in response.assertion.attribute_statement or []:
        for attribute in statement.attribute or []:
            texts = [v.text for v in attribute.attribute_value or []]
            add(attribute.name, texts)
            add(attribute.friendly_name, texts)
    for key, vals in (response.ava or {}).items():
        add(key, vals if isinstance(vals, list) else [vals])
    return found


def _first(attributes: Mapping[str, list[str]], names: Iterable[str]) -> list[str]:
    folded = {k.casefold(): v for k, v in attributes.items()}
    for name in names:
        vals = attributes.get(name) or folded.get(name.casefold())
        if vals:
            return vals
    return []


class SamlProvider(RedirectProvider):
    """One configured SAML identity provider."""

    def __init__(self, record: ProviderRecord, env: ProviderEnv) -> None:
        super().__init__(record, env)
        self.settings = SamlSettings.from_config(record.config)
        self.entity_id = self.settings.sp_entity_id or env.metadata_url
        self.acs_url = env.callback_url
        self._fetcher = (
            MetadataFetcher(
                self.settings.idp_metadata_url,
                self.settings.idp_metadata_ca,
                env.state_dir,
                self.settings.idp_entity_id,
            )
            if self.settings.idp_metadata_url
            else None
        )
        self._keys: SpKeys | None = None
        self._sp_metadata: bytes | None = None
        self._setup_lock = threading.Lock()
        # (document digest, IdP) -> the pysaml2 configuration for it.
        self._configs: dict[str, SPConfig] = {}
        self._accepted: OrderedDict[str, tuple[str, float]] = OrderedDict()

    # --- the IdP's metadata ---------------------------------------------------

    async def _idp(self, *, refresh: bool = False) -> tuple[IdpMetadata, str]:
        """The IdP and where its metadata came from, in words."""
        settings = self.settings
        if self._fetcher is None:
            try:
                return parse_idp_metadata(
                    settings.idp_metadata_xml, settings.idp_entity_id
                ), "pasted in the settings"
            except MetadataError as exc:
                # It was good when saved; now it is not (it expired, say).
                raise ProviderUnavailableError(
                    f"the metadata of {self.record.name} is no longer usable: {exc}",
                    hint="an administrator can paste the IdP's current metadata",
                ) from None
        try:
            fetched = await self._fetcher.get(refresh=refresh)
            idp = parse_idp_metadata(fetched.document, settings.idp_entity_id)
        except (MetadataUnavailable, MetadataError) as exc:
            raise ProviderUnavailableError(
                f"the metadata of {self.record.name} cannot be had: {exc}",
                hint="an administrator can test the provider's configuration",
            ) from None
        age = max(0, int(time.time() - fetched.fetched_at))
        source = f"fetched from {self._fetcher.url} {age // 60} min ago"
        if fetched.stale_because:
            source += f" (an older copy: {fetched.stale_because})"
        return idp, source

    # --- pysaml2 (blocking: in threads) ---------------------------------------

    def _sp_keys(self) -> SpKeys:
        with self._setup_lock:
            if self._keys is None:
                self._keys = sp_key_pair(self.env.state_dir, f"XenKeep SAML SP {self.record.slug}")
            return self._keys

    def _config(self, idp: IdpMetadata | None) -> SPConfig:
        keys = self._sp_keys()
        digest = "" if idp is None else hashlib.sha256(idp.entity_xml.encode()).hexdigest()
        with self._setup_lock:
            cached = self._configs.get(digest)
            if cached is not None:
                return cached
        settings = self.settings
        config: dict[str, Any] = {
            "entityid": self.entity_id,
            "xmlsec_binary": get_xmlsec_binary(["/usr/bin", "/usr/local/bin"]),
            "key_file": str(keys.key),
            "cert_file": str(keys.cert),
            "encryption_keypairs": [{"key_file": str(keys.key), "cert_file": str(keys.cert)}],
            "accepted_time_diff": settings.clock_skew,
            "allow_unknown_attributes": True,
            "delete_tmpfiles": True,
            # Only the IdP's certificate from its metadata ever verifies.
            "only_use_keys_in_metadata": True,
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(self.acs_url, BINDING_HTTP_POST)]
                    },
                    "allow_unsolicited": False,
                    "authn_requests_signed": True,
                    "want_assertions_signed": False,
                    "want_response_signed": False,
                    # Never off: a signature on the assertion or on the
                    # response around it.
                    "want_assertions_or_response_signed": True,
                    "name_id_format": [settings.nameid_format],
                    "name_id_format_allow_create": True,
                    "signing_algorithm": SIG_RSA_SHA256,
                    "digest_algorithm": DIGEST_SHA256,
                }
            },
        }
        if idp is not None:
            config["metadata"] = {"inline": [idp.entity_xml]}
        loaded = SPConfig().load(config)
        with self._setup_lock:
            if len(self._configs) > 4:
                self._configs.clear()
            self._configs[digest] = loaded
        return loaded

    def _authn_request(self, idp: IdpMetadata, relay_state: str) -> tuple[str, str]:
        client = Saml2Client(config=self._config(idp))
        request_id, info = client.prepare_for_authenticate(
            entityid=idp.entity_id,
            relay_state=relay_state,
            binding=BINDING_HTTP_REDIRECT,
            nameid_format=self.settings.nameid_format,
            sign=True,
            sigalg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        location = dict(info["headers"])["Location"]
        return str(request_id), str(location)

    def _consume(self, idp: IdpMetadata, document: str, request_id: str) -> Accepted:
        # A client per answer: pysaml2's client keeps who signed in, in memory.
        client = Saml2Client(config=self._config(idp))
        try:
            response = client.parse_authn_request_response(
                document, BINDING_HTTP_POST, outstanding={request_id: "/"}
            )
        except Exception as exc:  # pysaml2 raises anything, even Exception
            raise CredentialsRejectedError(
                f"{self.record.name}: {_refusal(exc, self.record.name)}"
            ) from None
        if response is None or response.assertion is None:
            raise CredentialsRejectedError(
                f"{self.record.name}: the answer holds no usable assertion "
                "(for another address, or not a sign-in answer)"
            )
        return self._checked(response, idp, request_id)

    # --- our own checks, after pysaml2's ---------------------------------------

    def _reject(self, why: str) -> CredentialsRejectedError:
        return CredentialsRejectedError(f"{self.record.name}: {why}")

    def _checked(self, response: Any, idp: IdpMetadata, request_id: str) -> Accepted:
        outer = response.response
        assertion = response.assertion
        if len(response.assertions) != 1:
            raise self._reject("the answer must hold exactly one assertion")
        if assertion.signature is None and outer.signature is None:
            raise self._reject(UNSIGNED)
        issuers = [assertion.issuer.text if assertion.issuer is not None else None]
        if outer.issuer is not None:
            issuers.append(outer.issuer.text)
        if any((i or "").strip() != idp.entity_id for i in issuers):
            raise self._reject(f"the answer was not issued by {idp.entity_id}")
        if outer.in_response_to != request_id:
            raise self._reject("the answer is not for a sign-in started here (InResponseTo)")
        if outer.destination and outer.destination != self.acs_url:
            raise self._reject("the answer is meant for another address (Destination)")
        now = time.time()
        skew = self.settings.clock_skew
        conditions = assertion.conditions
        audiences = [
            (a.text or "").strip()
            for r in (conditions.audience_restriction if conditions is not None else [])
            for a in r.audience or []
        ]
        if self.entity_id not in audiences:
            raise self._reject(
                "the assertion is meant for another service provider (its audience is not us)"
            )
        ends = []
        if conditions is not None:
            if conditions.not_before and (xml_time(conditions.not_before) or 0) > now + skew:
                raise self._reject("the assertion is not valid yet (NotBefore): check both clocks")
            if conditions.not_on_or_after:
                ends.append(xml_time(conditions.not_on_or_after) or 0.0)
        bearer = [
            c.subject_confirmation_data
            for c in (assertion.subject.subject_confirmation if assertion.subject else [])
            if c.method == SCM_BEARER and c.subject_confirmation_data is not None
        ]
        if not bearer:
            raise self._reject("the assertion has no bearer confirmation (SubjectConfirmation)")
        # pysaml2 checks the recipient only when given "conversation info": here, always.
        if any(d.recipient != self.acs_url for d in bearer):
            raise self._reject("the assertion is meant for another address (Recipient)")
        if any(d.in_response_to != request_id for d in bearer):
            raise self._reject("the answer is not for a sign-in started here (InResponseTo)")
        for data in bearer:
            if not data.not_on_or_after:
                raise self._reject("the assertion's confirmation has no end (NotOnOrAfter)")
            ends.append(xml_time(data.not_on_or_after) or 0.0)
        if min(ends) <= now - skew:
            raise self._reject(
                "the assertion has expired (its NotOnOrAfter is past, beyond the allowed "
                "clock skew)"
            )
        if not assertion.id:
            raise self._reject("the assertion has no ID")
        return Accepted(self._identity(response), str(assertion.id), max(ends) + skew)

    def _identity(self, response: Any) -> ExternalIdentity:
        settings = self.settings
        attributes = _attributes(response)
        # pysaml2's name_id is the decrypted one when the IdP encrypted it.
        name_id = response.name_id or response.assertion.subject.name_id
        name_id_value = (name_id.text or "").strip() if name_id is not None else ""
        if settings.subject_attribute:
            found = _first(attributes, [settings.subject_attribute])
            if not found:
                raise self._reject(
                    f"the IdP sent no {settings.subject_attribute} attribute "
                    "(the identifier attribute of these settings)"
                )
            subject = found[0]
        else:
            if name_id is not None and name_id.format == NAMEID_TRANSIENT:
                raise self._reject(
                    "the IdP sent a transient NameID, which changes at every sign-in: "
                    "set an identifier attribute, or have the IdP send persistent NameIDs"
                )
            subject = name_id_value
        if not subject:
            raise self._reject("the assertion identifies nobody (no NameID)")
        email = (_first(attributes, settings.attr_email) or [""])[0]
        username = (_first(attributes, settings.attr_username) or [""])[0] or email or subject
        return ExternalIdentity(
            subject=subject,
            username=username,
            display_name=(_first(attributes, settings.attr_display_name) or [""])[0],
            email=email,
            groups=tuple(_first(attributes, settings.attr_groups)[:MAX_GROUPS]),
        )

    # --- the contract ------------------------------------------------------------

    async def start(self) -> RedirectStart:
        idp, _ = await self._idp()
        flow_id = secrets.token_urlsafe(32)
        request_id, url = await asyncio.to_thread(self._authn_request, idp, flow_id)
        return RedirectStart(url=url, flow_id=flow_id, flow_data={REQUEST_ID: request_id})

    def flow_id(self, callback: Callback) -> str:
        return callback.params.get("RelayState", "")

    async def finish(self, callback: Callback, flow_data: Mapping[str, str]) -> ExternalIdentity:
        document = callback.params.get("SAMLResponse", "")
        if callback.method != "POST" or not document:
            raise self._reject("no SAML response was posted back (HTTP-POST binding)")
        request_id = flow_data.get(REQUEST_ID, "")
        if not request_id:
            raise self._reject("this sign-in's request is not known")
        try:
            # Some IdPs break the base64 into lines.
            base64.b64decode("".join(document.split()), validate=True)
        except (binascii.Error, ValueError):
            raise self._reject("the SAML response is not base64") from None
        idp, _ = await self._idp()
        accepted = await asyncio.to_thread(self._consume, idp, document, request_id)
        self._accepted[_digest(document)] = (accepted.assertion_id, accepted.valid_until)
        while len(self._accepted) > _PENDING_REPLAY_KEYS:
            self._accepted.popitem(last=False)
        return accepted.identity

    def replay_key(self, callback: Callback) -> tuple[str, float] | None:
        found = self._accepted.pop(_digest(callback.params.get("SAMLResponse", "")), None)
        if found is None:
            return None
        assertion_id, until = found
        return f"saml-assertion:{assertion_id}", until

    def metadata(self) -> tuple[str, bytes]:
        """The SP metadata (blocking the first time: makes the key pair)."""
        return METADATA_CONTENT_TYPE, self._metadata_document()

    def _metadata_document(self) -> bytes:
        if self._sp_metadata is None:
            descriptor = entity_descriptor(self._config(None))
            # pysaml2 lists every algorithm xmlsec1 has, MD5 included: say nothing.
            descriptor.extensions = None
            # What is refused without: tell the IdP (pysaml2 would write
            # "false", as the library's own flag is the either-or one).
            descriptor.spsso_descriptor.want_assertions_signed = "true"
            descriptor.spsso_descriptor.authn_requests_signed = "true"
            self._sp_metadata = (
                '<?xml version="1.0" encoding="UTF-8"?>\n' + descriptor.to_string().decode()
            ).encode()
        return self._sp_metadata

    def _check_sp_metadata(self) -> CheckStep:
        document = self._metadata_document()
        try:
            schema_saml_metadata.validate(document.decode())
        except XMLSchemaError as exc:
            return CheckStep("This appliance's SP metadata", False, f"not valid: {exc}"[:300])
        keys = self._sp_keys()
        facts = certificate_facts(x509.load_pem_x509_certificate(keys.cert.read_bytes()))
        return CheckStep(
            "This appliance's SP metadata",
            True,
            f"entity id {self.entity_id}; assertion consumer {self.acs_url}; certificate "
            f"SHA-256 {facts.sha256}, {facts.expiry_words(time.time())}",
        )

    async def check(self, username: str = "", password: str = "") -> CheckResult:
        steps: list[CheckStep] = []
        try:
            idp, source = await self._idp(refresh=True)
        except ProviderUnavailableError as exc:
            steps.append(CheckStep("IdP metadata", False, exc.message))
            idp = None
        if idp is not None:
            steps.append(CheckStep("IdP metadata", True, source))
            steps.append(
                CheckStep(
                    "Identity provider",
                    True,
                    f"{idp.entity_id}; single sign-on at {idp.sso_url}",
                )
            )
            now = time.time()
            for facts in idp.certificate_facts():
                steps.append(
                    CheckStep(
                        "IdP signing certificate",
                        facts.not_after > now,
                        f"SHA-256 {facts.sha256}; {facts.subject}; {facts.expiry_words(now)}",
                    )
                )
            try:
                await asyncio.to_thread(self._config, idp)
                steps.append(CheckStep("SAML library accepts the metadata", True))
            except Exception as exc:  # pysaml2 raises anything
                steps.append(CheckStep("SAML library accepts the metadata", False, str(exc)[:300]))
        steps.append(await asyncio.to_thread(self._check_sp_metadata))
        return CheckResult(tuple(steps))


def _digest(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class SamlType(ProviderType):
    """SAML 2.0 (the appliance as service provider)."""

    kind = ProviderKind.SAML
    label = "SAML 2.0"
    fields = FIELDS

    def clean(
        self, values: Mapping[str, str], stored_secrets: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        return clean_settings(values), {}

    def build(self, record: ProviderRecord, env: ProviderEnv) -> SamlProvider:
        return SamlProvider(record, env)


TYPES: Mapping[ProviderKind, ProviderType] = {ProviderKind.SAML: SamlType()}
