"""Sealed files: what goes in comes out, and a wrong key, a changed byte, a
cut file or bytes added after the end are each refused with their own error."""

from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenkeep.formats.sealed import (
    SEGMENT,
    SealedDamagedError,
    SealedFormatError,
    SealedTruncatedError,
    SealedWrongKeyError,
    SealReader,
    SealWriter,
    key_id,
    read_header,
)

KEY = bytes(range(32))
OTHER = bytes(32)


def seal(data: bytes, key: bytes = KEY, piece: int = 7000, **fields: object) -> bytes:
    out = io.BytesIO()
    w = SealWriter(cast(BinaryIO, out), key, {"kind": "test", **fields})
    # In uneven pieces: segment boundaries must not depend on the writes.
    for at in range(0, len(data), piece):
        w.write(data[at : at + piece])
    w.close()
    return out.getvalue()


def unseal(blob: bytes, key: bytes = KEY) -> bytes:
    return b"".join(SealReader(cast(BinaryIO, io.BytesIO(blob)), key))


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 5])
def test_round_trip_at_segment_boundaries(size: int) -> None:
    data = os.urandom(size)
    assert unseal(seal(data)) == data


@pytest.mark.parametrize("piece", [1, 4095, SEGMENT, SEGMENT + 1, 1 << 20])
def test_the_same_file_whatever_the_writes(piece: int) -> None:
    data = os.urandom(2 * SEGMENT + 333)
    blob = seal(data, piece=piece)
    assert unseal(blob) == data
    # Same segmentation as one write: full segments, then the final one.
    assert len(blob) == len(seal(data, piece=len(data)))


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=3 * SEGMENT))
def test_round_trip_any_content(data: bytes) -> None:
    assert unseal(seal(data)) == data


def test_header_is_readable_without_the_key_and_names_the_key() -> None:
    blob = seal(b"secret stuff", appliance="xk-1")
    header = read_header(cast(BinaryIO, io.BytesIO(blob)))
    assert header.fields["appliance"] == "xk-1"
    assert header.key_id == key_id(KEY) != key_id(OTHER)
    assert b"secret stuff" not in blob


def test_each_file_has_its_own_key() -> None:
    a, b = seal(b"same"), seal(b"same")
    assert a != b  # salts differ, so do the ciphertexts


def test_wrong_key_is_told_apart() -> None:
    with pytest.raises(SealedWrongKeyError):
        unseal(seal(b"x" * 100), OTHER)


def test_every_flipped_byte_is_found() -> None:
    blob = seal(os.urandom(2 * SEGMENT + 100))
    # Every byte of the header and a sample of the segments.
    positions = list(range(0, 400)) + list(range(400, len(blob), 997))
    for at in positions:
        bad = bytearray(blob)
        bad[at] ^= 0x01
        with pytest.raises(SealedFormatError):
            unseal(bytes(bad))


def test_a_changed_header_field_is_damage() -> None:
    blob = seal(b"payload", appliance="aaaa")
    bad = blob.replace(b'"appliance":"aaaa"', b'"appliance":"bbbb"')
    assert bad != blob
    with pytest.raises(SealedDamagedError):
        unseal(bad)


def test_every_cut_is_found() -> None:
    blob = seal(os.urandom(2 * SEGMENT + 100))
    for end in [*range(0, 300, 7), *range(300, len(blob), 4099), len(blob) - 1]:
        with pytest.raises(SealedFormatError):
            unseal(blob[:end])
    # A cut exactly after a full segment is a missing final segment.
    header_len = 14 + struct.unpack(">I", blob[10:14])[0]
    first = header_len + 4 + SEGMENT + 16
    with pytest.raises(SealedTruncatedError):
        unseal(blob[:first])


def test_data_after_the_end_is_damage() -> None:
    with pytest.raises(SealedDamagedError):
        unseal(seal(b"abc") + b"\0")


def test_swapped_segments_are_damage() -> None:
    blob = seal(os.urandom(3 * SEGMENT))
    header_len = 14 + struct.unpack(">I", blob[10:14])[0]
    seg = 4 + SEGMENT + 16
    s1 = blob[header_len : header_len + seg]
    s2 = blob[header_len + seg : header_len + 2 * seg]
    swapped = blob[:header_len] + s2 + s1 + blob[header_len + 2 * seg :]
    with pytest.raises(SealedDamagedError):
        unseal(swapped)


def test_not_a_sealed_file() -> None:
    with pytest.raises(SealedFormatError):
        unseal(b"SQLite format 3\0" + bytes(100))
    with pytest.raises(SealedFormatError):
        unseal(b"")
