"""The suite fails a test that blocks the event loop (tests/conftest.py).

A generated test file runs in its own pytest with this suite's conftest as a
plugin: the blocking calls in async tests and async fixtures must fail with
blockbuster's BlockingError, while the same calls in a worker thread or in a
sync test pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GENERATED = """
import asyncio
import time

import pytest


async def test_sleeps() -> None:
    time.sleep(0.01)


async def test_reads_a_file() -> None:
    with open(__file__) as f:
        f.read()


@pytest.fixture
async def blocking_fixture() -> None:
    time.sleep(0.01)


def test_sync_test_with_a_blocking_async_fixture(blocking_fixture: None) -> None:
    pass


async def test_blocking_work_in_a_thread_is_fine() -> None:
    await asyncio.to_thread(time.sleep, 0.01)
    await asyncio.to_thread(lambda: open(__file__).read())
    await asyncio.sleep(0.01)


def test_a_sync_test_may_block() -> None:
    time.sleep(0.01)
    with open(__file__) as f:
        f.read()
    asyncio.run(asyncio.sleep(0))
"""


def test_blocking_calls_in_the_event_loop_fail(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worktree's packages first, as the suite itself runs them.
    path = [str(ROOT / "daemon"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    monkeypatch.setenv("COLUMNS", "300")  # whole reasons on the summary lines
    pytester.makepyfile(test_generated=GENERATED)
    result = pytester.runpytest_subprocess(
        "-p",
        "tests.conftest",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-rfE",
    )
    result.assert_outcomes(passed=2, failed=2, errors=1)
    result.stdout.fnmatch_lines_random(
        [
            "FAILED test_generated.py::test_sleeps - *BlockingError: Blocking call to time.sleep",
            "FAILED test_generated.py::test_reads_a_file - *BlockingError: Blocking call to"
            " io.TextIOWrapper.read",
            "ERROR test_generated.py::test_sync_test_with_a_blocking_async_fixture - *"
            "BlockingError: Blocking call to time.sleep",
        ]
    )
