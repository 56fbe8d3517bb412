"""The time-zone list offers canonical zones only: no aliases, no inverted
POSIX offsets."""

from __future__ import annotations

import pytest

from xenkeep.errors import ValidationError
from xenkeep.system.identity import known_timezones, validate_identity


def test_only_canonical_zones_are_offered() -> None:
    zones = known_timezones()
    assert zones[0] == "UTC"
    assert {"Europe/Paris", "Asia/Kolkata", "America/New_York"} <= set(zones)
    # Aliases of those, and Etc/GMT+5 (which is UTC-5), are not offered.
    assert not {"US/Eastern", "Asia/Calcutta", "Etc/GMT+5", "GMT", "posixrules"} & set(zones)


@pytest.mark.parametrize("alias", ["US/Eastern", "Asia/Calcutta"])
def test_an_alias_is_refused_when_set(alias: str) -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        validate_identity("Keep", alias)
