"""Redaction of what goes into a support bundle. Pure.

Two layers, because a support bundle leaves the building: what is packed is
chosen field by field (no password, hash or key column is ever read into
it), and every text is then scrubbed anyway, by value (each secret the
appliance holds, decrypted for the comparison only) and by shape (API
tokens, setup tokens, private keys, ``password=...``), so a secret that
slipped into a log line or a free-text field does not leave either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

REDACTED: Final = "[redacted]"
#: A field whose name says it holds a secret (``password``, ``smtp_password``,
#: ``client_secret``, ``secrets_enc``, ``api_token``, ``private_key``...).
SECRET_NAME: Final = re.compile(
    r"(^|[_.-])(pass(word|wd|phrase)?|secrets?|tokens?|cookies?|keys?|credentials?)(_enc)?$",
    re.IGNORECASE,
)
#: Shapes of secrets, wherever they appear.
_SHAPES: Final = (
    # PEM private keys (the appliance's TLS key, an IdP's signing key).
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    # XenKeep API tokens.
    re.compile(r"xk_[A-Za-z0-9_-]{20,}"),
    # Setup tokens: seven groups of four (Crockford's alphabet).
    re.compile(r"\b[0-9A-Z]{4}(?:-[0-9A-Z]{4}){6}\b"),
    # Fernet tokens (what SecretBox stores).
    re.compile(r"gAAAAA[A-Za-z0-9_=-]{40,}"),
)
_ASSIGNMENT: Final = re.compile(
    r"(?i)\b((?:pass(?:word|wd)?|secret|token|cookie|session_id|api_key)\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)"
)
#: Values this short are not scrubbed by value (they would eat ordinary words).
MIN_SECRET_LENGTH: Final = 6


class Redactor:
    """Scrubs known secret values and secret shapes out of text and data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        # Longest first: a secret containing another is replaced whole.
        self._values = sorted(values, key=len, reverse=True)

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by :data:`REDACTED`."""
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        for shape in _SHAPES:
            text = shape.sub(REDACTED, text)
        return _ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, text)

    def data(self, value: Any) -> Any:
        """A JSON-like value with secret-named fields emptied and every string scrubbed."""
        if isinstance(value, Mapping):
            return {
                str(k): (REDACTED if v not in (None, "", False) else v)
                if SECRET_NAME.search(str(k))
                else self.data(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def string_leaves(value: Any) -> list[str]:
    """Every string inside a JSON-like value (the secrets of a provider's blob)."""
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in string_leaves(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in string_leaves(v)]
    return [value] if isinstance(value, str) else []
