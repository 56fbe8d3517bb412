"""Reading what an administrator typed into a provider's form (pure).

A :class:`FormReader` reads each setting by its :class:`FieldSpec` (label,
required, default, longest value), so every refusal names the field and says
what would fit. Nothing here touches the network: testing a configuration
does that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from cryptography import x509

from xenkeep.auth.errors import ProviderConfigError
from xenkeep.auth.providers.base import FieldSpec

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_PEM_CERT = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----"
)
_TRUE = frozenset({"1", "on", "true", "yes"})
#: Most certificates a trusted-CA field takes (a chain or a few roots).
MAX_CA_CERTIFICATES = 20


def _split_list(text: str) -> list[str]:
    return [item for item in re.split(r"[\s,]+", text) if item]


class FormReader:
    """The settings of one provider form, read field by field."""

    def __init__(
        self,
        fields: tuple[FieldSpec, ...],
        values: Mapping[str, str],
        stored_secrets: Mapping[str, str] | None = None,
    ) -> None:
        self._specs = {spec.name: spec for spec in fields}
        self._values = values
        self._stored = stored_secrets or {}

    def _spec(self, name: str) -> FieldSpec:
        return self._specs[name]

    def _fail(self, spec: FieldSpec, problem: str) -> ProviderConfigError:
        return ProviderConfigError(f"{spec.label}: {problem}", field=spec.name)

    def _raw(self, spec: FieldSpec, *, multiline: bool = False) -> str:
        value = self._values.get(spec.name)
        text = spec.default if value is None else value
        if len(text) > spec.max_length:
            raise self._fail(spec, f"at most {spec.max_length} characters")
        allowed = "\r\n\t" if multiline else ""
        if any(not c.isprintable() and c not in allowed for c in text):
            raise self._fail(spec, "control characters are not allowed")
        text = text.strip()
        if spec.required and not text:
            raise self._fail(spec, "required")
        return text

    def text(self, name: str, *, pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
        """A one-line value (matching ``pattern`` when given and not empty)."""
        spec = self._spec(name)
        text = self._raw(spec)
        if text and pattern is not None and not pattern.match(text):
            raise self._fail(spec, hint or "not a valid value")
        return text

    def flag(self, name: str) -> bool:
        """A checkbox."""
        value = self._values.get(name)
        return (self._spec(name).default if value is None else value).strip().lower() in _TRUE

    def https_url(self, name: str, *, path_allowed: bool = True) -> str:
        """An ``https://`` address with a host, no user, query or fragment
        (no trailing slash); '' when empty and not required."""
        spec = self._spec(name)
        text = self._raw(spec)
        if not text:
            return ""
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise self._fail(spec, "not a valid address") from None
        if parts.scheme != "https":
            raise self._fail(spec, "an https:// address (identity providers are reached over TLS)")
        if not parts.hostname or "@" in parts.netloc:
            raise self._fail(spec, "an https:// address with a host name and no user name")
        if parts.query or parts.fragment or " " in text:
            raise self._fail(spec, "an address without ?query, #fragment or spaces")
        if not path_allowed and parts.path not in ("", "/"):
            raise self._fail(spec, "only https://host[:port], without a path")
        if port == 0:
            raise self._fail(spec, "not a valid port")
        return text.rstrip("/")

    def words(
        self, name: str, *, pattern: re.Pattern[str], hint: str, most: int = 50
    ) -> tuple[str, ...]:
        """A list typed with commas or spaces, each item matching ``pattern``."""
        spec = self._spec(name)
        items = _split_list(self._raw(spec))
        if len(items) > most:
            raise self._fail(spec, f"at most {most} entries")
        for item in items:
            if not pattern.match(item):
                raise self._fail(spec, f"{item[:64]!r}: {hint}")
        return tuple(dict.fromkeys(items))

    def domains(self, name: str) -> tuple[str, ...]:
        """E-mail domains (``example.com``), lower-cased."""
        spec = self._spec(name)
        items = [d.lower().lstrip("@") for d in _split_list(self._raw(spec))]
        if len(items) > 50:
            raise self._fail(spec, "at most 50 domains")
        for item in items:
            if not _DOMAIN.match(item):
                raise self._fail(spec, f"{item[:64]!r} is not a domain name like example.com")
        return tuple(dict.fromkeys(items))

    def secret(self, name: str) -> str:
        """A secret: empty keeps the stored value."""
        spec = self._spec(name)
        value = self._values.get(spec.name) or ""
        if len(value) > spec.max_length:
            raise self._fail(spec, f"at most {spec.max_length} characters")
        if any(not c.isprintable() for c in value):
            raise self._fail(spec, "control characters are not allowed")
        if not value.strip():
            value = self._stored.get(spec.name, "")
        if spec.required and not value:
            raise self._fail(spec, "required")
        return value.strip()

    def ca_pem(self, name: str) -> str:
        """PEM certificates to trust instead of the system's ('' for the system's)."""
        spec = self._spec(name)
        text = self._raw(spec, multiline=True)
        if not text:
            return ""
        blocks = _PEM_CERT.findall(text)
        if not blocks:
            raise self._fail(spec, "paste PEM certificates (-----BEGIN CERTIFICATE----- ...)")
        if len(blocks) > MAX_CA_CERTIFICATES:
            raise self._fail(spec, f"at most {MAX_CA_CERTIFICATES} certificates")
        for n, block in enumerate(blocks, 1):
            try:
                x509.load_pem_x509_certificate(block.encode("ascii"))
            except ValueError:
                raise self._fail(spec, f"certificate {n} cannot be read") from None
        return "\n".join(block.replace("\r\n", "\n") for block in blocks) + "\n"
