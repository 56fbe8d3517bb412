"""A real OpenLDAP ``slapd`` (Debian's) on loopback ports, for the LDAP
sign-in provider's tests.

One server for the whole session (:func:`slapd`), with its own directory
under pytest's base temporary directory: a ``slapd.conf`` (no cn=config, no
systemd), an mdb database, and TLS with a CA this fixture makes with
``openssl``. It listens on

- ``ldap://127.0.0.1:<port>`` (plain, StartTLS offered),
- ``ldaps://127.0.0.1:<port>`` and ``ldaps://127.0.0.2:<same port>``: the
  certificate names ``localhost`` and ``127.0.0.1`` only, so 127.0.0.2 is a
  host-name mismatch.

The tree (:data:`TREE`) is added over LDAP once the server runs, so the
``memberof`` overlay fills in ``memberOf`` as it would in production:
people under ``ou=people`` (OpenLDAP style: ``uid``, ``entryUUID``,
``groupOfNames``, ``posixGroup``, a ``ppolicy`` lock), and under ``ou=ad``
accounts shaped like Active Directory's (``sAMAccountName``,
``objectGUID``, ``userAccountControl`` from a small schema of the same
OIDs). A wrong CA (never used by the server) is there for refusals.

Tests that change the tree add their own entries (:meth:`RunningSlapd.modify`)
with names no other test uses, so the shared server stays as described.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SLAPD = Path("/usr/sbin/slapd")
LDAPADD = Path("/usr/bin/ldapadd")
LDAPMODIFY = Path("/usr/bin/ldapmodify")
OPENSSL = Path("/usr/bin/openssl")

BASE_DN = "dc=xenkeep,dc=test"
ADMIN_DN = f"cn=admin,{BASE_DN}"
SERVICE_DN = f"cn=xenkeep,ou=services,{BASE_DN}"
START_SECONDS = 30.0
SERVICE_PASSWORD = "service-Account-pw0"

#: Passwords of the people in :data:`TREE` (test data, never real).
PASSWORDS = {
    "alice": "alice-Directory-pw1",
    "bob": "bob-Directory-pw2",
    "carol": "carol-Directory-pw3",
    "frank": "frank-Directory-pw4",
    "zoe": "zoë-Directory-pw5",
    "ad.ann": "ann-Directory-pw6",
    "ad.dan": "dan-Directory-pw7",
}
#: The AD-style accounts' objectGUIDs (as AD shows them).
AD_GUIDS = {
    "ad.ann": uuid.UUID("8b2a9d3e-1c4f-4a5b-9e6d-7f8a9b0c1d2e"),
    "ad.dan": uuid.UUID("1f0e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
}

# Active Directory's own OIDs for the three attributes, in a schema small
# enough to sit beside OpenLDAP's (Debian's msuser.schema pulls in all of AD).
AD_SCHEMA = """\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.2 NAME 'objectGUID'
    EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.11.99.1 NAME 'xkTestAdAccount' SUP top AUXILIARY
    MUST sAMAccountName MAY ( userAccountControl $ objectGUID ) )
"""


def ssha(password: str) -> str:
    """A ``{SSHA}`` userPassword value, as slappasswd makes it."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _person(uid: str, cn: str, sn: str, mail: str, *, rdn: str = "") -> str:
    return (
        f"dn: {rdn or f'uid={uid}'},ou=people,{BASE_DN}\n"
        "objectClass: inetOrgPerson\n"
        f"uid: {uid}\ncn: {cn}\nsn: {sn}\nmail: {mail}\n"
        f"userPassword: {ssha(PASSWORDS[uid])}\n"
    )


def _ad_account(name: str, cn: str, control: int) -> str:
    guid = base64.b64encode(AD_GUIDS[name].bytes_le).decode()
    return (
        f"dn: cn={cn},ou=ad,{BASE_DN}\n"
        "objectClass: inetOrgPerson\nobjectClass: xkTestAdAccount\n"
        f"cn: {cn}\nsn: {cn.split()[-1]}\nsAMAccountName: {name}\n"
        f"displayName: {cn}\nmail: {name}@ad.xenkeep.test\n"
        f"userAccountControl: {control}\nobjectGUID:: {guid}\n"
        f"userPassword: {ssha(PASSWORDS[name])}\n"
    )


