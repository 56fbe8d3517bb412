"""Sealed files: a stream encrypted and authenticated in segments.

The appliance keeps copies of its own configuration and of its pools'
databases in the backup datastore, encrypted with a key only the
administrator holds (see :mod:`xenkeep.appliance_backup.keys`). This module
is the container: it reads and writes a stream of any length with bounded
memory, and a reader tells a wrong key, a damaged byte and a cut file apart.
It is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár, 2015) as
age uses it, over AES-256-GCM.

Layout (integers big-endian)::

    offset 0     8 bytes   magic b"XKSEALED"
    offset 8     2 bytes   format version (1)
    offset 10    4 bytes   header length H (at most 64 KiB)
    offset 14    H bytes   header: a JSON object, UTF-8, readable without the key
    then, until the end of the file, segments:
                 4 bytes   length L of the sealed segment (16 .. SEGMENT + 16)
                 L bytes   AES-256-GCM of SEGMENT plaintext bytes (the last: 0 .. SEGMENT)

Each file has its own key, ``HKDF-SHA256(master, salt=header.salt,
info="xenkeep sealed v1")``, so the segment nonces, ``counter (11 bytes) ||
last (1 byte: 1 on the final segment, else 0)``, never repeat under one key.
Every segment authenticates SHA-256 of the bytes before the first segment
(magic, version, header) as associated data, so a changed header fails like
a changed segment. A file ends with exactly one final segment: a file cut
anywhere fails (no final segment), and so does anything appended after it.

The header holds what the writer gives (kind, dates, names: never secrets)
plus ``salt`` and ``key_id``: an HMAC of a fixed text under the master key,
which tells "this is not the key this file was sealed with" from "this
file is damaged" before any segment is opened.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import FormatError
from .streams import read_upto

MAGIC: Final = b"XKSEALED"
VERSION: Final = 1
#: Plaintext bytes per segment: large enough that the 20 bytes a segment
#: adds do not matter, small enough that memory stays bounded.
SEGMENT: Final = 64 * 1024
KEY_SIZE: Final = 32
MAX_HEADER: Final = 64 * 1024
_TAG: Final = 16
_SALT: Final = 16
_PREAMBLE: Final = struct.Struct(">8sHI")
_LENGTH: Final = struct.Struct(">I")
_INFO: Final = b"xenkeep sealed v1"
_KEY_ID_TEXT: Final = b"xenkeep key id v1"


class SealedFormatError(FormatError):
    """Not a sealed file, or one this code cannot read."""


class SealedWrongKeyError(SealedFormatError):
    """The file was sealed with another key (another passphrase)."""


class SealedDamagedError(SealedFormatError):
    """The file was changed after it was written: a segment does not authenticate."""


class SealedTruncatedError(SealedDamagedError):
    """The file ends before its final segment (a write cut short, a partial copy)."""


def key_id(master: bytes) -> str:
    """What a key is called in headers: an HMAC under it, not the key."""
    return hmac.new(master, _KEY_ID_TEXT, hashlib.sha256).hexdigest()[:32]


def _file_key(master: bytes, salt: bytes) -> AESGCM:
    if len(master) != KEY_SIZE:
        raise ValueError(f"a sealing key has {KEY_SIZE} bytes, not {len(master)}")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=_INFO)
    return AESGCM(hkdf.derive(master))


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


@dataclass(frozen=True)
class SealedHeader:
    """The readable part of a sealed file."""

    fields: dict[str, Any]
    #: Every byte before the first segment (authenticated by each segment).
    preamble: bytes

    @property
    def key_id(self) -> str:
        """Which key sealed the file (see :func:`key_id`)."""
        return str(self.fields.get("key_id", ""))

    @property
    def salt(self) -> bytes:
        """The file's own salt, from which its key is derived."""
        try:
            salt = base64.b64decode(str(self.fields["salt"]), validate=True)
        except (KeyError, ValueError):
            raise SealedFormatError("the header has no valid salt") from None
        if len(salt) != _SALT:
            raise SealedFormatError("the header's salt has the wrong length")
        return salt


def read_header(f: BinaryIO) -> SealedHeader:
    """The header of the sealed file ``f`` is positioned at the start of."""
    raw = read_upto(f, _PREAMBLE.size)
    if len(raw) < _PREAMBLE.size:
        if MAGIC.startswith(raw[: len(MAGIC)]) and raw:
            raise SealedTruncatedError("the file ends inside its header")
        raise SealedFormatError("not a sealed file (too short)")
    magic, version, length = _PREAMBLE.unpack(raw)
    if magic != MAGIC:
        raise SealedFormatError("not a sealed file (wrong magic)")
    if version != VERSION:
        raise SealedFormatError(f"sealed file format {version} is not supported (only {VERSION})")
    if length > MAX_HEADER:
        raise SealedDamagedError(f"the header claims {length} bytes, more than {MAX_HEADER}")
    body = read_upto(f, length)
    if len(body) < length:
        raise SealedTruncatedError("the file ends inside its header")
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SealedDamagedError("the header is not readable JSON") from None
    if not isinstance(fields, dict):
        raise SealedDamagedError("the header is not a JSON object")
    return SealedHeader(fields, raw + body)


