"""Secrets at rest (pool passwords, pending TOTP secrets): encrypted, with a
private key made on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from xenkeep.errors import StoreError
from xenkeep.secretbox import SecretBox


def test_round_trip_and_private_key(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "state" / "secret.key")
    token = box.encrypt("s3cret pässword")
    assert "s3cret" not in token
    assert box.decrypt(token) == "s3cret pässword"
    key = tmp_path / "state" / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600
    # A second instance (a restart) reads the same key.
    assert SecretBox(key).decrypt(token) == "s3cret pässword"


def test_another_key_cannot_decrypt(tmp_path: Path) -> None:
    token = SecretBox(tmp_path / "a.key").encrypt("x")
    with pytest.raises(StoreError) as info:
        SecretBox(tmp_path / "b.key").decrypt(token)
    assert "cannot be decrypted" in info.value.message
    with pytest.raises(StoreError):
        SecretBox(tmp_path / "a.key").decrypt("garbage")


def test_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    key.write_text("not a key\n")
    with pytest.raises(StoreError) as info:
        SecretBox(key).encrypt("x")
    assert "cannot be used" in info.value.message and info.value.hint
