"""Which target network a replica's NIC goes on (pure)."""

from __future__ import annotations

import pytest

from xenkeep.errors import ValidationError
from xenkeep.replication.networks import resolve_pairs, target_network

SRC = {"s1": "LAN", "s2": "DMZ"}
DST = {"t1": "LAN", "t2": "DR DMZ", "t3": "twin", "t4": "twin"}


def test_explicit_then_same_name_then_nothing() -> None:
    pairs = {"s2": "t2"}
    assert target_network("s2", "DMZ", pairs=pairs, target=DST, same_pool=False)[0] == "t2"
    assert target_network("s1", "LAN", pairs=pairs, target=DST, same_pool=False)[0] == "t1"
    chosen, why = target_network("s9", "Storage", pairs=pairs, target=DST, same_pool=False)
    assert chosen is None and "map it in the job" in why
    chosen, why = target_network("s8", "twin", pairs=pairs, target=DST, same_pool=False)
    assert chosen is None and "several" in why


def test_same_pool_keeps_the_network() -> None:
    assert target_network("t3", "twin", pairs={}, target=DST, same_pool=True)[0] == "t3"


def test_names_resolve_to_uuids_or_are_refused() -> None:
    got = resolve_pairs(
        [("DMZ", "DR DMZ"), ("s1", "t1")], SRC, DST, source_pool="A", target_pool="B"
    )
    assert got == (("s2", "t2"), ("s1", "t1"))
    with pytest.raises(ValidationError, match="pool B has no network 'nope'"):
        resolve_pairs([("LAN", "nope")], SRC, DST, source_pool="A", target_pool="B")
    with pytest.raises(ValidationError, match="several networks"):
        resolve_pairs([("LAN", "twin")], SRC, DST, source_pool="A", target_pool="B")
    with pytest.raises(ValidationError, match="mapped twice"):
        resolve_pairs([("LAN", "t1"), ("s1", "t2")], SRC, DST, source_pool="A", target_pool="B")
