"""A real SAML 2.0 identity provider on loopback: SimpleSAMLphp (Debian's
``simplesamlphp`` 1.19, PHP 8.2) served by PHP's built-in server, behind
``stunnel`` for HTTPS, configured in a temp dir of its own.

The IdP signs with a key pair this fixture makes; its users are
``exampleauth:UserPass`` accounts with attributes (groups included). A test
registers XenKeep's service provider from the metadata the daemon serves
(:meth:`SamlIdp.register_sp`, converted by SimpleSAMLphp's own metadata
parser); PHP reads its metadata files at every request, so registering
takes effect at once. Use the session fixture ``saml_idp``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yarl

from tests.support.pki import KeyPair, LoopbackCA, loopback_ca, self_signed

SIMPLESAMLPHP = Path("/usr/share/simplesamlphp")
PHP = Path("/usr/bin/php")
STUNNEL = Path("/usr/bin/stunnel4")
ATTRIBUTE_MAPS = Path("/etc/simplesamlphp/attributemap")
START_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class IdpUser:
    """An account of the test IdP and the attributes it releases."""

    username: str
    password: str
    attributes: Mapping[str, tuple[str, ...]]


USERS: tuple[IdpUser, ...] = (
    IdpUser(
        "alice",
        "alice-saml-password",
        {
            "uid": ("alice",),
            "displayName": ("Alice Liddell",),
            "mail": ("alice@example.test",),
            "groups": ("backup-operators", "staff"),
        },
    ),
    IdpUser(
        "bob",
        "bob-saml-password",
        {
            "uid": ("bob",),
            "displayName": ("Bob Builder",),
            "mail": ("bob@example.test",),
            "groups": ("staff",),
        },
    ),
)
USER = {u.username: u for u in USERS}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _php(value: Any) -> str:
    """A PHP expression for a JSON-able value (decoded by PHP itself)."""
    return f"json_decode({json.dumps(json.dumps(value))}, true)"


@dataclass
class SamlIdp:
    """The running IdP: its addresses, keys and configuration directory."""

    base_url: str
    directory: Path
    signing: KeyPair
    tls: LoopbackCA
    _sps: dict[str, str] = field(default_factory=dict)

    @property
    def entity_id(self) -> str:
        return f"{self.base_url}/saml2/idp/metadata.php"

    @property
    def metadata_url(self) -> str:
        return self.entity_id

    @property
    def sso_url(self) -> str:
        return f"{self.base_url}/saml2/idp/SSOService.php"

    @property
    def config_dir(self) -> Path:
        return self.directory / "config"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca.cert))

    def metadata_xml(self) -> str:
        """The IdP's metadata, as its own endpoint publishes it."""
        with urllib.request.urlopen(  # noqa: S310 - https to our own loopback IdP
            self.metadata_url, context=self.tls_context(), timeout=30
        ) as resp:
            return str(resp.read().decode())

    def register_sp(self, sp_metadata: str, **options: Any) -> str:
        """Trust a service provider from its metadata XML; ``options`` add to
        or override SimpleSAMLphp's settings for it (``saml20.sign.response``,
        ``assertion.encryption``, ``NameIDFormat``, ...). Its entity id."""
        source = self.directory / "sp-metadata.xml"
        source.write_text(sp_metadata)
        script = (
            "require '" + str(SIMPLESAMLPHP / "lib/_autoload.php") + "';"
            "$e = \\SimpleSAML\\Metadata\\SAMLParser::parseDescriptorsString("
            "file_get_contents($argv[1]));"
            "foreach ($e as $id => $d) { echo json_encode($d->getMetadata20SP()); break; }"
        )
        parsed = subprocess.run(
            [str(PHP), "-r", script, str(source)],
            env=self._env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        entry: dict[str, Any] = json.loads(parsed)
        entry.update(options)
        entity_id = str(entry["entityid"])
        self._sps[entity_id] = f"$metadata[{json.dumps(entity_id)}] = {_php(entry)};\n"
        self._write_sps()
        return entity_id

    def forget_sps(self) -> None:
        self._sps.clear()
        self._write_sps()

    def _write_sps(self) -> None:
        path = self.config_dir / "metadata" / "saml20-sp-remote.php"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("<?php\n" + "".join(self._sps.values()))
        tmp.replace(path)

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SIMPLESAMLPHP_CONFIG_DIR": str(self.config_dir),
        }


