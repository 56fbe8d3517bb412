"""attempt(): what a form shows again, and what goes to the error page."""

from __future__ import annotations

import pytest

from xenkeep.errors import (
    ConflictError,
    RateLimitedError,
    UnavailableError,
    UpstreamError,
    ValidationError,
    XenKeepError,
)
from xenkeep.repo.errors import RepoError
from xenkeep.web.forms import FormError, attempt


async def fails(exc: XenKeepError) -> int:
    raise exc


async def test_a_result_passes_through() -> None:
    async def ok() -> int:
        return 7

    assert await attempt(ok()) == 7


@pytest.mark.parametrize(
    ("exc", "shown"),
    [
        (
            ValidationError("bad name", field="name", hint="letters only"),
            FormError("bad name (letters only)", "name", 400),
        ),
        (ConflictError("a run is going on"), FormError("a run is going on", None, 409)),
        # A pool's refusal is about what was typed: the form answers 400.
        (
            UpstreamError("the pool refused the password"),
            FormError("the pool refused the password", None, 400),
        ),
        (
            UnavailableError("the helper is not running"),
            FormError("the helper is not running", None, 503),
        ),
        # Storage problems are shown where the storage was chosen.
        (RepoError("cannot write to /srv/x"), FormError("cannot write to /srv/x", None, 400)),
    ],
)
async def test_refusals_come_back_for_the_form(exc: XenKeepError, shown: FormError) -> None:
    assert await attempt(fails(exc)) == shown


@pytest.mark.parametrize("exc", [XenKeepError("internal"), RateLimitedError("wait", retry_after=3)])
async def test_faults_and_waits_go_to_the_error_page(exc: XenKeepError) -> None:
    with pytest.raises(type(exc)):
        await attempt(fails(exc))
