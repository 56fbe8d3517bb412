"""The console's lookups: a job by id or name, a restore point by id or prefix."""

from __future__ import annotations

import pytest

from xenkeep.cli.errors import ConsoleError
from xenkeep.cli.lookup import find_job, find_point


def test_find_point_newest_exact_prefix_and_errors() -> None:
    points = [{"id": "20261125T100000Z-000001"}, {"id": "20261125T110000Z-000002"}]
    assert find_point(points, None) is points[-1]
    assert find_point(points, "20261125T100000Z-000001") is points[0]
    assert find_point(points, "20261125T11") is points[1]
    with pytest.raises(ConsoleError, match="2 restore points start with"):
        find_point(points, "20261125")
    with pytest.raises(ConsoleError, match="no restore point 'x'"):
        find_point(points, "x")
    with pytest.raises(ConsoleError, match="no restore points"):
        find_point([], None)


def test_find_job_by_id_then_name() -> None:
    jobs = [
        {"id": 1, "name": "7"},
        {"id": 7, "name": "weekly"},
        {"id": 9, "name": "dup"},
        {"id": 10, "name": "dup"},
    ]
    assert find_job(jobs, "7")["id"] == 7
    assert find_job(jobs, "weekly")["id"] == 7
    with pytest.raises(ConsoleError, match="several jobs are named 'dup'"):
        find_job(jobs, "dup")
