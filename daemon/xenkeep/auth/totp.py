"""Time-based one-time passwords (RFC 6238) for local accounts."""

from __future__ import annotations

import pyotp
import segno


def new_secret() -> str:
    """A fresh base32 TOTP secret."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no external service sees the secret)."""
    qr = segno.make(uri, error="m")
    return str(qr.svg_inline(scale=4, dark="#111", light="#fff"))


def verify(secret: str, code: str) -> bool:
    """True when ``code`` is valid now (one step of clock drift allowed)."""
    digits = "".join(ch for ch in code if ch.isdigit())
    if len(digits) != 6:
        return False
    return bool(pyotp.TOTP(secret).verify(digits, valid_window=1))
