"""The HTTPS certificate: self-signed, made on first start, kept.

The appliance has no name a public CA could vouch for, so it creates its own
ECDSA P-256 certificate and shows its SHA-256 fingerprint on the console, in
the log and from ``xenkeep status`` so the admin can check what the browser
shows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
VALIDITY_DAYS = 3650
#: OpenSSL's names for the TLS 1.2 suites offered (see server_context).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """Paths of the certificate and key, and the certificate's fingerprint."""

    cert_path: Path
    key_path: Path
    fingerprint: str

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for the HTTPS listener.

        TLS 1.2 and 1.3 only, and in 1.2 only forward-secret AEAD suites
        (ECDHE with AES-GCM or ChaCha20-Poly1305): CBC suites have a long
        history of padding-oracle attacks and nothing that manages a
        XenServer pool today needs them. Every TLS 1.3 suite is AEAD.
        """
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(TLS12_CIPHERS)
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def names(self) -> list[str]:
        """The host names and addresses the certificate vouches for."""
        from cryptography import x509  # see _make_certificate

        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        names: list[str] = list(sans.get_values_for_type(x509.DNSName))
        names += [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
        return names


def format_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated upper-case hex."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def certificate_fingerprint(cert_path: Path) -> str:
    """The SHA-256 fingerprint of a PEM certificate file.

    With the standard library only: the console banner and ``xenkeep
    status`` need nothing else of the certificate, and importing
    ``cryptography`` takes seconds under emulation.
    """
    return format_fingerprint(ssl.PEM_cert_to_DER_cert(cert_path.read_text()))


def _local_addresses(hostname: str) -> set[str]:
    addresses = {"127.0.0.1", "::1"}
    try:
        for info in socket.getaddrinfo(hostname, None):
            addresses.add(str(info[4][0]))
    except OSError:
        pass
    return addresses


def _make_certificate(hostname: str) -> tuple[bytes, bytes]:
    # Imported here, at first start only: a later start reads the kept files.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "xenkeep")])
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    for addr in sorted(_local_addresses(hostname)):
        sans.append(x509.IPAddress(ipaddress.ip_address(addr.split("%")[0])))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_private(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


def ensure_certificate(tls_dir: Path, hostname: str) -> TlsMaterial:
    """Return the kept certificate, creating it on first start.

    The key is written before the certificate, so a crash in between leaves
    no certificate and the next start makes a fresh pair.
    """
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = tls_dir / CERT_NAME, tls_dir / KEY_NAME
    if not (cert_path.exists() and key_path.exists()):
        cert_pem, key_pem = _make_certificate(hostname)
        _write_private(key_path, key_pem, 0o600)
        _write_private(cert_path, cert_pem, 0o644)
    return TlsMaterial(cert_path, key_path, certificate_fingerprint(cert_path))