def tree() -> str:
    """The directory's entries, as LDIF (added in order)."""
    people = f"ou=people,{BASE_DN}"
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: xenkeep\n"
        "o: XenKeep test\n",
        f"dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: ou=ad,{BASE_DN}\nobjectClass: organizationalUnit\nou: ad\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: xenkeep\nuserPassword: {ssha(SERVICE_PASSWORD)}\n",
        _person("alice", "Alice Archer", "Archer", "alice@xenkeep.test"),
        _person("bob", "Bob Baker", "Baker", "bob@xenkeep.test"),
        # Locked by the password policy: the provider must refuse her.
        _person("carol", "Carol Cooper", "Cooper", "carol@xenkeep.test")
        + "pwdAccountLockedTime: 000001010000Z\n",
        # A DN with a comma and parentheses, which a group filter must escape.
        _person(
            "frank", "Frank (Ops), Jr", "Ford", "frank@xenkeep.test", rdn="cn=Frank (Ops)\\, Jr"
        ),
        _person("zoe", "Zoë Zimmer", "Zimmer", "zoe@xenkeep.test"),
        f"dn: cn=backup-admins,ou=groups,{BASE_DN}\nobjectClass: groupOfNames\n"
        f"cn: backup-admins\nmember: uid=alice,{people}\n"
        f"member: cn=Frank (Ops)\\, Jr,{people}\n",
        f"dn: cn=staff,ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: staff\n"
        f"member: uid=alice,{people}\nmember: uid=bob,{people}\n",
        f"dn: cn=operators,ou=groups,{BASE_DN}\nobjectClass: posixGroup\ncn: operators\n"
        "gidNumber: 5001\nmemberUid: bob\nmemberUid: zoe\n",
        _ad_account("ad.ann", "Ann Adams", 512),
        # ACCOUNTDISABLE (2) set, as AD shows a disabled account: 514.
        _ad_account("ad.dan", "Dan Dunn", 514),
        f"dn: cn=AD Backup Operators,ou=ad,{BASE_DN}\nobjectClass: groupOfNames\n"
        f"cn: AD Backup Operators\nmember: cn=Ann Adams,ou=ad,{BASE_DN}\n"
        f"member: cn=Dan Dunn,ou=ad,{BASE_DN}\n",
    ]
    return "\n".join(entries)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], *, stdin: str | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, cwd=cwd, check=False, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A CA certificate and key (EC P-256, two days) made by openssl."""
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _run(
        [
            str(OPENSSL), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", f"/O=XenKeep tests/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )  # fmt: skip
    return cert, key


def make_server_cert(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """slapd's certificate, for localhost and 127.0.0.1 only, signed by ``ca``."""
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    _run(
        [
            str(OPENSSL), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost",
        ]
    )  # fmt: skip
    _run(
        [
            str(OPENSSL), "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
        ]
    )  # fmt: skip
    return cert, key


