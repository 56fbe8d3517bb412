"""Time-based one-time passwords (RFC 6238) for local accounts."""

from __future__ import annotations

import hmac
import time

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


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to, within one step of clock drift.

    Callers remember the last step they accepted and refuse it and older
    ones, so a code cannot be used twice (RFC 6238, section 5.2).
    """
    digits = "".join(ch for ch in code if ch.isdigit())
    if len(digits) != 6:
        return None
    generator = pyotp.TOTP(secret)
    moment = time.time() if now is None else now
    step = int(moment // generator.interval)
    found = None
    # Check every candidate so timing does not tell which one matched.
    for candidate in (step - 1, step, step + 1):
        expected = generator.generate_otp(candidate)
        if hmac.compare_digest(expected, digits):
            found = candidate
    return found
