"""Talking to the directory with ldap3: connect (TLS pinned to the
configured CA), bind, find a person, check their account, read their groups.

ldap3 is synchronous: everything here blocks and runs in a thread
(:mod:`.provider` calls it through ``asyncio.to_thread``). Every socket has
the configured timeout for its connection and for each answer, so a dead
server is an error within seconds, never a hang.

Values typed by a person reach a filter only through ldap3's
``escape_filter_chars`` (RFC 4515): ``*)(uid=*`` is a name, never a filter.
Referrals are not followed: an answer comes from the servers configured,
or not at all.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import ssl
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ldap3 import ANONYMOUS, BASE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from xenkeep.auth.errors import CredentialsRejectedError, ProviderUnavailableError
from xenkeep.auth.providers.base import ExternalIdentity
from xenkeep.auth.providers.ldap.settings import (
    DN,
    USERNAME,
    DisabledCheck,
    GroupName,
    GroupSource,
    LdapSettings,
    Security,
    ServerAddress,
)

log = logging.getLogger(__name__)

#: Active Directory's userAccountControl flag of a disabled account.
ACCOUNTDISABLE = 0x2
#: More groups than this for one person: the rest are not read (and it is logged).
MAX_GROUPS = 1000
#: Attribute list that asks for no attributes (RFC 4511 4.5.1.8).
NO_ATTRIBUTES = "1.1"
#: What a person sees for any refused credential (which part was wrong is
#: for the audit log, not for a guesser).
WRONG_CREDENTIALS = "wrong user name or password"


class DirectoryUnreachableError(Exception):
    """A server could not be used; the message says why, in words."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A directory entry: its DN and its attributes' raw values (names folded)."""

    dn: str
    attributes: dict[str, list[bytes]]

    def values(self, name: str) -> list[bytes]:
        return self.attributes.get(name.lower(), [])

    def text(self, name: str) -> str:
        """The first value of ``name`` as text ('' when absent or not text)."""
        for raw in self.values(name):
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return ""
        return ""


class PinnedTls(Tls):
    """TLS as this provider wants it, replacing ldap3's own wrapping.

    The context trusts only the configured CA (or the system's list when
    none is set) and lets OpenSSL check the host name (ldap3's own check
    uses ``ssl.match_hostname``, deprecated and gone in Python 3.12). A
    pinned CA may be an intermediate or the server's own certificate:
    partial chains are accepted. What happened is kept for the messages.
    """

    def __init__(self, settings: LdapSettings, host: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        context = ssl.create_default_context(cadata=settings.ca_pem or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = settings.verify_hostname
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        self.context = context
        self.host = host
        self.failure = ""
        self.summary = ""

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        try:
            wrapped = self.context.wrap_socket(
                connection.socket, server_side=False, server_hostname=self.host
            )
        except ssl.SSLCertVerificationError as exc:
            self.failure = _verify_failure(exc, self.host)
            raise
        except TimeoutError:
            raise  # a server that does not answer: "cannot reach", not a TLS fault
        except (ssl.SSLError, OSError) as exc:
            self.failure = _handshake_failure(exc)
            raise
        connection.socket = wrapped
        self.summary = _tls_summary(wrapped)


def _verify_failure(exc: ssl.SSLCertVerificationError, host: str) -> str:
    code = exc.verify_code
    if code in (2, 19, 20, 21):  # no issuer / self-signed / local issuer / leaf only
        return (
            f"its certificate is not signed by the CA this provider trusts ({exc.verify_message})"
        )
    if code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
        return f"its certificate is not for {host} ({exc.verify_message})"
    if code == 10:
        return "its certificate has expired"
    return f"its certificate was refused ({exc.verify_message or _reason(exc)})"


def _handshake_failure(exc: BaseException) -> str:
    reason = _reason(exc)
    if "WRONG_VERSION_NUMBER" in reason or "record layer failure" in reason:
        return "the server does not speak TLS there (an ldap:// port?)"
    if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason or isinstance(exc, ConnectionError):
        return "the server closed the connection during the handshake (an ldap:// port?)"
    return f"the handshake failed ({reason})"


def _tls_summary(sock: ssl.SSLSocket) -> str:
    cert = sock.getpeercert() or {}

    def name(part: str) -> str:
        # getpeercert() gives a name as a tuple of RDNs, each a tuple of pairs.
        rdns: Any = cert.get(part, ())
        for rdn in rdns:
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return "?"

    not_after = str(cert.get("notAfter", ""))
    until = ""
    if not_after:
        stamp = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), datetime.UTC)
        until = f", valid until {stamp:%Y-%m-%d %H:%M} UTC"
    return f"{sock.version()}, certificate of {name('subject')} issued by {name('issuer')}{until}"


