"""SSH public keys in a user's profile, put into the VMs they create.

A key is parsed with ``cryptography`` (the OpenSSH public-key format: type,
base64 blob whose own type must match, optional comment), so what is stored
is a key an sshd would accept, and its SHA256 fingerprint is the one
``ssh-keygen -lf`` shows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from xenkeep.errors import NotFoundError, ValidationError
from xenkeep.store import Database

#: Key types sshd accepts by default (RSA only with SHA-2, so the blob type "ssh-rsa").
KEY_TYPES: Final = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    }
)
MAX_KEY: Final = 16 * 1024
MAX_NAME: Final = 100
MIN_RSA_BITS: Final = 2048


@dataclass(frozen=True)
class SshKey:
    id: int
    user_id: int
    name: str
    key: str
    fingerprint: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "key": self.key,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at,
        }


def parse_key(text: str) -> tuple[str, str]:
    """The key in its canonical one-line form and its fingerprint; ValidationError if bad."""
    line = " ".join(text.strip().split())
    if not line or "\n" in text.strip() or len(line) > MAX_KEY:
        raise ValidationError("give one OpenSSH public key on one line", field="key")
    parts = line.split(" ", 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise ValidationError(
            f"the key must start with one of {', '.join(sorted(KEY_TYPES))}", field="key"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("the key's base64 part is damaged", field="key") from None
    try:
        loaded = load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"not a valid {parts[0]} key: {exc}", field="key") from None
    size = getattr(loaded, "key_size", None)
    if parts[0] == "ssh-rsa" and isinstance(size, int) and size < MIN_RSA_BITS:
        raise ValidationError(f"RSA keys need at least {MIN_RSA_BITS} bits", field="key")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return line, f"SHA256:{digest}"


class SshKeys:
    """The SSH keys of every user."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_user(self, user_id: int) -> list[SshKey]:
        rows = await self._db.fetchall(
            "SELECT * FROM ssh_keys WHERE user_id = ? ORDER BY id", (user_id,)
        )
        return [SshKey(**dict(r)) for r in rows]

    async def add(self, user_id: int, name: str, key: str) -> SshKey:
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise ValidationError(
                f"give the key a name of 1 to {MAX_NAME} characters", field="name"
            )
        line, fingerprint = parse_key(key)
        async with self._db.transaction() as tx:
            if await tx.fetchone(
                "SELECT 1 FROM ssh_keys WHERE user_id = ? AND fingerprint = ?",
                (user_id, fingerprint),
            ):
                raise ValidationError("this key is already in your profile", field="key")
            now = time.time()
            key_id = await tx.insert(
                "INSERT INTO ssh_keys (user_id, name, key, fingerprint, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (user_id, name, line, fingerprint, now),
            )
        return SshKey(key_id, user_id, name, line, fingerprint, now)

    async def delete(self, user_id: int, key_id: int) -> None:
        if not await self._db.execute(
            "DELETE FROM ssh_keys WHERE id = ? AND user_id = ?", (key_id, user_id)
        ):
            raise NotFoundError(f"you have no SSH key {key_id}")

    async def chosen(self, user_id: int, ids: list[int]) -> list[str]:
        """The keys ``ids`` of this user (NotFoundError for another's or none)."""
        mine = {k.id: k.key for k in await self.of_user(user_id)}
        missing = [i for i in ids if i not in mine]
        if missing:
            raise ValidationError(f"you have no SSH key {missing[0]}", field="ssh_keys")
        return [mine[i] for i in ids]
