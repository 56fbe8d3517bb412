"""Random tokens and their stored form.

Only hashes of session ids, API tokens and the setup token reach the
database, so a copy of the database signs nobody in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Crockford's base32: no I, L, O or U, so a token read off a console
# cannot be mistyped into another valid character.
SETUP_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SETUP_TOKEN_CHARS = 28  # 140 bits, above the 128 asked for
SETUP_GROUP = 4
API_TOKEN_PREFIX = "xk_"


def token_hash(token: str) -> str:
    """The stored form of a high-entropy token (no salt needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def random_token() -> str:
    """A URL-safe token of 256 bits for sessions and CSRF."""
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    """A new API token, recognisable by its prefix in logs and configs."""
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_setup_token() -> str:
    """A setup token easy to type from a console: XXXX-XXXX-... ."""
    chars = "".join(secrets.choice(SETUP_ALPHABET) for _ in range(SETUP_TOKEN_CHARS))
    return "-".join(chars[i : i + SETUP_GROUP] for i in range(0, len(chars), SETUP_GROUP))


def normalize_setup_token(text: str) -> str:
    """Canonical form of a typed setup token: case, spaces and dashes ignored,
    the letters Crockford maps onto digits accepted."""
    cleaned = text.strip().upper().replace("-", "").replace(" ", "")
    cleaned = cleaned.translate(str.maketrans("OIL", "011"))
    return "-".join(cleaned[i : i + SETUP_GROUP] for i in range(0, len(cleaned), SETUP_GROUP))


def same(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())
