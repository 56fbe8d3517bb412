"""Where a sign-in may send the browser: only this appliance's own paths,
checked as the browser's URL parser will read them."""

from __future__ import annotations

import pytest

from tests.support.hostile import HOSTILE_REDIRECTS as HOSTILE
from xenkeep.web.flash import redirect
from xenkeep.web.forms import safe_next

OWN = [
    "/",
    "/backup/jobs",
    "/operations/12?x=1",
    "/backup/runs/3#log",
    "/a%20b",
    "/caf%C3%A9",
    "/setup/pool",
]


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_targets_go_home(target: str | None) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", OWN)
def test_own_paths_are_kept(target: str) -> None:
    assert safe_next(target) == target


def test_a_redirect_off_the_appliance_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="off the appliance"):
        redirect("https://evil.example/")
