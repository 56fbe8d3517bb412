"""Concurrency rules of operations, declared where the work is defined.

An operation names what it needs as claims: ``Claim.sole("backup-job:3",
"one run per job")`` lets one holder in; ``Claim.shared("storage")`` lets any
number of shared holders in but no exclusive one, and the reverse
(``Claim.sole("storage", ...)``: nothing changes the storage while
anything reads it). Claims are taken all at once or not at all, so two
operations can never deadlock on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from xenkeep.errors import ConflictError


@dataclass(frozen=True)
class Claim:
    """A resource an operation holds while it runs."""

    key: str
    exclusive: bool
    #: Says, in words, why the rule exists; shown when it refuses.
    rule: str = field(default="", compare=False)

    @classmethod
    def shared(cls, key: str) -> Claim:
        """Held together with other shared claims of ``key``."""
        return cls(key, exclusive=False)

    @classmethod
    def sole(cls, key: str, rule: str = "") -> Claim:
        """Held by one holder at a time, and by nobody while it is shared."""
        return cls(key, exclusive=True, rule=rule)


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: an operation's id, the noun of its kind and its title."""

    id: int
    noun: str
    title: str

    def describe(self) -> str:
        """``backup 12 (nightly)``."""
        return f"{self.noun} {self.id}" + (f" ({self.title})" if self.title else "")


class ClaimConflictError(ConflictError):
    """Claims that cannot be taken now: who is in the way, and the rule."""

    def __init__(self, message: str, *, holder: Holder, claim: Claim) -> None:
        super().__init__(message)
        self.holder = holder
        self.claim = claim


@dataclass
class _Holders:
    exclusive: Holder | None = None
    shared: dict[int, Holder] = field(default_factory=dict)


class ClaimTable:
    """Who holds what, in this daemon."""

    def __init__(self) -> None:
        self._held: dict[str, _Holders] = {}

    def blocker(self, claims: Iterable[Claim]) -> tuple[Holder, Claim] | None:
        """What stands in the way of ``claims`` now, or None."""
        for c in claims:
            h = self._held.get(c.key)
            if h is None:
                continue
            if h.exclusive is not None:
                return h.exclusive, c
            if c.exclusive and h.shared:
                return min(h.shared.values(), key=lambda x: x.id), c
        return None

    def check(self, claims: Iterable[Claim], action: str) -> None:
        """Raise ClaimConflictError naming what is in the way of ``claims``, if anything."""
        found = self.blocker(claims)
        if found is not None:
            other, claim = found
            why = f" — {claim.rule}" if claim.rule else ""
            raise ClaimConflictError(
                f"cannot {action} while a {other.noun} runs ({other.describe()}){why}",
                holder=other,
                claim=claim,
            )

    def take(self, holder: Holder, claims: Iterable[Claim], action: str) -> None:
        """Take every claim, or raise ClaimConflictError naming what is in the way.

        Synchronous on purpose: no other coroutine runs between the check
        and the take.
        """
        claims = list(claims)
        self.check(claims, action)
        for c in claims:
            h = self._held.setdefault(c.key, _Holders())
            if c.exclusive:
                h.exclusive = holder
            else:
                h.shared[holder.id] = holder

    def release(self, holder: Holder, claims: Iterable[Claim]) -> None:
        """Give back what :meth:`take` took for ``holder``."""
        for c in claims:
            h = self._held.get(c.key)
            if h is None:
                continue
            if c.exclusive and h.exclusive == holder:
                h.exclusive = None
            else:
                h.shared.pop(holder.id, None)
            if h.exclusive is None and not h.shared:
                del self._held[c.key]
