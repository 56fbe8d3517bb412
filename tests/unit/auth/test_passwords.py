import pytest

from xenkeep.auth.passwords import check_policy, hash_password, verify_password
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
