"""Secrets the daemon must be able to read back (pool passwords).

They are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key kept
in the state directory, readable by the daemon only (0600), created on first
use. The database and the key are separate files so that a copy of the
database (a support bundle, a backup of it) reveals no pool password.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from xenkeep.errors import StoreError

KEY_NAME = "secret.key"


class SecretBox:
    """Encrypts and decrypts short secrets with the appliance's key."""

    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path
        self._fernet: Fernet | None = None

    def load(self) -> None:
        """Read (or create) the key now; it is file I/O, so the daemon calls
        this in a thread at start and encrypting never touches the disk."""
        self._load()

    def _load(self) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._read_or_create())
        return self._fernet

    def _read_or_create(self) -> bytes:
        path = self.key_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        key = Fernet.generate_key()
        try:
            # O_EXCL: two starts racing create one key, never two.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            try:
                os.write(fd, key + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        try:
            data = path.read_bytes().strip()
            Fernet(data)
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"the secret key {path} cannot be used: {exc}",
                hint="restore it from a backup; without it the pool passwords must be re-entered",
            ) from None
        with contextlib.suppress(OSError):
            path.chmod(0o600)
        return data

    def encrypt(self, secret: str) -> str:
        """The stored form of a secret."""
        return self._load().encrypt(secret.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """A secret back from its stored form."""
        try:
            return self._load().decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError, UnicodeDecodeError):
            raise StoreError(
                "a stored pool password cannot be decrypted (the secret key changed?)",
                hint=f"check {self.key_path}, or remove and re-add the pool",
            ) from None
