"""What the streaming codecs share: a blocking reader, and reading exactly n bytes."""

from __future__ import annotations

from typing import Protocol


class SupportsRead(Protocol):
    """Anything with a blocking ``read(n)``: a file, a socket file, an HTTP body."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; empty at the end of the stream."""
        ...


def read_upto(src: SupportsRead, n: int) -> bytes:
    """Exactly ``n`` bytes of ``src``, or fewer only at the end of the stream."""
    parts: list[bytes] = []
    remaining = n
    while remaining:
        piece = src.read(remaining)
        if not piece:
            break
        parts.append(piece)
        remaining -= len(piece)
    return b"".join(parts)
