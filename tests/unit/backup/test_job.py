"""Job validation and VM selection."""

from __future__ import annotations

from typing import Any

import pytest

from xenkeep.backup.const import Selector
from xenkeep.backup.job import JobSpec, missing_names, select_vms, validate_job
from xenkeep.errors import ValidationError

GOOD: dict[str, Any] = {
    "name": "nightly",
    "selector": "tag",
    "targets": "prod, web",
    "pool_id": "1",
    "schedule": "30 2 * * *",
    "timezone": "Europe/Paris",
    "retention": "7",
    "concurrency": "2",
    "bandwidth_limit_mib": "50",
    "full_every": "",
}


def test_valid_job_round_trips() -> None:
    spec = validate_job(GOOD)
    assert spec.selector is Selector.TAG
    assert spec.targets == ("prod", "web")
    assert spec.bandwidth_limit == 50 << 20
    assert spec.full_every is None
    assert JobSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"selector": "color"}, "selector"),
        ({"targets": ""}, "targets"),
        ({"pool_id": ""}, "pool_id"),
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"timezone": "Nowhere/City"}, "timezone"),
        ({"retention": "0"}, "retention"),
        ({"retention": "many"}, "retention"),
        ({"concurrency": "99"}, "concurrency"),
        ({"full_every": "1"}, "full_every"),
        ({"bandwidth_limit_mib": "-3"}, "bandwidth_limit_mib"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_job({**GOOD, **change})
    assert info.value.field == field


def test_pool_selector_needs_no_targets_and_schedule_is_optional() -> None:
    spec = validate_job({**GOOD, "selector": "pool", "targets": "", "schedule": ""})
    assert spec.targets == ()
    assert spec.schedule == ""


VMS: dict[str, dict[str, Any]] = {
    "r1": {"uuid": "u1", "name_label": "web-01", "tags": ["prod", "web"]},
    "r2": {"uuid": "u2", "name_label": "db-01", "tags": ["prod"]},
    "r3": {"uuid": "u3", "name_label": "ci", "tags": ["ci"]},
    "r4": {"uuid": "u4", "name_label": "tpl", "tags": ["prod"], "is_a_template": True},
    "r5": {"uuid": "u5", "name_label": "snap", "tags": ["prod"], "is_a_snapshot": True},
    "r6": {"uuid": "u6", "name_label": "dom0", "is_control_domain": True},
}


def test_select_by_tag_picks_up_new_vms() -> None:
    spec = validate_job({**GOOD, "targets": "prod"})
    assert [c.name for c in select_vms(spec, VMS)] == ["db-01", "web-01"]
    later = {**VMS, "r7": {"uuid": "u7", "name_label": "app-02", "tags": ["prod"]}}
    assert [c.name for c in select_vms(spec, later)] == ["app-02", "db-01", "web-01"]


def test_select_by_name_reports_missing() -> None:
    spec = validate_job({**GOOD, "selector": "name", "targets": "ci, gone"})
    chosen = select_vms(spec, VMS)
    assert [c.uuid for c in chosen] == ["u3"]
    assert missing_names(spec, chosen) == ["gone"]


def test_select_pool_takes_every_real_vm() -> None:
    spec = validate_job({**GOOD, "selector": "pool", "targets": ""})
    assert {c.uuid for c in select_vms(spec, VMS)} == {"u1", "u2", "u3"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "nightly\r\nBcc: x@example.org"}, "name"),
        ({"name": "night\x00ly"}, "name"),
        ({"name": "nightly\u2028"}, "name"),
        ({"name": "\u202enightly"}, "name"),
        ({"targets": ["prod", "we\rb"]}, "targets"),
        ({"targets": ["prod\x1b[31m"]}, "targets"),
        ({"pool_id": "1\n"}, "pool_id"),
        ({"schedule": "30 2 * *\n*"}, "schedule"),
        ({"timezone": "Europe/Paris\x7f"}, "timezone"),
    ],
)
def test_control_characters_are_refused_in_every_text_field(
    change: dict[str, Any], field: str
) -> None:
    """A job name with CR/LF once broke its report mail silently."""
    with pytest.raises(ValidationError, match="control character") as info:
        validate_job({**GOOD, **change})
    assert info.value.field == field


def test_targets_typed_one_per_line_are_still_split() -> None:
    assert validate_job({**GOOD, "targets": "prod\r\nweb\n"}).targets == ("prod", "web")
