"""Fixtures shared by the whole suite: settings under tmp_path, the real
daemon behind its real TLS listener on a loopback port, a client, and a guard
that fails any test blocking the event loop."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from types import CodeType, ModuleType

import pytest
from blockbuster import BlockBuster
from pytest_asyncio import is_async_test

import xapisim
from tests.support.web import Browser, make_settings
from xapisim.pool import PARTIAL_BLOCKS_ENV
from xenkeep import blocking
from xenkeep.app import create_app
from xenkeep.config import Settings
from xenkeep.web.server import RunningServer, start_server

#: loop_disks and appliance: a real privileged helper serving loop disks;
#: slapd: one OpenLDAP server for the session (LDAP sign-in);
#: saml_idp and idp_session: a real SAML IdP (SimpleSAMLphp) on loopback;
#: oidc_idp, google_idp, github_standin: identity providers on loopback,
#: started (once per session) only by the tests that ask for them;
#: pytester: runs of pytest on generated tests (tests/test_no_blocking.py).
pytest_plugins = [
    "tests.support.privhelper",
    "tests.support.slapd",
    "tests.support.idp_saml",
    "tests.support.idp_oidc",
    "tests.support.github_standin",
    "pytester",
]

# Every simulator the tests start (in process or as `python -m xapisim`)
# exports deltas with partial blocks, as real differencing disks can hold
# them, so the product's path for them is what the suite exercises. A test
# that wants whole blocks passes partial_blocks=False.
os.environ.setdefault(PARTIAL_BLOCKS_ENV, "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, object, None]:
    """Under ``XENKEEP_NO_SKIPS=1`` (set by .ci/run) a skipped test fails.

    Tests skip when the machine lacks root or a tool; CI has both, so a skip
    there means a test that silently stopped testing.
    """
    outcome = yield
    if os.environ.get("XENKEEP_NO_SKIPS") != "1":
        return
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped where skips are not allowed: {report.longrepr}"


@functools.cache
def _simulator_code() -> dict[str, frozenset[str]]:
    """Every simulator source file and the names of all the code in it."""

    def names(code: CodeType) -> Iterator[str]:
        yield code.co_name
        for const in code.co_consts:
            if isinstance(const, CodeType):
                yield from names(const)

    package = Path(xapisim.__file__).parent
    return {
        str(path): frozenset(names(compile(path.read_text(), str(path), "exec")))
        for path in sorted(package.rglob("*.py"))
    }


TESTS = Path(__file__).resolve().parent


def _blockbuster(test_module: ModuleType | None) -> BlockBuster:
    """The daemon's rules (:mod:`xenkeep.blocking`), applied to the tests too.

    Only a blocking call with the daemon package on its stack counts: what
    must never block the loop is the daemon's code. How the libraries treat
    their loop is not ours to test, and a test body may check a file it made.
    A test module outside tests/ (the detector's own proof, run by pytester)
    is scanned whole.
    """
    scanned: list[str | ModuleType] = ["xenkeep"]
    module_file = getattr(test_module, "__file__", None)
    if test_module is not None and module_file and not Path(module_file).is_relative_to(TESTS):
        scanned.append(test_module)
    bb = blocking.rules(scanned)
    for rule in bb.functions.values():
        # The simulator stands in for a pool on other machines: its disk
        # files, its state and its VHD writer block those machines, not the
        # appliance, even though here it shares the test's loop.
        for path, functions in _simulator_code().items():
            rule.can_block_in(path, functions)
    return bb


def _runs_in_event_loop(item: pytest.Item) -> bool:
    """An async test, or a sync test that uses an async fixture."""
    if is_async_test(item):
        return True
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        inspect.iscoroutinefunction(defs[-1].func) or inspect.isasyncgenfunction(defs[-1].func)
        for defs in info.name2fixturedefs.values()
        if defs
    )


@pytest.fixture(autouse=True)
def no_blocking(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test when a blocking call runs in an event loop's thread.

    Autouse fixtures come first among function-scoped ones, so the async
    fixtures' set-up and tear-down run under the guard too. It applies to any
    loop a test drives, including a server loop in a thread of an async test.
    Sync tests are left alone: their loops (``asyncio.run`` in a helper) are
    not the daemon's.
    """
    if not _runs_in_event_loop(request.node):
        yield
        return
    rules = _blockbuster(getattr(request.node, "module", None))
    rules.activate()
    try:
        yield
    finally:
        rules.deactivate()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of a daemon living under tmp_path."""
    return make_settings(tmp_path)


@pytest.fixture
async def daemon(settings: Settings) -> AsyncIterator[RunningServer]:
    """The real daemon app behind its real HTTPS listener."""
    app = create_app(settings)
    async with start_server(app) as server:
        yield server


@pytest.fixture
async def browser(daemon: RunningServer) -> AsyncIterator[Browser]:
    """A client of ``daemon``."""
    client = Browser(daemon)
    yield client
    await client.close()
