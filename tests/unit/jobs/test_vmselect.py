"""The one set of VM selection rules every job kind uses (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from xenkeep.errors import ValidationError
from xenkeep.jobs.vmselect import (
    REPLICA_OF_KEY,
    Selector,
    check_names,
    match,
    parse_selection,
    unknown_names,
)

VMS: dict[str, dict[str, Any]] = {
    "r1": {"uuid": "u1", "name_label": "web-01", "tags": ["prod", "web"]},
    "r2": {"uuid": "u2", "name_label": "db-01", "tags": ["prod"]},
    "r3": {"uuid": "u3", "name_label": "ci", "tags": ["ci"]},
    "r4": {"uuid": "u4", "name_label": "tpl", "tags": ["prod"], "is_a_template": True},
    "r5": {"uuid": "u5", "name_label": "snap", "tags": ["prod"], "is_a_snapshot": True},
    "r6": {"uuid": "u6", "name_label": "dom0", "is_control_domain": True},
    "r7": {
        "uuid": "u7",
        "name_label": "web-01 (replica)",
        "tags": ["prod", "web"],
        "other_config": {REPLICA_OF_KEY: "u1"},
    },
}


def test_exclusions_apply_to_every_selector_by_name_or_uuid() -> None:
    by_tag = parse_selection(
        {"selector": "tag", "targets": "prod", "pool_id": "1", "exclude": "u2"}
    )
    assert [c.name for c in match(by_tag, VMS)] == ["web-01"]
    pool = parse_selection({"selector": "pool", "pool_id": "1", "exclude": ["ci", "web-01"]})
    assert [c.uuid for c in match(pool, VMS)] == ["u2"]


def test_replicas_templates_snapshots_and_dom0_are_never_taken() -> None:
    pool = parse_selection({"selector": "pool", "targets": "ignored", "pool_id": "1"})
    assert pool.targets == ()
    assert {c.uuid for c in match(pool, VMS)} == {"u1", "u2", "u3"}
    named = parse_selection({"selector": "name", "targets": "web-01 (replica)", "pool_id": "1"})
    assert match(named, VMS) == []
    assert unknown_names(named, VMS) == {"targets": ["web-01 (replica)"]}


def test_unknown_names_are_refused_when_saved() -> None:
    sel = parse_selection(
        {"selector": "name", "targets": ["ci", "gone"], "pool_id": "1", "exclude": ["nope"]}
    )
    assert unknown_names(sel, VMS) == {"targets": ["gone"], "exclude": ["nope"]}
    with pytest.raises(ValidationError, match="no VM named 'gone' in pool A") as info:
        check_names(sel, VMS, "A")
    assert info.value.field == "targets"
    ok = parse_selection({"selector": "name", "targets": ["ci"], "pool_id": "1"})
    check_names(ok, VMS, "A")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"selector": "colour", "targets": "x", "pool_id": "1"}, "selector"),
        ({"selector": "tag", "targets": "", "pool_id": "1"}, "targets"),
        ({"selector": "tag", "targets": "x", "pool_id": ""}, "pool_id"),
        ({"selector": "tag", "targets": [1, 2], "pool_id": "1"}, "targets"),
        ({"selector": "tag", "targets": "x", "pool_id": "1", "exclude": {"a": 1}}, "exclude"),
        ({"selector": "tag", "targets": "x", "pool_id": "1", "exclude": "a\x1bb"}, "exclude"),
        ({"selector": "tag", "targets": ["x" * 300], "pool_id": "1"}, "targets"),
        ({"selector": "tag", "targets": [f"t{i}" for i in range(600)], "pool_id": "1"}, "targets"),
    ],
)
def test_bad_selections_name_their_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_selection(data)
    assert info.value.field == field


def test_selection_round_trips_through_its_json_form() -> None:
    sel = parse_selection({"selector": "tag", "targets": "a\nb", "pool_id": "2", "exclude": "c"})
    assert sel.selector is Selector.TAG
    assert parse_selection(sel.as_dict()) == sel
