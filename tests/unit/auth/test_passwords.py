import pytest

from xenkeep.auth.passwords import (
    check_new_password,
    check_policy,
    hash_password,
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
