import math
import re

from xenkeep.auth.secrets import (
    SETUP_ALPHABET,
    new_setup_token,
    normalize_setup_token,
    token_hash,
)


def test_setup_token_is_grouped_and_has_at_least_128_bits() -> None:
    token = new_setup_token()
    assert re.fullmatch(r"([0-9A-Z]{4}-){6}[0-9A-Z]{4}", token)
    chars = token.replace("-", "")
    assert set(chars) <= set(SETUP_ALPHABET)
    assert len(chars) * math.log2(len(SETUP_ALPHABET)) >= 128
    assert len({new_setup_token() for _ in range(50)}) == 50


def test_typed_token_is_normalized() -> None:
    token = new_setup_token()
    typed = " " + token.lower().replace("-", " ") + " "
    assert normalize_setup_token(typed) == token
    assert normalize_setup_token("oil0-") == "0110"


def test_hash_is_stable_and_not_the_token() -> None:
    assert token_hash("abc") == token_hash("abc") != "abc"
