import pytest

from xenkeep.auth.passwords import (
    DUMMY_HASH,
    check_new_password,
    check_policy,
    hash_password,
    needs_rehash,
    verify_password,
)
from xenkeep.errors import ValidationError


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("admin", "at least 12"),
        ("aaaaaaaaaaaaaaaa", "too few"),
        ("alice-is-the-best-admin", "user name"),
        ("adminadminadmin", "too easy"),
        ("passwordpassword", "too easy"),
    ],
)
def test_weak_passwords_are_refused(password: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        check_policy(password, "alice")


def test_argon2id_round_trip() -> None:
    stored = hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery staple")
    assert not verify_password(stored, "correct horse battery stapl")
    assert not verify_password(None, "anything at all here")
    assert not verify_password("garbage", "anything at all here")


@pytest.mark.parametrize(
    "password",
    ["qwertyuiop123", "Welcome@2024", "dragon123456", "iloveyou2024!", "monkey12345678"],
)
async def test_common_and_breached_passwords_are_refused(password: str) -> None:
    """Long enough, but on the lists of passwords people (and attackers) use."""
    with pytest.raises(ValidationError, match="too easy to guess") as refused:
        await check_new_password(password, "alice")
    assert refused.value.field == "password"


async def test_a_strong_passphrase_is_taken() -> None:
    await check_new_password("correct horse battery staple", "alice")
    await check_new_password("Tr0ub4dor&3 gazebo", "alice")


def test_the_dummy_hash_costs_what_a_real_one_does() -> None:
    # Unknown accounts are checked against DUMMY_HASH: with other parameters
    # than the hasher's, that check would take another time than a real one.
    assert not needs_rehash(DUMMY_HASH)
    assert DUMMY_HASH.split("$")[3] == hash_password("x" * 16).split("$")[3]
    # The dummy string itself opens nothing: an account without a hash never matches.
    assert verify_password(None, "xenkeep-dummy-password-for-timing") is False
