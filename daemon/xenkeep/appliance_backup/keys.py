"""The backup key: from a passphrase, or a recovery key shown once. Pure.

The copies of the configuration outlive the appliance, so their key cannot
be the appliance's own (:mod:`xenkeep.secretbox`, lost with it): it comes
from the administrator.

- A **passphrase** is stretched with argon2id (RFC 9106; memory-hard, so
  guessing it from a stolen copy costs real memory per guess). Its salt and
  costs travel in each copy's readable header, so a new appliance derives
  the same key from the same passphrase.
- A **recovery key** is 256 random bits, shown once as 14 groups of 4
  base32 characters (the last 5 bytes' worth are a checksum, so a mistyped
  character is caught before any copy is tried).

The appliance keeps the derived key (sealed with its own key) to write
copies unattended; never the passphrase.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from argon2.low_level import Type, hash_secret_raw

from xenkeep.formats.sealed import KEY_SIZE

from .errors import BackupKeyError


class KeyMode(StrEnum):
    """Where the backup key comes from."""

    PASSPHRASE = "passphrase"
    RECOVERY_KEY = "recovery-key"


#: argon2id costs for new passphrases: 64 MiB, 3 passes (RFC 9106's second
#: recommended option), one lane (the appliance has few cores).
TIME_COST: Final = 3
MEMORY_COST_KIB: Final = 64 * 1024
PARALLELISM: Final = 1
#: What a copy's header may ask for: a hostile file must not make the
#: appliance allocate gigabytes or spin for minutes.
MAX_TIME_COST: Final = 16
MAX_MEMORY_COST_KIB: Final = 1024 * 1024
MIN_PASSPHRASE: Final = 12
MAX_PASSPHRASE: Final = 1024
_SALT_BYTES: Final = 16
_CHECK_BYTES: Final = 3
_GROUPS: Final = 14
_GROUP: Final = 4
_RECOVERY_CHARS: Final = re.compile(r"[^A-Z2-7]")


@dataclass(frozen=True)
class KdfParams:
    """How a passphrase becomes a key (argon2id), as a copy's header records it."""

    salt: bytes
    time_cost: int = TIME_COST
    memory_cost: int = MEMORY_COST_KIB
    parallelism: int = PARALLELISM

    @classmethod
    def new(cls) -> KdfParams:
        """Parameters with a fresh salt."""
        return cls(os.urandom(_SALT_BYTES))

    def to_json(self) -> dict[str, Any]:
        """The header form."""
        return {
            "name": "argon2id",
            "salt": base64.b64encode(self.salt).decode(),
            "time_cost": self.time_cost,
            "memory_cost": self.memory_cost,
            "parallelism": self.parallelism,
        }

    @classmethod
    def from_json(cls, data: Any) -> KdfParams:
        """Parameters from a header, refused when they are not sane."""
        try:
            if data["name"] != "argon2id":
                raise BackupKeyError(f"unknown key derivation {data['name']!r}")
            params = cls(
                base64.b64decode(str(data["salt"]), validate=True),
                int(data["time_cost"]),
                int(data["memory_cost"]),
                int(data["parallelism"]),
            )
        except (KeyError, TypeError, ValueError):
            raise BackupKeyError("the copy's key derivation parameters are unreadable") from None
        if not (
            1 <= params.time_cost <= MAX_TIME_COST
            and 8 <= params.memory_cost <= MAX_MEMORY_COST_KIB
            and 1 <= params.parallelism <= 16
            and 8 <= len(params.salt) <= 64
        ):
            raise BackupKeyError("the copy asks for key derivation costs out of bounds")
        return params


def derive(passphrase: str, params: KdfParams) -> bytes:
    """The key of ``passphrase`` (blocking: about a quarter of a second)."""
    key: bytes = hash_secret_raw(
        passphrase.encode(),
        params.salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=KEY_SIZE,
        type=Type.ID,
    )
    return key


def check_passphrase_length(passphrase: str) -> None:
    """Refuse a passphrase too short to stand an offline attack, or absurdly long."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise BackupKeyError(
            f"the passphrase must have at least {MIN_PASSPHRASE} characters", field="passphrase"
        )
    if len(passphrase) > MAX_PASSPHRASE:
        raise BackupKeyError(
            f"the passphrase is longer than {MAX_PASSPHRASE} characters", field="passphrase"
        )


def new_recovery_key() -> bytes:
    """A fresh random key."""
    return os.urandom(KEY_SIZE)


def format_recovery_key(key: bytes) -> str:
    """The key as people copy it: ``ABCD-EFGH-...`` (14 groups, checksum included)."""
    if len(key) != KEY_SIZE:
        raise ValueError("not a backup key")
    raw = key + hashlib.sha256(key).digest()[:_CHECK_BYTES]
    text = base64.b32encode(raw).decode()
    return "-".join(text[i : i + _GROUP] for i in range(0, len(text), _GROUP))


def parse_recovery_key(text: str) -> bytes:
    """The key a person typed back (spaces, dashes and case do not matter)."""
    cleaned = _RECOVERY_CHARS.sub("", text.upper().replace("0", "O").replace("1", "I"))
    if len(cleaned) != _GROUPS * _GROUP:
        raise BackupKeyError(
            f"a recovery key has {_GROUPS} groups of {_GROUP} letters and digits",
            field="recovery_key",
        )
    raw = base64.b32decode(cleaned)
    key, check = raw[:KEY_SIZE], raw[KEY_SIZE:]
    if hashlib.sha256(key).digest()[:_CHECK_BYTES] != check:
        raise BackupKeyError(
            "this recovery key has a mistyped character (its checksum does not match)",
            field="recovery_key",
        )
    return key