@dataclass(frozen=True, slots=True)
class RunningSlapd:
    """A running test directory and what a test needs to configure a provider."""

    directory: Path
    port: int
    tls_port: int
    ca_pem: str
    wrong_ca_pem: str
    admin_password: str

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def mismatched_ldaps_url(self) -> str:
        """The same server under an address its certificate does not name."""
        return f"ldaps://127.0.0.2:{self.tls_port}"

    def provider_values(self, **overrides: str) -> dict[str, str]:
        """An LDAP provider's form values for this server: StartTLS with its
        CA pinned, the service account, groupOfNames groups, ppolicy locks."""
        values = {
            "servers": self.ldap_url,
            "security": "starttls",
            "ca_pem": self.ca_pem,
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            "base_dn": f"ou=people,{BASE_DN}",
            "user_filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
            "attr_username": "uid",
            "attr_display_name": "cn",
            "attr_email": "mail",
            "attr_subject": "entryUUID",
            "group_source": "search",
            "group_base_dn": f"ou=groups,{BASE_DN}",
            "group_filter": "(&(objectClass=groupOfNames)(member={dn}))",
            "group_name": "cn",
            "disabled_check": "filter",
            "enabled_filter": "(!(pwdAccountLockedTime=*))",
            "timeout": "5",
        }
        values.update(overrides)
        return values

    def ad_values(self, **overrides: str) -> dict[str, str]:
        """Form values for the Active Directory-shaped accounts under ou=ad."""
        values = self.provider_values(
            servers=self.ldaps_url,
            security="ldaps",
            base_dn=f"ou=ad,{BASE_DN}",
            user_filter="(&(objectClass=xkTestAdAccount)(sAMAccountName={username}))",
            attr_username="sAMAccountName",
            attr_display_name="displayName",
            attr_subject="objectGUID",
            group_source="memberof",
            disabled_check="ad",
        )
        values.update(overrides)
        return values

    def modify(self, ldif: str, *, add: bool = False) -> None:
        """Change the tree as its administrator (blocking: call it in a thread)."""
        argv = [str(LDAPADD if add else LDAPMODIFY), "-x", "-H", self.ldap_url]
        argv += ["-D", ADMIN_DN, "-w", self.admin_password]
        _run(argv, stdin=ldif)


def _config(directory: Path, admin_password: str) -> Path:
    schema = directory / "xk-ad.schema"
    schema.write_text(AD_SCHEMA)
    includes = "".join(
        f"include /etc/ldap/schema/{name}.schema\n"
        for name in ("core", "cosine", "inetorgperson", "nis")
    )
    conf = directory / "slapd.conf"
    conf.write_text(
        f"""{includes}include {schema}
pidfile {directory}/slapd.pid
argsfile {directory}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload ppolicy
TLSCACertificateFile {directory}/ca.pem
TLSCertificateFile {directory}/server.pem
TLSCertificateKeyFile {directory}/server.key
sizelimit 500

database mdb
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {ssha(admin_password)}
directory {directory}/db
maxsize 67108864
# Passwords: only to bind with. Everything else: readable by the service
# account, any bound user and anonymous searches (the anonymous-search mode).
access to attrs=userPassword by anonymous auth by self auth by * none
access to * by * read
overlay memberof
overlay ppolicy
"""
    )
    return conf


def _wait_until_up(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"slapd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"slapd did not listen in {START_SECONDS}s: {log.read_text()[-2000:]}"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def running_slapd(directory: Path) -> Iterator[RunningSlapd]:
    """Start slapd in ``directory`` with :func:`tree` loaded; stop it after."""
    for tool in (SLAPD, LDAPADD, OPENSSL):
        if not tool.exists():
            pytest.fail(f"{tool} is missing: run scripts/deps.sh test (slapd, ldap-utils, openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "db").mkdir()
    ca = make_ca(directory, "ca")
    wrong_ca, _ = make_ca(directory, "wrong-ca")
    make_server_cert(directory, ca)
    admin_password = secrets.token_urlsafe(16)
    conf = _config(directory, admin_password)
    port, tls_port = free_port(), free_port()
    urls = f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/ ldaps://127.0.0.2:{tls_port}/"
    log = directory / "slapd.log"
    # -d 0 keeps slapd in the foreground (its PID is ours to stop) and quiet.
    # Run as whoever runs the tests (no -u/-g): the files are theirs.
    argv = [str(SLAPD), "-d", "0", "-h", urls, "-f", str(conf)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(proc, port, log)
        running = RunningSlapd(
            directory=directory,
            port=port,
            tls_port=tls_port,
            ca_pem=ca[0].read_text(),
            wrong_ca_pem=wrong_ca.read_text(),
            admin_password=admin_password,
        )
        running.modify(tree(), add=True)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSlapd]:
    """The session's OpenLDAP server (see the module's docstring)."""
    with running_slapd(tmp_path_factory.mktemp("slapd") / "server") as running:
        yield running