def _write_config(idp: SamlIdp) -> None:
    config = idp.config_dir
    (config / "metadata").mkdir(parents=True)
    for sub in ("log", "tmp", "data", "sessions"):
        (idp.directory / sub).mkdir()
    settings = {
        "baseurlpath": idp.base_url + "/",
        "certdir": str(idp.directory / "keys") + "/",
        "loggingdir": str(idp.directory / "log") + "/",
        "datadir": str(idp.directory / "data") + "/",
        "tempdir": str(idp.directory / "tmp"),
        "metadatadir": str(config / "metadata") + "/",
        "attributenamemapdir": str(ATTRIBUTE_MAPS) + "/",
        "technicalcontact_name": "XenKeep tests",
        "technicalcontact_email": "tests@example.test",
        "secretsalt": os.urandom(16).hex(),
        "auth.adminpassword": os.urandom(16).hex(),
        "admin.protectindexpage": True,
        "admin.protectmetadata": False,
        "admin.checkforupdates": False,
        "timezone": "UTC",
        "enable.saml20-idp": True,
        "enable.shib13-idp": False,
        "showerrors": True,
        "errorreporting": False,
        "logging.level": 7,  # SimpleSAML\Logger::DEBUG
        "logging.handler": "file",
        "logging.logfile": "simplesamlphp.log",
        "module.enable": {"exampleauth": True, "core": True, "saml": True, "admin": True},
        "session.cookie.secure": True,
        "session.phpsession.savepath": str(idp.directory / "sessions"),
        "store.type": "phpsession",
        "production": True,
        "metadata.sources": [{"type": "flatfile"}],
        "language.available": ["en"],
        "language.default": "en",
    }
    (config / "config.php").write_text(f"<?php\n$config = {_php(settings)};\n")
    sources: dict[str, Any] = {
        "admin": ["core:AdminPassword"],
        "example-userpass": {
            "0": "exampleauth:UserPass",
            **{
                f"{u.username}:{u.password}": {k: list(v) for k, v in u.attributes.items()}
                for u in USERS
            },
        },
    }
    # PHP: the auth source's first entry is its class (a list item, key 0).
    (config / "authsources.php").write_text(f"<?php\n$config = {_php(sources)};\n")
    hosted = {
        "host": "__DEFAULT__",
        "privatekey": idp.signing.key.name,
        "certificate": idp.signing.cert.name,
        "auth": "example-userpass",
        "NameIDFormat": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        # A stable, opaque NameID (a salted hash of the uid), as a production
        # IdP would send.
        "authproc": {"10": {"class": "saml:PersistentNameID", "attribute": "uid"}},
        "signature.algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    }
    (config / "metadata" / "saml20-idp-hosted.php").write_text(
        f"<?php\n$metadata['__DYNAMIC:1__'] = {_php(hosted)};\n"
    )
    idp._write_sps()


def _stunnel_config(idp: SamlIdp, accept: int, php_port: int) -> Path:
    path = idp.directory / "stunnel.conf"
    path.write_text(
        "foreground = yes\n"
        f"output = {idp.directory / 'log' / 'stunnel.log'}\n"
        "debug = 4\n"
        "[idp]\n"
        f"accept = 127.0.0.1:{accept}\n"
        f"connect = 127.0.0.1:{php_port}\n"
        f"cert = {idp.tls.server.cert}\n"
        f"key = {idp.tls.server.key}\n"
    )
    return path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(idp: SamlIdp, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_SECONDS
    last: Exception | None = None
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"{proc.args!r} exited with {proc.returncode}: {_logs(idp)}")
        try:
            if "IDPSSODescriptor" in idp.metadata_xml():
                return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"SimpleSAMLphp did not answer in {START_SECONDS}s ({last}): {_logs(idp)}")


def _logs(idp: SamlIdp) -> str:
    found = []
    for path in sorted((idp.directory / "log").glob("*")):
        found.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-4000:])
    return "\n".join(found)


