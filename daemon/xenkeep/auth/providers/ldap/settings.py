"""An LDAP provider's settings: the admin form's fields, their checks, and
the typed :class:`LdapSettings` the directory code works from.

Pure: nothing here touches the network (testing a configuration does).
Every refusal is a :class:`ProviderConfigError` naming its field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import parse_filter
from ldap3.utils.dn import parse_dn

from xenkeep.auth.errors import ProviderConfigError
from xenkeep.auth.providers.base import FieldSpec


class Security(StrEnum):
    """How the connection to the directory is protected."""

    LDAPS = "ldaps"
    STARTTLS = "starttls"
    NONE = "none"


class GroupSource(StrEnum):
    """Where a person's groups come from."""

    NONE = "none"
    SEARCH = "search"
    MEMBER_OF = "memberof"


class GroupName(StrEnum):
    """Which name of a group the mappings use."""

    CN = "cn"
    DN = "dn"


class DisabledCheck(StrEnum):
    """How a disabled account is recognised."""

    NONE = "none"
    AD = "ad"
    FILTER = "filter"


USERNAME = "{username}"
DN = "{dn}"
MAX_SERVERS = 8
MAX_CA_BYTES = 64 * 1024
MAX_CA_CERTS = 16
DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}
MIN_TIMEOUT, MAX_TIMEOUT = 1, 60

_ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]{0,63}|[0-9]+(?:\.[0-9]+)+)$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")
_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\r\n]+-----END \1-----", re.ASCII
)
_PLACEHOLDER = re.compile(r"\{[^}]*\}")
_Choice = TypeVar("_Choice", bound=StrEnum)

FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "servers",
        "Server addresses",
        required=True,
        help="ldaps://dc1.corp.example or ldap://ldap.corp.example:389; several separated by "
        "spaces are tried in order when one cannot be reached",
        max_length=1024,
    ),
    FieldSpec(
        "security",
        "Connection security",
        "select",
        default=Security.LDAPS,
        choices=(
            (Security.LDAPS, "LDAPS (TLS from the start, ldaps://, port 636)"),
            (Security.STARTTLS, "StartTLS (ldap:// upgraded to TLS, port 389)"),
            (Security.NONE, "None: passwords cross the network in clear"),
        ),
    ),
    FieldSpec(
        "allow_insecure",
        "I understand that without TLS every password can be read on the network",
        "bool",
        help="Needed to save 'None' above; for a test network only.",
    ),
    FieldSpec(
        "ca_pem",
        "CA certificate (PEM)",
        "textarea",
        help="Only this CA (or these, one after another) is trusted for the directory's "
        "certificate. Empty: the appliance's list of public CAs.",
        max_length=MAX_CA_BYTES,
    ),
    FieldSpec(
        "skip_hostname_check",
        "Do not check that the certificate names the server (not recommended)",
        "bool",
        help="Only while a certificate lacks the name you connect to; the CA is still checked.",
    ),
    FieldSpec(
        "bind_dn",
        "Service account DN",
        help="The account that searches the directory, e.g. "
        "cn=xenkeep,ou=services,dc=corp,dc=example (AD: CN=XenKeep,CN=Users,DC=corp,DC=example). "
        "Empty: anonymous search.",
    ),
    FieldSpec("bind_password", "Service account password", "secret"),
    FieldSpec(
        "base_dn",
        "Base DN of the people",
        required=True,
        help="Where people are searched, e.g. ou=people,dc=corp,dc=example",
    ),
    FieldSpec(
        "user_filter",
        "User filter",
        default="(&(objectClass=inetOrgPerson)(uid={username}))",
        required=True,
        help="{username} is what the person types, escaped. AD: "
        "(&(objectClass=user)(sAMAccountName={username}))",
    ),
    FieldSpec(
        "attr_username",
        "Attribute: user name",
        default="uid",
        help="AD: sAMAccountName",
        max_length=64,
    ),
    FieldSpec(
        "attr_display_name",
        "Attribute: display name",
        default="cn",
        help="AD: displayName; empty: none",
        max_length=64,
    ),
    FieldSpec("attr_email", "Attribute: e-mail", default="mail", help="empty: none", max_length=64),
    FieldSpec(
        "attr_subject",
        "Attribute: stable identifier",
        default="entryUUID",
        help="Never reassigned, survives renames: entryUUID (OpenLDAP), objectGUID (AD). "
        "Empty, or absent on an entry: the entry's DN.",
        max_length=64,
    ),
    FieldSpec(
        "group_source",
        "Groups",
        "select",
        default=GroupSource.NONE,
        choices=(
            (GroupSource.NONE, "Not read"),
            (GroupSource.SEARCH, "Searched with the group filter"),
            (GroupSource.MEMBER_OF, "The person's memberOf attribute (AD, OpenLDAP memberof)"),
        ),
    ),
    FieldSpec(
        "group_base_dn",
        "Base DN of the groups",
        help="e.g. ou=groups,dc=corp,dc=example; empty: the base DN of the people",
    ),
    FieldSpec(
        "group_filter",
        "Group filter",
        default="(&(objectClass=groupOfNames)(member={dn}))",
        help="{dn} is the person's DN, {username} their user name. posixGroup: "
        "(&(objectClass=posixGroup)(memberUid={username})); AD with nested groups: "
        "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={dn}))",
    ),
    FieldSpec(
        "group_name",
        "A group's name in the mappings",
        "select",
        default=GroupName.CN,
        choices=(
            (GroupName.CN, "Its cn (Backup Admins)"),
            (GroupName.DN, "Its DN (cn=Backup Admins,ou=groups,dc=corp,dc=example)"),
        ),
    ),
    FieldSpec(
        "disabled_check",
        "Disabled accounts",
        "select",
        default=DisabledCheck.NONE,
        choices=(
            (DisabledCheck.NONE, "Only what the directory refuses at bind"),
            (DisabledCheck.AD, "Active Directory: userAccountControl ACCOUNTDISABLE"),
            (DisabledCheck.FILTER, "An account must match the filter below"),
        ),
    ),
    FieldSpec(
        "enabled_filter",
        "Filter an enabled account matches",
        default="(!(pwdAccountLockedTime=*))",
        help="OpenLDAP's password policy: (!(pwdAccountLockedTime=*)); an attribute of yours: "
        "(!(employeeType=left))",
    ),
    FieldSpec(
        "timeout",
        "Timeout (seconds)",
        "number",
        default="5",
        help=f"For each server's connection and each answer, {MIN_TIMEOUT} to {MAX_TIMEOUT}",
        max_length=2,
    ),
)
SPECS: Mapping[str, FieldSpec] = {f.name: f for f in FIELDS}


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """One directory server."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LdapSettings:
    """A provider's checked settings (see :data:`FIELDS` for their meaning)."""

    servers: tuple[ServerAddress, ...]
    security: Security
    ca_pem: str
    verify_hostname: bool
    bind_dn: str
    base_dn: str
    user_filter: str
    attr_username: str
    attr_display_name: str
    attr_email: str
    attr_subject: str
    group_source: GroupSource
    group_base_dn: str
    group_filter: str
    group_name: GroupName
    disabled_check: DisabledCheck
    enabled_filter: str
    timeout: int
    bind_password: str = field(default="", repr=False)

    @classmethod
    def from_saved(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> LdapSettings:
        """Settings from a saved record, checked again (a record saved by an
        older version, or edited by hand, is refused the same way)."""
        values = {k: _as_form_value(v) for k, v in config.items()}
        cleaned, kept = clean(values, secrets)
        return cls(
            servers=servers_of(str(cleaned["servers"]), Security(cleaned["security"])),
            security=Security(cleaned["security"]),
            ca_pem=str(cleaned["ca_pem"]),
            verify_hostname=not cleaned["skip_hostname_check"],
            bind_dn=str(cleaned["bind_dn"]),
            base_dn=str(cleaned["base_dn"]),
            user_filter=str(cleaned["user_filter"]),
            attr_username=str(cleaned["attr_username"]),
            attr_display_name=str(cleaned["attr_display_name"]),
            attr_email=str(cleaned["attr_email"]),
            attr_subject=str(cleaned["attr_subject"]),
            group_source=GroupSource(cleaned["group_source"]),
            group_base_dn=str(cleaned["group_base_dn"]) or str(cleaned["base_dn"]),
            group_filter=str(cleaned["group_filter"]),
            group_name=GroupName(cleaned["group_name"]),
            disabled_check=DisabledCheck(cleaned["disabled_check"]),
            enabled_filter=str(cleaned["enabled_filter"]),
            timeout=int(cleaned["timeout"]),
            bind_password=kept.get("bind_password", ""),
        )


def _as_form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else ""
    return str(value)


def _refuse(name: str, message: str, hint: str | None = None) -> ProviderConfigError:
    return ProviderConfigError(f"{SPECS[name].label}: {message}", field=name, hint=hint)


def _text(values: Mapping[str, str], name: str, *, multiline: bool = False) -> str:
    """A field's value, trimmed, within its length, without control characters.

    A field not given at all (an API call leaving it out) has its default;
    given empty, it is empty (an attribute not read, a filter not used).
    """
    spec = SPECS[name]
    given = values.get(name)
    value = (spec.default if given is None else str(given)).strip()
    if len(value) > spec.max_length:
        raise _refuse(name, f"at most {spec.max_length} characters")
    allowed = "\r\n" if multiline else ""
    if any(not c.isprintable() and c not in allowed for c in value):
        raise _refuse(name, "control characters are not allowed")
    if spec.required and not value:
        raise _refuse(name, "required")
    return value


def _flag(values: Mapping[str, str], name: str) -> bool:
    return str(values.get(name, "") or "").strip().lower() in {"1", "on", "true", "yes"}


def _choice(values: Mapping[str, str], name: str, kind: type[_Choice]) -> _Choice:
    raw = _text(values, name) or SPECS[name].default
    try:
        return kind(raw)
    except ValueError:
        known = ", ".join(v for v, _ in SPECS[name].choices)
        raise _refuse(name, f"{raw[:40]!r} is not one of {known}") from None


def _server(text: str, security: Security) -> ServerAddress:
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname or ""
    except ValueError as exc:
        raise _refuse("servers", f"{text[:80]!r} is not an address ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _refuse("servers", f"{text[:80]!r}: write ldaps://host or ldap://host")
    if parts.username is not None or parts.password is not None:
        raise _refuse(
            "servers", "no user name or password in the address (use the service account)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _refuse(
            "servers", f"{text[:80]!r}: only scheme, host and port (the base DN is apart)"
        )
    bracketed = parts.netloc.rsplit("@", 1)[-1].startswith("[")
    if not (bracketed and _IPV6.match(host)) and not _HOSTNAME.match(host):
        raise _refuse("servers", f"{text[:80]!r}: not a host name or address")
    if port == 0:
        raise _refuse("servers", f"{text[:80]!r}: the port is 1 to 65535")
    if security is Security.LDAPS and scheme != "ldaps":
        raise _refuse(
            "servers",
            f"{text[:80]!r}: LDAPS addresses start with ldaps://",
            hint="or choose StartTLS, which upgrades an ldap:// connection",
        )
    if security is not Security.LDAPS and scheme != "ldap":
        raise _refuse(
            "servers",
            f"{text[:80]!r}: with {'StartTLS' if security is Security.STARTTLS else 'no TLS'} "
            "the address starts with ldap://",
            hint="or choose LDAPS",
        )
    return ServerAddress(scheme, host.lower(), port or DEFAULT_PORTS[scheme])


def servers_of(text: str, security: Security) -> tuple[ServerAddress, ...]:
    """The servers written in the ``servers`` field, in order."""
    items = [s for s in re.split(r"[\s,;]+", text) if s]
    if not items:
        raise _refuse("servers", "required")
    if len(items) > MAX_SERVERS:
        raise _refuse("servers", f"at most {MAX_SERVERS} servers")
    found = tuple(_server(item, security) for item in items)
    if len(set(found)) != len(found):
        raise _refuse("servers", "a server is listed twice")
    return found


def _dn(values: Mapping[str, str], name: str) -> str:
    value = _text(values, name)
    if value:
        try:
            parse_dn(value)
        except LDAPException as exc:
            raise _refuse(name, f"{value[:80]!r} is not a DN ({exc})") from None
    return value


def _ca(values: Mapping[str, str]) -> str:
    text = _text(values, "ca_pem", multiline=True).replace("\r\n", "\n")
    if not text:
        return ""
    blocks = list(_PEM_BLOCK.finditer(text))
    if not blocks or _PEM_BLOCK.sub("", text).strip():
        raise _refuse(
            "ca_pem",
            "not a PEM certificate: paste the CA's certificate as "
            "-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----, nothing else",
        )
    if len(blocks) > MAX_CA_CERTS:
        raise _refuse("ca_pem", f"at most {MAX_CA_CERTS} certificates")
    for n, block in enumerate(blocks, 1):
        if block.group(1) != "CERTIFICATE":
            raise _refuse(
                "ca_pem",
                f"block {n} is a {block.group(1).lower()}, not a certificate"
                + (" (never paste a private key here)" if "PRIVATE" in block.group(1) else ""),
            )
        try:
            x509.load_pem_x509_certificate(block.group(0).encode("ascii"))
        except ValueError as exc:
            raise _refuse("ca_pem", f"certificate {n} cannot be read ({exc})") from None
    return "\n".join(b.group(0) for b in blocks) + "\n"


def ca_certificates(pem: str) -> list[x509.Certificate]:
    """The certificates of a checked ``ca_pem`` value."""
    return [x509.load_pem_x509_certificate(b.group(0).encode()) for b in _PEM_BLOCK.finditer(pem)]


def _filter(values: Mapping[str, str], name: str, allowed: set[str], needed: set[str]) -> str:
    value = _text(values, name)
    if not value:
        if SPECS[name].required:
            raise _refuse(name, "required")
        return ""
    placeholders = set(_PLACEHOLDER.findall(value))
    unknown = sorted(placeholders - allowed)
    if unknown:
        raise _refuse(
            name,
            f"unknown placeholder {unknown[0][:40]}; "
            + (f"use {' or '.join(sorted(allowed))}" if allowed else "none is filled in here"),
        )
    if needed and not placeholders & needed:
        raise _refuse(name, f"must contain {' or '.join(sorted(needed))}")
    sample = value.replace(USERNAME, "x").replace(DN, "cn=x")
    try:
        parse_filter(sample, None, True, True, None, False)  # type: ignore[no-untyped-call]
    except LDAPException as exc:
        raise _refuse(name, f"not an LDAP filter ({exc}); write it in parentheses") from None
    return value


def _attribute(values: Mapping[str, str], name: str) -> str:
    value = _text(values, name)
    if value and not _ATTRIBUTE.match(value):
        raise _refuse(name, f"{value[:64]!r} is not an attribute name")
    return value


def _timeout(values: Mapping[str, str]) -> int:
    raw = _text(values, "timeout") or SPECS["timeout"].default
    if not raw.isdigit() or not MIN_TIMEOUT <= int(raw) <= MAX_TIMEOUT:
        raise _refuse("timeout", f"a whole number of seconds, {MIN_TIMEOUT} to {MAX_TIMEOUT}")
    return int(raw)


def clean(
    values: Mapping[str, str], stored_secrets: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The admin form's values checked: (config, secrets). See ProviderType.clean."""
    security = _choice(values, "security", Security)
    servers_text = _text(values, "servers")
    servers_of(servers_text, security)
    allow_insecure = _flag(values, "allow_insecure")
    if security is Security.NONE and not allow_insecure:
        raise _refuse(
            "allow_insecure",
            "without TLS, the service account's and every person's password cross the "
            "network readable: tick this box to accept it",
            hint="or choose LDAPS or StartTLS",
        )
    bind_dn = _dn(values, "bind_dn")
    typed_password = str(values.get("bind_password", "") or "")
    if len(typed_password) > SPECS["bind_password"].max_length:
        raise _refuse("bind_password", f"at most {SPECS['bind_password'].max_length} characters")
    if "\x00" in typed_password:
        raise _refuse("bind_password", "control characters are not allowed")
    secrets: dict[str, str] = {}
    if bind_dn:
        password = typed_password or stored_secrets.get("bind_password", "")
        if not password:
            raise _refuse("bind_password", "required with a service account DN")
        secrets["bind_password"] = password
    elif typed_password:
        raise _refuse("bind_dn", "a service account password needs the account's DN")
    group_source = _choice(values, "group_source", GroupSource)
    disabled_check = _choice(values, "disabled_check", DisabledCheck)
    group_filter = _filter(values, "group_filter", {DN, USERNAME}, {DN, USERNAME})
    if group_source is GroupSource.SEARCH and not group_filter:
        raise _refuse("group_filter", "required when groups are searched")
    enabled_filter = _filter(values, "enabled_filter", set(), set())
    if disabled_check is DisabledCheck.FILTER and not enabled_filter:
        raise _refuse("enabled_filter", "required when accounts must match a filter")
    config: dict[str, Any] = {
        "servers": servers_text,
        "security": str(security),
        "allow_insecure": allow_insecure,
        "ca_pem": _ca(values),
        "skip_hostname_check": _flag(values, "skip_hostname_check"),
        "bind_dn": bind_dn,
        "base_dn": _dn(values, "base_dn"),
        "user_filter": _filter(values, "user_filter", {USERNAME}, {USERNAME}),
        "attr_username": _attribute(values, "attr_username"),
        "attr_display_name": _attribute(values, "attr_display_name"),
        "attr_email": _attribute(values, "attr_email"),
        "attr_subject": _attribute(values, "attr_subject"),
        "group_source": str(group_source),
        "group_base_dn": _dn(values, "group_base_dn"),
        "group_filter": group_filter,
        "group_name": str(_choice(values, "group_name", GroupName)),
        "disabled_check": str(disabled_check),
        "enabled_filter": enabled_filter,
        "timeout": _timeout(values),
    }
    return config, secrets
