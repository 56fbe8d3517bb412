"""The backup key: a passphrase derives the same key from the same header,
a recovery key survives being typed back, and hostile parameters are refused."""

from __future__ import annotations

import pytest

from xenkeep.appliance_backup.errors import BackupKeyError
from xenkeep.appliance_backup.keys import (
    KdfParams,
    check_passphrase_length,
    derive,
    format_recovery_key,
    new_recovery_key,
    parse_recovery_key,
)

FAST = {"time_cost": 1, "memory_cost": 64, "parallelism": 1}


def test_the_same_passphrase_and_header_give_the_same_key() -> None:
    params = KdfParams(b"s" * 16, **FAST)
    again = KdfParams.from_json(params.to_json())
    assert again == params
    assert derive("a long enough phrase", params) == derive("a long enough phrase", again)
    assert derive("a long enough phrase", params) != derive("a long enough phrasE", params)
    assert derive("x", KdfParams(b"t" * 16, **FAST)) != derive("x", params)


@pytest.mark.parametrize(
    "change",
    [
        {"time_cost": 10_000},
        {"memory_cost": 64 * 1024 * 1024},
        {"parallelism": 0},
        {"salt": "bm90IGJhc2U2NA=="[:-3] + "@@"},
        {"name": "scrypt"},
        {"salt": None},
    ],
)
def test_hostile_or_unknown_parameters_are_refused(change: dict[str, object]) -> None:
    data = {**KdfParams(b"s" * 16).to_json(), **change}
    with pytest.raises(BackupKeyError):
        KdfParams.from_json(data)


def test_recovery_key_round_trip_and_typing() -> None:
    key = new_recovery_key()
    text = format_recovery_key(key)
    groups = text.split("-")
    assert len(groups) == 14 and all(len(g) == 4 for g in groups)
    assert parse_recovery_key(text) == key
    assert parse_recovery_key(" " + text.lower().replace("-", " ") + "\n") == key


def test_a_mistyped_recovery_key_is_caught_by_its_checksum() -> None:
    text = format_recovery_key(new_recovery_key())
    first = text[0]
    wrong = ("B" if first == "A" else "A") + text[1:]
    with pytest.raises(BackupKeyError, match="mistyped"):
        parse_recovery_key(wrong)
    with pytest.raises(BackupKeyError, match="14 groups"):
        parse_recovery_key(text[:-5])


def test_passphrase_length() -> None:
    with pytest.raises(BackupKeyError):
        check_passphrase_length("short")
    with pytest.raises(BackupKeyError):
        check_passphrase_length("x" * 2000)
    check_passphrase_length("twelve chars")
