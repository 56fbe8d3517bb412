"""Depth of a JSON body, measured before the parser could overflow on it."""

from __future__ import annotations

import json

import pytest

from xenkeep.web.forms import MAX_JSON_DEPTH, nests_too_deep


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


@pytest.mark.parametrize(
    "raw",
    [
        nested(MAX_JSON_DEPTH + 1),
        nested(100_000),
        b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
        b"[" * 200_000,  # never closed
        b'["' + b"\\" * 8 + b'"' + b"[" * 40,  # escaped backslashes, then the closing quote
    ],
)
def test_deep_is_found(raw: bytes) -> None:
    assert nests_too_deep(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        nested(MAX_JSON_DEPTH),
        json.dumps({"name": "[" * 5000 + "{" * 5000}).encode(),  # brackets in a string
        json.dumps(["[" * 100, {"a": ["]" * 100]}]).encode(),
        b'["' + b"\\" * 9 + b'"' + b"[" * 40,  # an escaped quote does not end the string
        b'"\\"' * 300_000,  # quotes and backslashes: linear, not a backtracking trap
    ],
)
def test_shallow_passes(raw: bytes) -> None:
    assert not nests_too_deep(raw)
