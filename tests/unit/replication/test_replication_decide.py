"""Full or delta per disk of a replica, and why (pure)."""

from __future__ import annotations

from xenkeep.replication.decide import ChainDisk, SourceDisk, decide

G = 1 << 30


def chain(**over: object) -> dict[str, ChainDisk]:
    base = {"reference_vdi": "ref-0", "reference_exists": True, "point_size": G, "live_size": G}
    base.update(over)
    return {"0": ChainDisk("0", **base)}  # type: ignore[arg-type]


def test_a_delta_against_the_reference() -> None:
    [d] = decide([SourceDisk("0", G)], chain())
    assert not d.full and d.base_vdi == "ref-0" and d.kind == "delta"


def test_every_broken_chain_says_why() -> None:
    cases = {
        "first replication": decide([SourceDisk("0", G)], None),
        "new disk 1": decide([SourceDisk("1", G)], chain()),
        "names no source snapshot": decide([SourceDisk("0", G)], chain(reference_vdi=None)),
        "missing from the source pool": decide([SourceDisk("0", G)], chain(reference_exists=False)),
        "latest point has no disk 0": decide([SourceDisk("0", G)], chain(point_size=None)),
        "removed on the target": decide([SourceDisk("0", G)], chain(live_size=None)),
        "resized on the target": decide([SourceDisk("0", G)], chain(live_size=2 * G)),
        "was resized from": decide([SourceDisk("0", 2 * G)], chain()),
    }
    for words, [d] in cases.items():
        assert d.full and words in d.reason, (words, d.reason)
    [d] = decide([SourceDisk("0", G)], None, no_chain="reference snapshot gone")
    assert d.reason == "reference snapshot gone"
