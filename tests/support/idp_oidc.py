"""A real OpenID provider on loopback: panva/oidc-provider under Node.

Session-scoped fixtures start one provider per claim profile:

- ``oidc_idp``: a generic provider (``preferred_username``, ``groups``; the
  profile read from userinfo, as conforming providers do), signing ID tokens
  with RS256, ES256 or HS256 as each client registered;
- ``google_idp``: Google's claim names (``email``, ``email_verified``,
  ``name``, ``hd``; no groups) in the ID token itself, RS256 only, for the
  Google preset (pointed at it by its test hook).

Each serves HTTPS with a certificate of a test CA the daemon pins. Tests
register their own client (RFC 7591 dynamic registration: the daemon's
callback port is only known once it runs) and may ask, through the
server's control routes, for the next ID token to be tampered with or for
the codes issued so far to expire.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from authlib.jose import JsonWebKey

from tests.support.npm import installed
from tests.support.testca import ServerCert, TestCA

PACKAGE = Path(__file__).resolve().parent / "oidc_op"
START_TIMEOUT = 60.0

#: The generic provider's people: login -> password and claims.
GENERIC_ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {
        "login": "alice",
        "password": "alice-wonderland-42",
        "claims": {
            "preferred_username": "alice",
            "name": "Alice Liddell",
            "email": "alice@example.org",
            "email_verified": True,
            "groups": ["xenkeep-operators", "staff"],
        },
    },
    "bob": {
        "login": "bob",
        "password": "bob-builder-42",
        "claims": {
            "preferred_username": "bob",
            "name": "Bob",
            "email": "bob@elsewhere.example",
            "email_verified": False,
            "groups": [],
        },
    },
    "dave": {
        "login": "dave",
        "password": "dave-disabled-42",
        "disabled": True,
        "claims": {"preferred_username": "dave", "email": "dave@example.org"},
    },
}

#: Google-shaped people: numeric subjects, hd for Workspace accounts.
GOOGLE_ACCOUNTS: dict[str, dict[str, Any]] = {
    "110169484474386276334": {
        "login": "carol",
        "password": "carol-workspace-42",
        "claims": {
            "email": "carol@example.com",
            "email_verified": True,
            "name": "Carol Danvers",
            "given_name": "Carol",
            "family_name": "Danvers",
            "hd": "example.com",
        },
    },
    "104738192837465019283": {
        "login": "erin",
        "password": "erin-personal-42",
        "claims": {"email": "erin@gmail.com", "email_verified": True, "name": "Erin"},
    },
    "118273645019283746501": {
        "login": "frank",
        "password": "frank-unverified-42",
        "claims": {
            "email": "frank@example.com",
            "email_verified": False,
            "name": "Frank",
            "hd": "example.com",
        },
    },
}

PROFILES: dict[str, dict[str, Any]] = {
    "generic": {
        "claims": {
            "openid": ["sub"],
            "profile": ["name", "preferred_username"],
            "email": ["email", "email_verified"],
            "groups": ["groups"],
        },
        "conform_id_token_claims": True,
        "id_token_algs": ["RS256", "ES256", "HS256"],
        "accounts": GENERIC_ACCOUNTS,
    },
    "google": {
        "claims": {
            "openid": ["sub", "hd"],
            "profile": ["name", "given_name", "family_name"],
            "email": ["email", "email_verified"],
        },
        "conform_id_token_claims": False,
        "id_token_algs": ["RS256"],
        "accounts": GOOGLE_ACCOUNTS,
    },
}


@dataclass(frozen=True, slots=True)
class Client:
    """A client registered at the provider."""

    client_id: str
    client_secret: str


@dataclass
class OidcIdp:
    """A running provider and the controls the tests have over it."""

    issuer: str
    ca: TestCA
    cert: ServerCert
    registration_token: str
    control_token: str
    accounts: dict[str, dict[str, Any]]
    process: subprocess.Popen[str]
    log_lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.issuer.rsplit(":", 1)[1])

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.ca_path))

    def _call(self, path: str, body: Any, headers: dict[str, str]) -> Any:
        request = urllib.request.Request(  # noqa: S310 (https to our own test server)
            self.issuer + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **headers},
            method="POST",
        )
        with urllib.request.urlopen(request, context=self._context(), timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read() or b"{}")

    def register_client(
        self,
        redirect_uri: str,
        *,
        alg: str = "RS256",
        auth_method: str = "client_secret_basic",
    ) -> Client:
        """A new client for a daemon whose callback is ``redirect_uri``."""
        answer = self._call(
            "/reg",
            {
                "redirect_uris": [redirect_uri],
                "response_types": ["code"],
                "grant_types": ["authorization_code"],
                "token_endpoint_auth_method": auth_method,
                "id_token_signed_response_alg": alg,
            },
            {"Authorization": f"Bearer {self.registration_token}"},
        )
        return Client(answer["client_id"], answer["client_secret"])

    def control(self, path: str, body: Any = None) -> Any:
        return self._call(f"/__test/{path}", body or {}, {"X-Test-Control": self.control_token})

    def tamper(
        self,
        kind: str,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
    ) -> None:
        """Make the next token answer's ID token tampered with ``kind``
        (signature, payload, alg-none, hs256-client-secret,
        hs256-public-key, resign)."""
        self.control("tamper", {"kind": kind, "claims": claims or {}, "header": header or {}})

    def untamper(self) -> None:
        self.control("tamper", {})

    def expire_codes(self) -> int:
        """Expire every authorization code issued so far; how many."""
        return int(self.control("expire-codes")["expired"])

    def login_of(self, account: str) -> tuple[str, str]:
        """(login, password) of an account."""
        entry = self.accounts[account]
        return str(entry["login"]), str(entry["password"])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _jwks() -> dict[str, Any]:
    keys = []
    for kty, size in (("RSA", 2048), ("EC", "P-256")):
        key = JsonWebKey.generate_key(kty, size, is_private=True)
        entry = key.as_dict(is_private=True)
        entry["kid"] = f"{kty.lower()}-{key.thumbprint()[:12]}"
        entry["use"] = "sig"
        keys.append(entry)
    return {"keys": keys}


def start_idp(directory: Path, profile: str) -> OidcIdp:
    """Start a provider of ``profile`` with its state under ``directory``."""
    modules = installed(PACKAGE)
    ca = TestCA(directory / "ca", f"XenKeep test CA ({profile} OpenID provider)")
    cert = ca.issue("op")
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    spec = PROFILES[profile]
    accounts = {account_id: dict(entry) for account_id, entry in spec["accounts"].items()}
    config = {
        "issuer": issuer,
        "port": port,
        "cert": str(cert.cert),
        "key": str(cert.key),
        "jwks": _jwks(),
        "cookie_key": secrets.token_hex(16),
        "registration_token": secrets.token_urlsafe(24),
        "control_token": secrets.token_urlsafe(24),
        "claims": spec["claims"],
        "conform_id_token_claims": spec["conform_id_token_claims"],
        "id_token_algs": spec["id_token_algs"],
        "accounts": accounts,
    }
    config_path = directory / "op.json"
    config_path.write_text(json.dumps(config))
    config_path.chmod(0o600)
    process = subprocess.Popen(
        ["node", str(modules / "server.mjs"), str(config_path)],
        cwd=modules,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    idp = OidcIdp(
        issuer=issuer,
        ca=ca,
        cert=cert,
        registration_token=config["registration_token"],
        control_token=config["control_token"],
        accounts=accounts,
        process=process,
    )
    ready = threading.Event()

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            idp.log_lines.append(line.rstrip("\n"))
            if line.startswith("listening "):
                ready.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    idp.reader = reader
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_idp(idp)
            pytest.fail("the OpenID provider did not start:\n" + "\n".join(idp.log_lines[-40:]))
    return idp


def stop_idp(idp: OidcIdp) -> None:
    if idp.process.poll() is None:
        idp.process.terminate()
        try:
            idp.process.wait(15)
        except subprocess.TimeoutExpired:
            idp.process.kill()
            idp.process.wait()
    if idp.reader is not None:
        idp.reader.join(15)
    if idp.process.stdout is not None:
        idp.process.stdout.close()


@pytest.fixture(scope="session")
def oidc_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcIdp]:
    """The generic OpenID provider."""
    idp = start_idp(tmp_path_factory.mktemp("oidc-idp"), "generic")
    try:
        yield idp
    finally:
        stop_idp(idp)


@pytest.fixture(scope="session")
def google_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcIdp]:
    """An OpenID provider speaking with Google's claim names."""
    idp = start_idp(tmp_path_factory.mktemp("google-idp"), "google")
    try:
        yield idp
    finally:
        stop_idp(idp)
