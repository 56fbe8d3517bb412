"""Replication job validation (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from xenkeep.errors import ValidationError
from xenkeep.jobs.vmselect import Selector
from xenkeep.replication.job import ReplicationSpec, parse_networks, validate_job

GOOD: dict[str, Any] = {
    "name": "dr",
    "selector": "tag",
    "targets": "prod",
    "pool_id": "1",
    "target_pool_id": "2",
    "target_sr_uuid": "0b4a3f39-8a4e-4c43-9c2b-1f1f1f1f1f1f",
    "schedule": "*/10 * * * *",
    "retention": "4",
    "concurrency": "2",
    "bandwidth_limit_mib": "20",
    "networks": "LAN = DR LAN\n\nDMZ=DR DMZ",
    "exclude": "web-02",
}


def test_valid_job_round_trips() -> None:
    spec = validate_job(GOOD)
    assert spec.selector is Selector.TAG and spec.targets == ("prod",)
    assert spec.retention == 4 and spec.bandwidth_limit == 20 << 20
    assert spec.networks == (("LAN", "DR LAN"), ("DMZ", "DR DMZ"))
    assert spec.exclude == ("web-02",)
    assert not spec.same_pool
    assert ReplicationSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a\r\nBcc: x"}, "name"),
        ({"target_pool_id": ""}, "target_pool_id"),
        ({"target_pool_id": ["2"]}, "target_pool_id"),
        ({"target_sr_uuid": ""}, "target_sr_uuid"),
        ({"target_sr_uuid": "x\x00"}, "target_sr_uuid"),
        ({"schedule": "*/10 * * *"}, "schedule"),
        ({"retention": "0"}, "retention"),
        ({"retention": "101"}, "retention"),
        ({"concurrency": "17"}, "concurrency"),
        ({"networks": "LAN -> DR"}, "networks"),
        ({"networks": "LAN = DR\nLAN = other"}, "networks"),
        ({"networks": [{"source": "LAN"}]}, "networks"),
        ({"networks": [["LAN", "DR"]]}, "networks"),
        ({"networks": 7}, "networks"),
        ({"selector": "pool", "pool_id": ""}, "pool_id"),
    ],
)
def test_bad_fields_are_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_job({**GOOD, **change})
    assert info.value.field == field


def test_network_forms_agree() -> None:
    want = (("a", "b"),)
    assert parse_networks("a = b") == want
    assert parse_networks({"a": "b"}) == want
    assert parse_networks([{"source": "a", "target": "b"}]) == want
    assert parse_networks(None) == parse_networks("") == ()
    with pytest.raises(ValidationError, match="at most"):
        parse_networks({f"n{i}": "x" for i in range(65)})
