"""Certificates for test servers: a throw-away CA, a server certificate it
signs for loopback, and self-signed key pairs (a SAML IdP's signing key)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

_KEY_BITS = 2048


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A private key and its certificate, as PEM files."""

    key: Path
    cert: Path

    @property
    def cert_pem(self) -> str:
        return self.cert.read_text()

    def cert_base64(self) -> str:
        """The certificate's DER in base64 on one line (as metadata carries it)."""
        return "".join(self.cert_pem.strip().splitlines()[1:-1])


def _write(directory: Path, stem: str, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / f"{stem}.key"
    cert_path = directory / f"{stem}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return KeyPair(key_path, cert_path)


def _builder(
    subject: str, issuer: str, public: rsa.RSAPublicKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def self_signed(directory: Path, stem: str, common_name: str, days: int = 365) -> KeyPair:
    """A self-signed key pair (what a SAML entity signs with)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    cert = _builder(common_name, common_name, key.public_key(), days).sign(key, hashes.SHA256())
    return _write(directory, stem, key, cert)


@dataclass(frozen=True, slots=True)
class LoopbackCA:
    """A CA and the loopback server certificate it signed."""

    ca: KeyPair
    server: KeyPair


def loopback_ca(directory: Path, name: str) -> LoopbackCA:
    """A CA named ``name`` and a certificate it signs for 127.0.0.1 and localhost."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    ca_cert = (
        _builder(f"{name} CA", f"{name} CA", ca_key.public_key(), 30)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    server_cert = (
        _builder("127.0.0.1", f"{name} CA", server_key.public_key(), 30)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return LoopbackCA(
        _write(directory, f"{name}-ca", ca_key, ca_cert),
        _write(directory, f"{name}-server", server_key, server_cert),
    )