class SealWriter:
    """Writes a sealed file to ``out``: :meth:`write` the plaintext, then :meth:`close`.

    ``fields`` go into the readable header with the salt and the key id;
    they must not hold secrets. Nothing is valid until :meth:`close` wrote
    the final segment.
    """

    def __init__(self, out: BinaryIO, master: bytes, fields: Mapping[str, Any]) -> None:
        salt = os.urandom(_SALT)
        header = {**fields, "salt": base64.b64encode(salt).decode(), "key_id": key_id(master)}
        body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(body) > MAX_HEADER:
            raise ValueError("the header is too large")
        preamble = _PREAMBLE.pack(MAGIC, VERSION, len(body)) + body
        self._out = out
        self._aead = _file_key(master, salt)
        self._aad = hashlib.sha256(preamble).digest()
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        #: Plaintext bytes written so far.
        self.plaintext_bytes = 0
        out.write(preamble)

    def _seal(self, data: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._counter, last), data, self._aad)
        self._out.write(_LENGTH.pack(len(sealed)))
        self._out.write(sealed)
        self._counter += 1

    def write(self, data: bytes) -> None:
        """Add plaintext; full segments are sealed and written as they fill."""
        if self._closed:
            raise ValueError("the sealed file is closed")
        self.plaintext_bytes += len(data)
        with memoryview(data) as view:
            if self._buffer:
                # Fill the segment begun by earlier writes first.
                take = SEGMENT - len(self._buffer)
                self._buffer += view[:take]
                view = view[take:]
                if not view:
                    return
                self._seal(bytes(self._buffer), last=False)
                self._buffer.clear()
            # Keep at least one byte back: the final segment must hold the
            # end, and whether more comes is known only at close().
            end = (len(view) - 1) // SEGMENT * SEGMENT
            for at in range(0, end, SEGMENT):
                # (The AEAD of this cryptography takes bytes only: one copy.)
                self._seal(bytes(view[at : at + SEGMENT]), last=False)
            self._buffer += view[end:]

    def close(self) -> None:
        """Seal the final segment. The caller flushes and syncs ``out``."""
        if self._closed:
            return
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        self._closed = True


class SealReader:
    """Opens a sealed file with ``master``; iterate for the plaintext, segment by segment.

    The header is checked at once (a wrong key raises
    :class:`SealedWrongKeyError` before anything is read further). Iteration
    raises :class:`SealedDamagedError` or :class:`SealedTruncatedError` at the
    first segment that does not authenticate: plaintext already yielded must
    be treated as unconfirmed until the iteration ends normally.
    """

    def __init__(self, f: BinaryIO, master: bytes, header: SealedHeader | None = None) -> None:
        self.header = header if header is not None else read_header(f)
        if self.header.key_id != key_id(master):
            raise SealedWrongKeyError("this file was sealed with another key")
        self._f = f
        self._aead = _file_key(master, self.header.salt)
        self._aad = hashlib.sha256(self.header.preamble).digest()

    def __iter__(self) -> Iterator[bytes]:
        counter = 0
        while True:
            raw = read_upto(self._f, _LENGTH.size)
            if len(raw) < _LENGTH.size:
                raise SealedTruncatedError(
                    f"the file ends after {counter} segment(s), before its final one"
                )
            (length,) = _LENGTH.unpack(raw)
            if not _TAG <= length <= SEGMENT + _TAG:
                raise SealedDamagedError(f"segment {counter} has an impossible length {length}")
            sealed = read_upto(self._f, length)
            if len(sealed) < length:
                raise SealedTruncatedError(f"the file ends inside segment {counter}")
            plain, last = self._open(counter, sealed)
            if last:
                if self._f.read(1):
                    raise SealedDamagedError("data follows the final segment")
                yield plain
                return
            if len(plain) != SEGMENT:
                raise SealedDamagedError(f"segment {counter} is short but not final")
            yield plain
            counter += 1

    def _open(self, counter: int, sealed: bytes) -> tuple[bytes, bool]:
        for last in (False, True):
            try:
                return self._aead.decrypt(_nonce(counter, last), sealed, self._aad), last
            except InvalidTag:
                continue
        raise SealedDamagedError(f"segment {counter} does not authenticate (the file was changed)")
