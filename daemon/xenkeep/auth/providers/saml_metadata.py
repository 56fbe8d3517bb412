"""A SAML identity provider's metadata: read, checked, fetched and cached.

:func:`parse_idp_metadata` is pure: it finds the one IdP XenKeep signs in
with (the only one in the document, or the one named), its HTTP-Redirect
single sign-on address and its signing certificates, and refuses what would
only fail later (no certificate, no usable endpoint, expired metadata).
:class:`MetadataFetcher` fetches a metadata address over https (optionally
trusting only a pinned CA), keeps the last good copy in the provider's state
directory and refreshes it now and then.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import calendar
import hashlib
import logging
import os
import re
import ssl
import time
import xml.etree.ElementTree as ET  # serialising only: parsing is defusedxml's
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

log = logging.getLogger(__name__)

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
SAML2_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"

#: The longest metadata document taken (an IdP's own is a few kB; a
#: federation's aggregate of thousands of entities is not what this is for).
MAX_METADATA_BYTES = 4 * 1024 * 1024
#: A fetched copy is used this long before it is fetched again...
REFRESH_SECONDS = 60 * 60
#: ...and, while the address cannot be reached, at most this long,
STALE_SECONDS = 7 * 24 * 60 * 60
#: trying the address again after a failure no sooner than this (a sign-in
#: does not wait for an address that was down a moment ago).
RETRY_SECONDS = 5 * 60
FETCH_TIMEOUT = 20.0
_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----", re.S
)


class MetadataError(ValueError):
    """Metadata that cannot be used, and why (in words for the administrator)."""


class MetadataUnavailable(Exception):
    """The metadata address could not be fetched, and why."""


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What an administrator compares with the IdP's own console."""

    sha256: str
    subject: str
    not_after: float

    def expiry_words(self, now: float) -> str:
        when = datetime.fromtimestamp(self.not_after, UTC).strftime("%Y-%m-%d %H:%M UTC")
        if self.not_after <= now:
            return f"expired on {when}"
        days = int((self.not_after - now) // 86400)
        return f"valid until {when} ({days} days)"


@dataclass(frozen=True, slots=True)
class IdpMetadata:
    """The identity provider XenKeep signs in with, from its metadata."""

    entity_id: str
    sso_url: str
    certificates: tuple[x509.Certificate, ...]
    #: That IdP's EntityDescriptor alone (what the SAML library is given, so
    #: no other entity of an aggregate can vouch for an assertion).
    entity_xml: str
    valid_until: float | None = None

    def certificate_facts(self) -> list[CertificateFacts]:
        return [certificate_facts(c) for c in self.certificates]


def certificate_facts(cert: x509.Certificate) -> CertificateFacts:
    """A certificate's SHA-256 fingerprint, subject and expiry."""
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return CertificateFacts(
        sha256=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        subject=cert.subject.rfc4514_string()[:200],
        not_after=float(calendar.timegm(cert.not_valid_after.utctimetuple())),
    )


def xml_time(text: str) -> float | None:
    """An xs:dateTime (``2030-01-01T00:00:00Z``) as epoch seconds; None if unreadable."""
    value = text.strip()
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", value)
    if not match:
        return None
    stamp = datetime.fromisoformat(match.group(1) + (match.group(3) or "Z").replace("Z", "+00:00"))
    return stamp.timestamp()


def _entities(
    element: ET.Element, expires: float | None = None
) -> Iterator[tuple[ET.Element, float | None]]:
    """Every EntityDescriptor under ``element``, with the earliest validUntil
    of it and the EntitiesDescriptors around it."""
    until = element.get("validUntil")
    if until is not None:
        parsed = xml_time(until)
        if parsed is None:
            raise MetadataError(f"the metadata's validUntil {until[:40]!r} is not a date")
        expires = parsed if expires is None else min(expires, parsed)
    if element.tag == f"{{{MD}}}EntityDescriptor":
        yield element, expires
    elif element.tag == f"{{{MD}}}EntitiesDescriptor":
        for child in element:
            yield from _entities(child, expires)


def _idp_descriptor(entity: ET.Element) -> ET.Element | None:
    for descriptor in entity.findall(f"{{{MD}}}IDPSSODescriptor"):
        if SAML2_PROTOCOL in descriptor.get("protocolSupportEnumeration", "").split():
            return descriptor
    return None


def _signing_certificates(descriptor: ET.Element, entity_id: str) -> tuple[x509.Certificate, ...]:
    found: list[x509.Certificate] = []
    for key in descriptor.findall(f"{{{MD}}}KeyDescriptor"):
        if key.get("use", "signing") != "signing":
            continue
        for node in key.iter(f"{{{DS}}}X509Certificate"):
            text = "".join((node.text or "").split())
            try:
                found.append(x509.load_der_x509_certificate(base64.b64decode(text, validate=True)))
            except (binascii.Error, ValueError) as exc:
                raise MetadataError(
                    f"a signing certificate of {entity_id} cannot be read: {exc}"
                ) from None
    if not found:
        raise MetadataError(
            f"the metadata of {entity_id} has no signing certificate: without one no "
            "assertion can be checked"
        )
    return tuple(found)


def _sso_url(descriptor: ET.Element, entity_id: str) -> str:
    offered = []
    for service in descriptor.findall(f"{{{MD}}}SingleSignOnService"):
        binding = service.get("Binding", "")
        offered.append(binding.rsplit(":", 1)[-1])
        if binding == BINDING_REDIRECT:
            location = service.get("Location", "").strip()
            parts = urlsplit(location)
            if parts.scheme != "https" or not parts.hostname:
                raise MetadataError(
                    f"{entity_id}'s sign-in address {location[:120]!r} is not https: "
                    "people's sign-ins would cross the network in clear"
                )
            return location
    raise MetadataError(
        f"{entity_id} offers no HTTP-Redirect single sign-on address (only: "
        f"{', '.join(offered) or 'none'}); XenKeep sends its requests by HTTP-Redirect"
    )


def parse_idp_metadata(
    document: str | bytes, entity_id: str = "", now: float | None = None
) -> IdpMetadata:
    """The IdP in ``document`` (the one named ``entity_id`` when it holds several).

    MetadataError says what is wrong: not XML, no SAML 2.0 IdP, several and
    none named, expired, no signing certificate, no HTTP-Redirect endpoint.
    """
    raw = document.encode() if isinstance(document, str) else document
    if len(raw) > MAX_METADATA_BYTES:
        raise MetadataError(f"the metadata is larger than {MAX_METADATA_BYTES // 1024} KiB")
    try:
        root = fromstring(raw, forbid_dtd=True)
    except DefusedXmlException:
        raise MetadataError("the metadata declares a DTD or entities, which are refused") from None
    except ET.ParseError as exc:
        raise MetadataError(f"the metadata is not XML ({exc})") from None
    if root.tag not in (f"{{{MD}}}EntityDescriptor", f"{{{MD}}}EntitiesDescriptor"):
        raise MetadataError("this is not SAML metadata (no EntityDescriptor)")
    idps = [
        (entity, expires, descriptor)
        for entity, expires in _entities(root)
        if (descriptor := _idp_descriptor(entity)) is not None
    ]
    if not idps:
        raise MetadataError("the metadata describes no SAML 2.0 identity provider")
    if entity_id:
        chosen = [i for i in idps if i[0].get("entityID") == entity_id]
        if not chosen:
            raise MetadataError(f"the metadata has no identity provider {entity_id[:200]!r}")
    elif len(idps) > 1:
        names = ", ".join(repr(i[0].get("entityID", "")[:80]) for i in idps[:3])
        raise MetadataError(
            f"the metadata describes {len(idps)} identity providers ({names}...): "
            "name the one to use (IdP entity id)"
        )
    else:
        chosen = idps
    entity, expires, descriptor = chosen[0]
    name = entity.get("entityID", "").strip()
    if not name:
        raise MetadataError("the identity provider in the metadata has no entityID")
    current = time.time() if now is None else now
    if expires is not None and expires <= current:
        when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise MetadataError(f"the metadata of {name} expired on {when} (validUntil)")
    return IdpMetadata(
        entity_id=name,
        sso_url=_sso_url(descriptor, name),
        certificates=_signing_certificates(descriptor, name),
        entity_xml=ET.tostring(entity, encoding="unicode"),
        valid_until=expires,
    )


def pem_certificates(text: str) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; MetadataError when one is unreadable
    or there is something else than certificates in it."""
    blocks = _PEM_BLOCK.findall(text)
    if not blocks or _PEM_BLOCK.sub("", text).strip():
        raise MetadataError("give one or more PEM certificates (-----BEGIN CERTIFICATE-----)")
    certs = []
    for block in blocks:
        try:
            certs.append(x509.load_pem_x509_certificate(block.encode()))
        except ValueError as exc:
            raise MetadataError(f"a certificate cannot be read: {exc}") from None
    return certs


def _tls_context(ca_pem: str) -> ssl.SSLContext:
    # Blocking: the default context reads the system's CA store from disk.
    if ca_pem:
        return ssl.create_default_context(cadata=ca_pem)
    return ssl.create_default_context()


@dataclass(frozen=True, slots=True)
class Fetched:
    """A metadata document and where it came from."""

    document: bytes
    fetched_at: float
    #: Why the copy in hand is an older one ('' when it is fresh).
    stale_because: str = ""


class MetadataFetcher:
    """Fetches one metadata address and keeps its last good copy on disk.

    The copy's file is named after the address and CA, so a changed setting
    never uses the copy of another. Refreshes happen one at a time.
    """

    def __init__(self, url: str, ca_pem: str, directory: Path, entity_id: str = "") -> None:
        self.url = url
        self._ca = ca_pem
        self._entity_id = entity_id
        key = hashlib.sha256(f"{url}\n{ca_pem}".encode()).hexdigest()[:16]
        self._path = directory / f"idp-metadata-{key}.xml"
        self._lock = asyncio.Lock()
        self._memory: Fetched | None = None
        self._retry_at = 0.0

    async def get(self, *, refresh: bool = False, now: float | None = None) -> Fetched:
        """The metadata: the copy in hand while it is recent, else fetched.

        When the address fails, a copy under a week old is used (and says
        so); without one, MetadataUnavailable says why.
        """
        async with self._lock:
            current = time.time() if now is None else now
            if self._memory is None:
                self._memory = await asyncio.to_thread(self._read_copy)
            held = self._memory
            if held is not None and not refresh:
                if current - held.fetched_at < REFRESH_SECONDS:
                    return held
                if current < self._retry_at and current - held.fetched_at < STALE_SECONDS:
                    return Fetched(held.document, held.fetched_at, "the address failed recently")
            try:
                document = await self._fetch()
                parse_idp_metadata(document, self._entity_id, current)
            except (MetadataUnavailable, MetadataError) as exc:
                self._retry_at = current + RETRY_SECONDS
                if held is None or current - held.fetched_at > STALE_SECONDS or refresh:
                    raise MetadataUnavailable(str(exc)) from None
                log.warning("IdP metadata from %s: %s; the copy kept is used", self.url, exc)
                return Fetched(held.document, held.fetched_at, str(exc))
            await asyncio.to_thread(self._write_copy, document)
            self._memory = Fetched(document, current)
            return self._memory

    async def _fetch(self) -> bytes:
        ctx = await asyncio.to_thread(_tls_context, self._ca)
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.url, ssl=ctx, allow_redirects=False) as resp,
            ):
                if resp.status != 200:
                    where = resp.headers.get("Location", "")
                    raise MetadataUnavailable(
                        f"{self.url} answered HTTP {resp.status}"
                        + (f" (a redirect to {where[:200]}: give that address)" if where else "")
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > MAX_METADATA_BYTES:
                        raise MetadataUnavailable(
                            f"{self.url} sent more than {MAX_METADATA_BYTES // 1024} KiB"
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise MetadataUnavailable(
                f"the certificate of {self.url} is not trusted ({exc.certificate_error})"
                + ("" if self._ca else "; give the CA that signed it")
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise MetadataUnavailable(f"TLS with {self.url} failed ({exc})") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise MetadataUnavailable(
                f"cannot fetch {self.url}: {exc or type(exc).__name__}"
            ) from None
        except TimeoutError:
            raise MetadataUnavailable(
                f"{self.url} did not answer in {FETCH_TIMEOUT:.0f} s"
            ) from None

    def _read_copy(self) -> Fetched | None:
        try:
            stat = self._path.stat()
            return Fetched(self._path.read_bytes(), stat.st_mtime)
        except FileNotFoundError:
            return None

    def _write_copy(self, document: bytes) -> None:
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(document)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self._path)
