"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import asyncio
from typing import Any

import argon2

from xenkeep.auth.const import MIN_PASSWORD_LENGTH
from xenkeep.auth.errors import AccountInputError

_hasher = argon2.PasswordHasher(type=argon2.Type.ID)

#: Checked against on unknown accounts, so sign-in takes as long whether or
#: not the account exists. A constant, not hashed at import: one argon2id
#: hash costs seconds under emulation (QEMU without KVM), on the daemon's
#: start-up path. It is the hash of a public dummy string with the hasher's
#: parameters (tests/unit/auth/test_passwords.py checks they still match, so
#: its check costs what a real one does); no password can match it, as
#: :func:`verify_password` also requires a stored hash.
DUMMY_HASH = "$argon2id$v=19$m=102400,t=2,p=8$6xvZ6/1TutWOVSSwHVda6A$N46QBMxr+Auf1opxOSzH1A"

_FORBIDDEN = {"admin", "administrator", "password", "xenkeep", "root", "changeme", "123456"}


def check_policy(password: str, username: str) -> None:
    """Raise AccountInputError (a ValidationError) when ``password`` is too weak."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountInputError(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters",
            field="password",
        )
    lowered = password.lower()
    if len(set(password)) < 4:
        raise AccountInputError("the password repeats too few characters", field="password")
    if username and username.lower() in lowered:
        raise AccountInputError("the password must not contain the user name", field="password")
    if any(lowered.replace(word, "") == "" for word in _FORBIDDEN):
        raise AccountInputError("the password is too easy to guess", field="password")


#: zxcvbn's score (0-4) a new password must reach: 3 is "safely unguessable"
#: against an online attack and slow offline hashing, which argon2id is.
MIN_STRENGTH = 3
#: zxcvbn's time grows with length past the point where it matters: a
#: password this long that starts strong is strong.
_STRENGTH_PREFIX = 64


def _estimate(password: str, hints: list[str]) -> dict[str, Any]:
    # Imported at first use, in a thread: zxcvbn loads its word lists (the
    # commonest passwords of public breaches, names, words), ~0.1 s.
    import zxcvbn

    result: dict[str, Any] = zxcvbn.zxcvbn(password[:_STRENGTH_PREFIX], user_inputs=hints)
    return result


async def check_new_password(password: str, username: str, *hints: str) -> None:
    """The whole policy for a password being set: :func:`check_policy`, then
    zxcvbn's estimate against common and breached passwords, words, names,
    keyboard patterns, dates and ``username`` and ``hints`` (the appliance's
    name). Raises AccountInputError with zxcvbn's advice."""
    check_policy(password, username)
    estimate = await asyncio.to_thread(
        _estimate, password, [h for h in (username, "xenkeep", *hints) if h]
    )
    if int(estimate["score"]) < MIN_STRENGTH:
        feedback = estimate.get("feedback") or {}
        advice = " ".join(
            part
            for part in [feedback.get("warning") or "", *feedback.get("suggestions", [])[:1]]
            if part
        )
        raise AccountInputError(
            "this password is too easy to guess" + (f": {advice}" if advice else ""),
            field="password",
            hint="a few uncommon words, or a longer phrase, are stronger than symbols",
        )


def hash_password(password: str) -> str:
    """An argon2id hash with the library's current parameters."""
    return str(_hasher.hash(password))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; timing does not reveal a missing hash."""
    try:
        return _hasher.verify(stored_hash or DUMMY_HASH, password) and stored_hash is not None
    except (argon2.exceptions.VerifyMismatchError, argon2.exceptions.InvalidHash):
        return False
    except argon2.exceptions.VerificationError:
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash uses older parameters than the current ones."""
    return bool(_hasher.check_needs_rehash(stored_hash))
