"""A registered pool, and the steps of registering one."""

from __future__ import annotations

from dataclasses import dataclass

from xenkeep.store.db import Row


@dataclass(frozen=True, slots=True)
class Pool:
    """A registered pool as the rest of the daemon sees it (no password)."""

    id: int
    #: The pool's XAPI uuid, as grants name it ("" until first connected).
    uuid: str
    name: str
    url: str
    username: str
    fingerprint: str
    created_at: float
    updated_at: float
    last_error: str
    last_error_at: float | None
    last_connected_at: float | None

    @classmethod
    def from_row(cls, row: Row) -> Pool:
        """Build from a ``pools`` row."""
        return cls(
            id=int(row["id"]),
            uuid=str(row["uuid"]),
            name=str(row["name"]),
            url=str(row["url"]),
            username=str(row["username"]),
            fingerprint=str(row["fingerprint"]),
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
            last_error=str(row["last_error"]),
            last_error_at=row["last_error_at"],
            last_connected_at=row["last_connected_at"],
        )


@dataclass(frozen=True, slots=True)
class Probe:
    """What the admin is asked to confirm before a pool is saved."""

    url: str
    tls: bool
    fingerprint: str


@dataclass(frozen=True, slots=True)
class PoolFacts:
    """What a successful test login learned about a pool."""

    url: str
    uuid: str
    name: str
    master: str
    hosts: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Pending:
    """A pool the admin is registering: the fingerprint is shown, not yet confirmed.

    The password waits here, encrypted, so the admin does not type it twice;
    it is only sent to the pool once the fingerprint is confirmed.
    """

    url: str
    username: str
    password_enc: str
    tls: bool
    fingerprint: str
    expires: float
