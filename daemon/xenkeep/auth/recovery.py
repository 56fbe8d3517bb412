"""One-time recovery codes: a way in when the authenticator is lost.

Each code works once, in place of a TOTP code at sign-in (throttled like
any other attempt, see ``AuthManager.authenticate``). They are shown once,
when made; only their hashes are kept. A code carries 80 random bits, so an
unsalted SHA-256 is enough: a copy of the database does not give them back.
Making a new set replaces the old one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final

from xenkeep.auth.secrets import SETUP_ALPHABET, token_hash
from xenkeep.store import Database

#: Codes in a set.
CODES_PER_SET: Final = 10
#: Characters of a code (Crockford base32: 5 bits each, 80 bits).
CODE_CHARS: Final = 16
CODE_GROUP: Final = 4
#: The longest text that can be a code as typed (groups, dashes, spaces).
MAX_CODE_TEXT: Final = 32


def new_code() -> str:
    """A code as shown: ``XXXX-XXXX-XXXX-XXXX``."""
    chars = "".join(secrets.choice(SETUP_ALPHABET) for _ in range(CODE_CHARS))
    return "-".join(chars[i : i + CODE_GROUP] for i in range(0, CODE_CHARS, CODE_GROUP))


def normalize(text: str) -> str | None:
    """The canonical form of a typed code (case, dashes and spaces ignored,
    the letters Crockford reads as digits accepted); None when it cannot be one."""
    cleaned = text.strip().upper().replace("-", "").replace(" ", "")
    cleaned = cleaned.translate(str.maketrans("OIL", "011"))
    if len(cleaned) != CODE_CHARS or any(ch not in SETUP_ALPHABET for ch in cleaned):
        return None
    return cleaned


def looks_like_code(text: str) -> bool:
    """True when ``text`` has the shape of a recovery code (not of a TOTP code)."""
    return normalize(text) is not None


class RecoveryCodes:
    """The ``recovery_codes`` table."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def replace(self, user_id: int) -> list[str]:
        """A new set for the user (the old one stops working); shown once."""
        codes = [new_code() for _ in range(CODES_PER_SET)]
        now = self._clock()
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
            await tx.executemany(
                "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, ?)",
                [(user_id, token_hash(str(normalize(c))), now) for c in codes],
            )
        return codes

    async def use(self, user_id: int, text: str) -> bool:
        """Spend one code: True once for each code made, never again.

        One conditional write, so of requests racing with one code exactly
        one gets it.
        """
        code = normalize(text)
        if code is None:
            return False
        spent = await self._db.execute(
            "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? "
            "AND used_at IS NULL",
            (self._clock(), user_id, token_hash(code)),
        )
        return spent == 1

    async def remaining(self, user_id: int) -> int:
        """How many codes of the user's set are still unused."""
        row = await self._db.fetchone(
            "SELECT count(*) AS n FROM recovery_codes WHERE user_id = ? AND used_at IS NULL",
            (user_id,),
        )
        return 0 if row is None else int(row["n"])

    async def forget(self, user_id: int) -> None:
        """Remove the user's codes (a new authenticator, a disabled second factor)."""
        await self._db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