def _reason(exc: BaseException) -> str:
    """An exception's words without ldap3's and errno's prefixes."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc)
    for prefix in (
        "socket connection error while opening: ",
        "socket ssl wrapping error: ",
        "wrap socket error: ",
        "startTLS failed - ",
    ):
        text = text.removeprefix(prefix)
    if text.startswith("[Errno"):
        text = text.split("] ", 1)[-1]
    if "timed out" in text.lower():
        return "no answer in time"
    return text[:200] or type(exc).__name__


def _result(conn: Connection) -> str:
    result = conn.result or {}
    words = str(result.get("description") or "no answer")
    message = str(result.get("message") or "").strip()
    return f"{words}: {message[:200]}" if message else words


@dataclass(slots=True)
class Session:
    """An open, (maybe) TLS-protected connection to one server."""

    address: ServerAddress
    conn: Connection
    tls: str = ""

    def close(self) -> None:
        """Unbind and close (a server gone already is no error)."""
        _discard(self.conn)


def _discard(conn: Connection) -> None:
    """Unbind and close the socket, whatever state the connection is in
    (ldap3 leaves a socket open when its connect or handshake fails)."""
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


class Directory:
    """One provider's directory, used synchronously (in a thread)."""

    def __init__(self, settings: LdapSettings, name: str) -> None:
        self.settings = settings
        self.name = name

    # --- connections --------------------------------------------------------------

    def _server(self, address: ServerAddress) -> tuple[Server, PinnedTls | None]:
        tls = (
            None
            if self.settings.security is Security.NONE
            else PinnedTls(self.settings, address.host)
        )
        server = Server(
            address.host,
            port=address.port,
            use_ssl=self.settings.security is Security.LDAPS,
            tls=tls,
            get_info=NONE,
            connect_timeout=self.settings.timeout,
        )
        return server, tls

    def open(self, address: ServerAddress, user: str = "", password: str = "") -> Session:
        """Connect to ``address`` (TLS as configured), not yet bound."""
        server, tls = self._server(address)
        conn = Connection(
            server,
            user=user or None,
            password=password or None,
            authentication=SIMPLE if user else ANONYMOUS,
            auto_bind=False,
            auto_referrals=False,
            read_only=True,
            raise_exceptions=False,
            receive_timeout=self.settings.timeout,
            return_empty_attributes=False,
        )
        try:
            conn.open(read_server_info=False)
            if self.settings.security is Security.STARTTLS:
                conn.start_tls(read_server_info=False)
        except LDAPStartTLSError as exc:
            _discard(conn)
            why = (
                tls.failure
                if tls and tls.failure
                else f"the server refused StartTLS ({_reason(exc)})"
            )
            raise DirectoryUnreachableError(f"StartTLS with {address.url} failed: {why}") from None
        except (LDAPException, OSError) as exc:
            _discard(conn)
            if tls is not None and tls.failure:
                raise DirectoryUnreachableError(
                    f"TLS with {address.url} failed: {tls.failure}"
                ) from None
            raise DirectoryUnreachableError(f"cannot reach {address.url}: {_reason(exc)}") from None
        return Session(address, conn, tls.summary if tls else "without TLS")

    @contextlib.contextmanager
    def connect(self) -> Iterator[Session]:
        """A session on the first server that answers, tried in order;
        DirectoryUnreachableError naming every failure when none does."""
        failures: list[str] = []
        for address in self.settings.servers:
            try:
                session = self.open(address)
            except DirectoryUnreachableError as exc:
                log.warning("%s: %s", self.name, exc)
                failures.append(str(exc))
                continue
            try:
                yield session
            finally:
                session.close()
            return
        raise DirectoryUnreachableError("; ".join(failures))

    @contextlib.contextmanager
    def service_session(self) -> Iterator[Session]:
        """Connected and bound as the service account (or anonymous)."""
        try:
            with self.connect() as session:
                self.bind_service(session)
                yield session
        except DirectoryUnreachableError as exc:
            raise ProviderUnavailableError(
                f"{self.name} cannot be used right now: {exc}",
                hint="try again later, or sign in with a local account",
            ) from None

    def bind_service(self, session: Session) -> None:
        """Bind as the service account (anonymous: nothing to do)."""
        if not self.settings.bind_dn:
            return
        conn = session.conn
        try:
            ok = conn.rebind(
                user=self.settings.bind_dn,
                password=self.settings.bind_password,
                authentication=SIMPLE,
                read_server_info=False,
            )
        except LDAPException as exc:
            raise DirectoryUnreachableError(
                f"the service account's bind at {session.address.url} failed: {_reason(exc)}"
            ) from None
        if not ok:
            raise DirectoryUnreachableError(
                f"{session.address.url} refused the service account ({_result(conn)})"
            )

    # --- reading ----------------------------------------------------------------------

    def _search(
        self,
        session: Session,
        base: str,
        search_filter: str,
        *,
        scope: Literal["BASE", "LEVEL", "SUBTREE"] = SUBTREE,
        attributes: Sequence[str] = (NO_ATTRIBUTES,),
        limit: int = 0,
    ) -> list[Entry]:
        conn = session.conn
        try:
            conn.search(
                base,
                search_filter,
                search_scope=scope,
                attributes=list(attributes),
                size_limit=limit,
                time_limit=self.settings.timeout,
            )
        except LDAPException as exc:
            raise DirectoryUnreachableError(
                f"searching {session.address.url} failed: {_reason(exc)}"
            ) from None
        description = str((conn.result or {}).get("description", ""))
        if description == "noSuchObject":
            raise DirectoryUnreachableError(f"{base} does not exist (or may not be read)")
        if description not in ("success", "sizeLimitExceeded"):
            raise DirectoryUnreachableError(f"searching {base} failed ({_result(conn)})")
        entries = []
        for item in conn.response or []:
            if item.get("type") != "searchResEntry":
                continue  # a referral: not followed
            raw = item.get("raw_attributes") or {}
            entries.append(
                Entry(str(item["dn"]), {str(k).lower(): list(v) for k, v in raw.items()})
            )
        return entries

    def read_base(self, session: Session, base: str) -> None:
        """Check that ``base`` exists and can be read."""
        if not self._search(session, base, "(objectClass=*)", scope=BASE):
            raise DirectoryUnreachableError(f"{base} cannot be read")

    def _user_attributes(self) -> list[str]:
        s = self.settings
        wanted = [s.attr_username, s.attr_display_name, s.attr_email, s.attr_subject]
        if s.disabled_check is DisabledCheck.AD:
            wanted.append("userAccountControl")
        if s.group_source is GroupSource.MEMBER_OF:
            wanted.append("memberOf")
        return sorted({a for a in wanted if a}) or [NO_ATTRIBUTES]

    def find_user(self, session: Session, username: str) -> Entry | None:
        """The one entry the user filter finds for ``username``; None when
        none does. Two or more is a configuration fault, said so."""
        search_filter = self.settings.user_filter.replace(USERNAME, escape_filter_chars(username))
        found = self._search(
            session,
            self.settings.base_dn,
            search_filter,
            attributes=self._user_attributes(),
            limit=2,
        )
        if len(found) > 1:
            raise DirectoryUnreachableError(
                f"the user filter finds more than one entry for {username[:64]!r}: "
                "make it match one person only"
            )
        return found[0] if found else None

    def disabled_because(self, session: Session, entry: Entry) -> str:
        """Why the account is disabled in the directory ('' when it is not)."""
        s = self.settings
        if s.disabled_check is DisabledCheck.AD:
            raw = entry.text("userAccountControl")
            if not raw.lstrip("-").isdigit():
                return "it has no userAccountControl (is this Active Directory?)"
            if int(raw) & ACCOUNTDISABLE:
                return f"userAccountControl {raw} has ACCOUNTDISABLE"
            return ""
        if s.disabled_check is DisabledCheck.FILTER and not self._search(
            session, entry.dn, s.enabled_filter, scope=BASE
        ):
            return f"it does not match {s.enabled_filter}"
        return ""

    def groups(self, session: Session, entry: Entry, username: str) -> tuple[str, ...]:
        """The person's groups, named as the mappings name them."""
        s = self.settings
        names: list[str] = []
        if s.group_source is GroupSource.MEMBER_OF:
            for raw in entry.values("memberOf")[:MAX_GROUPS]:
                dn = raw.decode("utf-8", "replace")
                names.append(dn if s.group_name is GroupName.DN else _leading_cn(dn))
        elif s.group_source is GroupSource.SEARCH:
            search_filter = s.group_filter.replace(DN, escape_filter_chars(entry.dn)).replace(
                USERNAME, escape_filter_chars(username)
            )
            attributes = ["cn"] if s.group_name is GroupName.CN else [NO_ATTRIBUTES]
            found = self._search(
                session, s.group_base_dn, search_filter, attributes=attributes, limit=MAX_GROUPS
            )
            for group in found:
                names.append(
                    group.dn if s.group_name is GroupName.DN else group.text("cn") or group.dn
                )
        if len(names) >= MAX_GROUPS:
            log.warning(
                "%s: more than %d groups for %s; the rest are not read",
                self.name,
                MAX_GROUPS,
                entry.dn,
            )
        return tuple(sorted({n for n in names if n}, key=str.casefold))

    def password_ok(self, address: ServerAddress, dn: str, password: str) -> bool:
        """Whether ``dn`` binds with ``password`` at ``address`` (a
        connection of its own, so the service session keeps its rights)."""
        if not password:
            # An empty password is an unauthenticated bind (RFC 4513 5.1.2),
            # which many servers accept as anonymous: never a sign-in.
            return False
        session = self.open(address, dn, password)
        try:
            ok = bool(session.conn.bind(read_server_info=False))
        except LDAPException as exc:
            raise DirectoryUnreachableError(
                f"binding as {dn} at {address.url} failed: {_reason(exc)}"
            ) from None
        finally:
            session.close()
        if not ok:
            result = session.conn.result or {}
            if result.get("description") != "invalidCredentials":
                log.info("%s: bind as %s refused: %s", self.name, dn, _result(session.conn))
        return ok

    def username(self, entry: Entry, typed: str) -> str:
        """The person's user name as the directory spells it (else as typed)."""
        name = self.settings.attr_username
        return (entry.text(name) if name else "") or typed

    def identity(self, entry: Entry, typed: str, groups: tuple[str, ...]) -> ExternalIdentity:
        """Who ``entry`` is, for the framework."""
        s = self.settings
        return ExternalIdentity(
            subject=self.subject(entry),
            username=self.username(entry, typed),
            display_name=entry.text(s.attr_display_name) if s.attr_display_name else "",
            email=entry.text(s.attr_email) if s.attr_email else "",
            groups=groups,
        )

    def subject(self, entry: Entry) -> str:
        """The entry's stable identifier: the configured attribute (a GUID
        as AD shows it), else its DN."""
        name = self.settings.attr_subject
        values = entry.values(name) if name else []
        if not values:
            return entry.dn
        raw = values[0]
        if name.lower() == "objectguid" and len(raw) == 16:
            return str(uuid.UUID(bytes_le=raw))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex()
        return text if text.isprintable() else raw.hex()

    # --- signing in -------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> ExternalIdentity:
        """Search, then bind as the person, then check the account and read
        their groups (blocking)."""
        if not username or not password:
            raise CredentialsRejectedError(WRONG_CREDENTIALS)
        with self.service_session() as session:
            try:
                entry = self.find_user(session, username)
                if entry is None:
                    log.info("%s: no entry for %r", self.name, username[:64])
                    raise CredentialsRejectedError(WRONG_CREDENTIALS)
                if not self.password_ok(session.address, entry.dn, password):
                    log.info("%s: wrong password for %s", self.name, entry.dn)
                    raise CredentialsRejectedError(WRONG_CREDENTIALS)
                # After the password: a guesser learns nothing of the account.
                why = self.disabled_because(session, entry)
                if why:
                    log.info("%s: %s is disabled: %s", self.name, entry.dn, why)
                    raise CredentialsRejectedError(
                        f"this account is disabled in {self.name}",
                        hint="ask the directory's administrator",
                    )
                groups = self.groups(session, entry, self.username(entry, username))
                return self.identity(entry, username, groups)
            except DirectoryUnreachableError as exc:
                raise ProviderUnavailableError(
                    f"{self.name} cannot be used right now: {exc}",
                    hint="an administrator can test its settings",
                ) from None


def _leading_cn(dn: str) -> str:
    """A group DN's leading cn value (``CN=Admins,OU=x`` -> ``Admins``), else the DN."""
    try:
        parts = parse_dn(dn)
    except LDAPException:
        return dn
    if parts and parts[0][0].lower() == "cn":
        return _unescape_dn_value(parts[0][1])
    return dn


def _unescape_dn_value(value: str) -> str:
    """An RFC 4514 attribute value without its escapes (``a\\, b`` -> ``a, b``,
    ``Zo\\c3\\ab`` -> ``Zoë``)."""
    out = bytearray()
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(h in "0123456789abcdefABCDEF" for h in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            c = value[i + 1]
            i += 1
        out += c.encode("utf-8")
        i += 1
    return out.decode("utf-8", "replace")
