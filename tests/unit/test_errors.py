"""The error tree: a leaf is both its domain's error and its HTTP kind, and
the error middleware answers with the kind's status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from xenkeep.auth.errors import (
    AccountExistsError,
    AccountInputError,
    ApiTokenNotFoundError,
    AttemptsThrottledError,
    AuthError,
    CredentialsRejectedError,
)
from xenkeep.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    UpstreamError,
    ValidationError,
    XenKeepError,
    kind_of,
)
from xenkeep.pools.errors import PoolError, PoolExistsError, PoolInputError, PoolNotFoundError
from xenkeep.repo.errors import (
    ChainBrokenError,
    ChainBusyError,
    NoDatastoreError,
    PointNotFoundError,
    RepoError,
)
from xenkeep.web.middleware import error_middleware
from xenkeep.xapi.errors import (
    FingerprintMismatchError,
    TaskCancelledError,
    TransferError,
    XapiAuthenticationError,
    XapiConnectionError,
    XapiError,
    XapiFailure,
    failure_from,
)

#: (error, its domain base, its HTTP kind)
LEAVES: list[tuple[XenKeepError, type[XenKeepError], type[XenKeepError]]] = [
    (PointNotFoundError("no point p1"), RepoError, NotFoundError),
    (ChainBusyError("vm busy"), RepoError, ConflictError),
    (NoDatastoreError("no storage"), RepoError, ConflictError),
    (ChainBrokenError("no full"), RepoError, XenKeepError),
    (XapiConnectionError("cannot talk"), XapiError, UpstreamError),
    (FingerprintMismatchError("AA", "BB"), XapiError, UpstreamError),
    (XapiFailure("VM_BAD_POWER_STATE", ["r"]), XapiError, UpstreamError),
    (TaskCancelledError("TASK_CANCELLED"), XapiError, UpstreamError),
    (TransferError("stream broke"), XapiError, UpstreamError),
    (failure_from(["SESSION_AUTHENTICATION_FAILED", "root"]), XapiError, ValidationError),
    (CredentialsRejectedError("wrong"), AuthError, AuthenticationError),
    (AttemptsThrottledError("slow down", retry_after=7), AuthError, RateLimitedError),
    (AccountExistsError("taken"), AuthError, ConflictError),
    (ApiTokenNotFoundError("no token"), AuthError, NotFoundError),
    (AccountInputError("too short", field="password"), AuthError, ValidationError),
    (PoolNotFoundError("no pool 3"), PoolError, NotFoundError),
    (PoolExistsError("already connected"), PoolError, ConflictError),
    (PoolInputError("the password is required", field="password"), PoolError, ValidationError),
]


@pytest.mark.parametrize(("error", "domain", "kind"), LEAVES, ids=lambda v: type(v).__name__)
def test_a_leaf_is_its_domain_and_its_kind(
    error: XenKeepError, domain: type[XenKeepError], kind: type[XenKeepError]
) -> None:
    assert isinstance(error, domain)
    assert isinstance(error, kind)
    assert kind_of(error) is kind
    assert error.status == kind.status
    with pytest.raises(domain):
        raise error


def test_domain_bases_carry_no_status() -> None:
    # A bare domain error is an internal fault; only kinds give statuses.
    for base in (RepoError, XapiError, AuthError, PoolError):
        assert "status" not in vars(base)
    assert RepoError("x").status == 500
    assert kind_of(RepoError("x")) is XenKeepError


def test_the_kinds_codes_stay_the_api_codes() -> None:
    # Leaves without a code of their own answer with their kind's code.
    assert CredentialsRejectedError("x").code == "unauthenticated"
    assert AccountInputError("x").code == "invalid_input"
    assert PointNotFoundError("x").code == "point_not_found"
    assert XapiAuthenticationError("SESSION_AUTHENTICATION_FAILED").code == (
        "xapi_authentication_failed"
    )


def test_a_leaf_of_two_statuses_must_choose() -> None:
    with pytest.raises(TypeError, match="set `status`"):

        class Ambiguous(XapiFailure, ValidationError):
            pass

    class Chosen(XapiFailure, ValidationError):
        status = ValidationError.status

    assert kind_of(Chosen("X")) is ValidationError


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    raised = {name: error for error, *_ in LEAVES for name in [type(error).__name__]}
    raised["RepoError"] = RepoError("the datastore is damaged")

    async def handler(request: web.Request) -> web.StreamResponse:
        raise raised[request.match_info["name"]]

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/api/v1/raise/{name}", handler)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("PointNotFoundError", 404, "point_not_found"),
        ("ChainBusyError", 409, "chain_busy"),
        ("NoDatastoreError", 409, "no_storage"),
        ("XapiConnectionError", 502, "xapi_unreachable"),
        ("XapiAuthenticationError", 400, "xapi_authentication_failed"),
        ("CredentialsRejectedError", 401, "unauthenticated"),
        ("AttemptsThrottledError", 429, "rate_limited"),
        ("AccountInputError", 400, "invalid_input"),
        ("RepoError", 500, "repo_error"),
    ],
)
async def test_middleware_answers_with_the_kind(
    client: TestClient, name: str, status: int, code: str
) -> None:
    resp = await client.get(f"/api/v1/raise/{name}")
    body = await resp.json()
    assert resp.status == status, body
    assert body["error"]["code"] == code
    if name == "AttemptsThrottledError":
        assert resp.headers["Retry-After"] == "7"
    if name == "AccountInputError":
        assert body["error"]["field"] == "password"