@contextlib.contextmanager
def running_idp(directory: Path) -> Iterator[SamlIdp]:
    """SimpleSAMLphp serving HTTPS on a free loopback port until the block ends."""
    for tool in (SIMPLESAMLPHP / "www", PHP, STUNNEL):
        if not tool.exists():
            pytest.fail(f"{tool} missing: run scripts/deps.sh test")
    https_port = _free_port()
    php_port = _free_port()
    idp = SamlIdp(
        base_url=f"https://127.0.0.1:{https_port}",
        directory=directory,
        signing=self_signed(directory / "keys", "idp-signing", "XenKeep test IdP"),
        tls=loopback_ca(directory / "tls", "idp"),
    )
    _write_config(idp)
    env = idp._env()
    # PHP's server answers one request at a time unless given workers.
    env["PHP_CLI_SERVER_WORKERS"] = "4"
    procs: list[subprocess.Popen[bytes]] = []
    with (directory / "log" / "php.log").open("wb") as php_log:
        procs.append(
            subprocess.Popen(
                [
                    str(PHP),
                    "-d",
                    f"session.save_path={directory / 'sessions'}",
                    "-d",
                    "display_errors=stderr",
                    "-S",
                    f"127.0.0.1:{php_port}",
                    "-t",
                    str(SIMPLESAMLPHP / "www"),
                ],
                env=env,
                stdout=php_log,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )
        )
    procs.append(
        subprocess.Popen(
            [str(STUNNEL), str(_stunnel_config(idp, https_port, php_port))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=directory,
        )
    )
    try:
        _wait_ready(idp, procs)
        yield idp
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.fixture(scope="session")
def saml_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamlIdp]:
    """One SimpleSAMLphp IdP for the whole session; tests register their SP."""
    directory = tmp_path_factory.mktemp("saml-idp")
    with running_idp(directory) as idp:
        yield idp
    shutil.rmtree(directory, ignore_errors=True)


#: SimpleSAMLphp settings of an SP (``register_sp``'s keywords) for answers
#: of other shapes.
SIGN_RESPONSE_ONLY = {"saml20.sign.response": True, "saml20.sign.assertion": False}
SIGN_NOTHING = {"saml20.sign.response": False, "saml20.sign.assertion": False}
ENCRYPT_ASSERTION = {"assertion.encryption": True}
OID_ATTRIBUTE_NAMES = {
    "attributes.NameFormat": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
    "authproc": {"50": {"class": "core:AttributeMap", "0": "name2oid"}},
}


@dataclass(frozen=True, slots=True)
class PostedAnswer:
    """The form the IdP's page posts by itself: where to, and its fields."""

    action: str
    fields: dict[str, str]

    @property
    def saml_response(self) -> str:
        return self.fields["SAMLResponse"]

    @property
    def relay_state(self) -> str:
        return self.fields.get("RelayState", "")


class IdpRefused(AssertionError):
    """The IdP answered with a page, not a posted answer (wrong password...)."""


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.errors: list[str] = []
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif "error" in a.get("class", "") or a.get("id") == "error":
            self._in_error = True

    def handle_data(self, data: str) -> None:
        if self._in_error and data.strip():
            self.errors.append(data.strip())


class IdpSession:
    """One person's browser at the IdP (its cookies), driven over HTTP."""

    def __init__(self, idp: SamlIdp) -> None:
        self.idp = idp
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(ssl=idp.tls_context()),
        )

    async def _page(self, method: str, url: str, **kw: Any) -> tuple[str, str]:
        # encoded=True: a signed redirect's query must reach the IdP byte for
        # byte, as a browser sends it (the signature covers the raw query).
        async with self.session.request(method, yarl.URL(url, encoded=True), **kw) as resp:
            return str(resp.url), await resp.text()

    async def sign_in(self, url: str, username: str, password: str) -> PostedAnswer:
        """Follow a sign-in request to the IdP, give the credentials there,
        and return the answer the IdP's page would post back."""
        where, page = await self._page("GET", url)
        forms = _Forms()
        forms.feed(page)
        login = [f for f in forms.forms if "AuthState" in f[1]]
        if login:
            action = where.split("?", 1)[0]
            fields = {
                "username": username,
                "password": password,
                "AuthState": login[0][1]["AuthState"],
            }
            where, page = await self._page("POST", action, data=fields)
        return self._answer(page)

    async def unsolicited(self, sp_entity_id: str) -> PostedAnswer:
        """An IdP-initiated answer for an SP (the person is signed in at the IdP)."""
        _, page = await self._page(
            "GET", f"{self.idp.sso_url}?spentityid={quote(sp_entity_id, safe='')}"
        )
        return self._answer(page)

    @staticmethod
    def _answer(page: str) -> PostedAnswer:
        forms = _Forms()
        forms.feed(page)
        for action, fields in forms.forms:
            if "SAMLResponse" in fields:
                return PostedAnswer(action, fields)
        text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
        cause = text.find("Caused by")
        raise IdpRefused(
            text[cause : cause + 800] if cause >= 0 else " ".join(forms.errors) or text[:1500]
        )

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def idp_session(saml_idp: SamlIdp) -> AsyncIterator[IdpSession]:
    """A fresh browser at the session's IdP."""
    tab = IdpSession(saml_idp)
    yield tab
    await tab.close()
