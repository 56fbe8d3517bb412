"""The preview of a selection over a pool's records (pure part)."""

from __future__ import annotations

from tests.unit.jobs.test_vmselect import TWINS
from xenkeep.jobs.preview import describe
from xenkeep.jobs.vmselect import parse_selection


def test_a_preview_lists_vms_errors_and_shared_names() -> None:
    sel = parse_selection(
        {"selector": "name", "targets": "app, gone", "exclude": "u9, nope", "pool_id": "3"}
    )
    answer = describe(sel, TWINS, "Site A")
    assert answer["pool"] == {"id": "3", "name": "Site A"}
    assert answer["vms"] == [{"name": "app", "uuid": "u8", "pool_id": "3", "pool": "Site A"}]
    assert [(e["field"], e["names"]) for e in answer["errors"]] == [
        ("targets", ["gone"]),
        ("exclude", ["nope"]),
    ]
    assert answer["errors"][0]["message"] == "no VM named 'gone' in pool Site A"
    assert answer["shared_names"] == {"app": ["u8", "u9"]}
    assert answer["selection"] == sel.as_dict()


def test_a_selection_still_empty_says_what_it_needs() -> None:
    sel = parse_selection({"selector": "tag", "targets": "", "pool_id": "3"}, partial=True)
    answer = describe(sel, TWINS, "Site A")
    assert answer["vms"] == []
    assert answer["errors"] == [
        {"field": "targets", "names": [], "message": "give at least one VM tag", "hint": ""}
    ]
    whole = describe(parse_selection({"selector": "pool", "pool_id": "3"}), TWINS, "Site A")
    assert {v["uuid"] for v in whole["vms"]} == {"u1", "u2", "u3", "u8", "u9"}
    assert whole["errors"] == []
