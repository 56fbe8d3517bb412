"""The one set of VM selection rules every job kind uses (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from xenkeep.errors import ValidationError
from xenkeep.jobs.vmselect import (
    REPLICA_OF_KEY,
    Selector,
    ambiguous_names,
    check_names,
    match,
    missing_names,
    name_problems,
    parse_selection,
    pickable,
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


#: A pool where two VMs bear one name (XAPI allows it): "app" twice.
TWINS: dict[str, dict[str, Any]] = {
    **VMS,
    "r8": {"uuid": "u8", "name_label": "app", "tags": ["prod"], "power_state": "Running"},
    "r9": {"uuid": "u9", "name_label": "app", "tags": [], "power_state": "Halted"},
}


def test_a_by_name_selection_takes_uuids_too() -> None:
    """The picker names a VM whose name another VM bears by its uuid: that
    takes the one VM; the shared name takes both."""
    one = parse_selection({"selector": "name", "targets": ["u8", "ci"], "pool_id": "1"})
    assert [c.uuid for c in match(one, TWINS)] == ["u8", "u3"]
    assert unknown_names(one, TWINS) == {}
    check_names(one, TWINS, "A")
    both = parse_selection({"selector": "name", "targets": "app", "pool_id": "1"})
    assert [c.uuid for c in match(both, TWINS)] == ["u8", "u9"]
    # A uuid the run no longer finds is missing, as a name would be.
    assert missing_names(one, match(one, VMS)) == ["u8"]
    assert missing_names(one, match(one, TWINS)) == []
    # A template's or replica's uuid is as unknown as its name.
    tpl = parse_selection({"selector": "name", "targets": ["u4", "u7"], "pool_id": "1"})
    assert match(tpl, TWINS) == []
    assert unknown_names(tpl, TWINS) == {"targets": ["u4", "u7"]}


def test_exclusion_by_uuid_leaves_out_one_of_two_same_named_vms() -> None:
    sel = parse_selection({"selector": "name", "targets": "app", "pool_id": "1", "exclude": "u9"})
    assert [c.uuid for c in match(sel, TWINS)] == ["u8"]
    by_name = parse_selection(
        {"selector": "tag", "targets": "prod", "pool_id": "1", "exclude": "app"}
    )
    assert [c.uuid for c in match(by_name, TWINS)] == ["u2", "u1"]


def test_shared_names_are_reported_with_their_uuids() -> None:
    sel = parse_selection(
        {"selector": "name", "targets": ["app", "ci"], "pool_id": "1", "exclude": "app"}
    )
    assert ambiguous_names(sel, TWINS) == {"app": ["u8", "u9"]}
    assert ambiguous_names(sel, VMS) == {}
    # A tag selection's targets are tags, not names.
    tags = parse_selection({"selector": "tag", "targets": "app", "pool_id": "1"})
    assert ambiguous_names(tags, TWINS) == {}


def test_the_picker_offers_a_shared_name_by_uuid() -> None:
    rows = pickable(TWINS)
    assert [(r.name, r.key) for r in rows] == [
        ("app", "u8"),
        ("app", "u9"),
        ("ci", "ci"),
        ("db-01", "db-01"),
        ("web-01", "web-01"),
    ]
    assert rows[0].power_state == "Running" and rows[0].tags == ("prod",)
    assert rows[2].power_state == "unknown" and not rows[2].shared_name


def test_a_partial_selection_may_list_nothing_yet() -> None:
    sel = parse_selection({"selector": "name", "targets": "", "pool_id": "1"}, partial=True)
    assert sel.targets == () and match(sel, VMS) == []
    with pytest.raises(ValidationError):
        parse_selection({"selector": "name", "targets": "", "pool_id": "1"})


def test_name_problems_say_each_field_in_words() -> None:
    sel = parse_selection(
        {"selector": "name", "targets": ["gone"], "pool_id": "1", "exclude": ["nope"]}
    )
    assert name_problems(sel, VMS, "A") == [
        ("targets", "no VM named 'gone' in pool A"),
        ("exclude", "no VM to exclude named 'nope' in pool A"),
    ]
