"""The console's pure output: the progress line, tables and the result line."""

from __future__ import annotations

from xenkeep.cli.follow import exit_code
from xenkeep.cli.output import (
    point_type,
    progress_line,
    restore_summary,
    run_summary,
    table,
    verified,
)

MiB = 1 << 20


def test_progress_sums_the_running_disks_and_takes_the_longest_eta() -> None:
    run = {
        "status": "running",
        "tasks": [
            {"disk_key": None, "vm_name": "a", "status": "running", "stage": "export"},
            {"disk_key": None, "vm_name": "b", "status": "success", "stage": "done"},
            {
                "disk_key": "0",
                "status": "running",
                "bytes": MiB,
                "total_bytes": 4 * MiB,
                "speed": MiB,
                "eta": 3.0,
            },
            {
                "disk_key": "1",
                "status": "running",
                "bytes": 0,
                "total_bytes": 4 * MiB,
                "speed": 2 * MiB,
                "eta": 75.0,
            },
            {
                "disk_key": "0",
                "status": "success",
                "bytes": 2 * MiB,
                "total_bytes": 2 * MiB,
                "speed": 9 * MiB,
                "eta": 0.0,
            },
        ],
    }
    assert progress_line(run) == (
        "progress  30%  3.0 MiB of 10.0 MiB  3.0 MiB/s  ETA 1:15  [a: export]"
    )


def test_progress_before_any_task() -> None:
    assert progress_line({"status": "pending", "tasks": []}) == "progress 0 B  [pending]"


def test_table_aligns_columns() -> None:
    assert table(["A", "LONG"], [["xyz", "1"], ["q", ""]]).splitlines() == [
        "A    LONG",
        "xyz  1",
        "q",
    ]


def test_partly_failed_run_says_so() -> None:
    run = {
        "status": "failed",
        "report": {"vms": [{"status": "success"}, {"status": "failed", "error": "boom"}]},
    }
    assert run_summary(run).splitlines()[-1] == "result: partly failed (1 of 2 VMs failed)"


def test_a_damaged_point_says_where_whatever_the_last_verify_said() -> None:
    point = {
        "id": "p1",
        "created": 10.0,
        "damage": [{"disk": "0", "blocks": [3, 4, 5, 9]}, {"disk": "1", "blocks": []}],
    }
    point["verified"] = {"state": "ok", "at": 30.0}
    assert verified(point, "UTC") == "DAMAGED disk 0 blocks 3-5, 9; disk 1 whole file"
    assert verified({**point, "damage": []}, "UTC").startswith("ok ")


def test_a_salvaged_restore_lists_what_it_zeroed_and_left_unchecked() -> None:
    run = {
        "job_name": "restore vm",
        "status": "failed",
        "error": "restored what could be read from restore point p1: ...",
        "report": {
            "point_id": "p1",
            "damage": [{"disk": "0", "zeroed": [7, 8], "unchecked": {"f": [1, 2, 3]}}],
        },
    }
    lines = restore_summary(run).splitlines()
    assert "damaged:       disk 0 blocks 7-8 written as zeros" in lines
    assert "unchecked:     disk 0 blocks 1-3 of f.vhd" in lines
    assert lines[-1] == "result: failed"


def test_a_run_with_warnings_prints_them_and_exits_2() -> None:
    run = {
        "status": "warning",
        "error": "web: snapshot S stays in the pool",
        "report": {"warnings": ["web: snapshot S stays in the pool"], "vms": []},
    }
    text = run_summary(run)
    assert "warning: web: snapshot S stays in the pool" in text and "error:" not in text
    assert text.endswith("result: warning")
    assert [exit_code({"status": s}) for s in ("success", "warning", "failed", "cancelled")] == [
        0,
        2,
        1,
        1,
    ]


def test_a_point_says_what_it_is_and_how_it_was_taken() -> None:
    merged = {"type": "full", "disks": [{"transfer": "delta"}]}
    assert point_type(merged) == "full (taken as delta)"
    assert point_type({"type": "delta", "disks": [{"transfer": "delta"}]}) == "delta"
    ok = {"verified": {"state": "ok", "at": 1764644400.0}}
    assert verified(ok, "Europe/Paris") == "ok 2025-12-02 04:00 CET"
    assert verified({"verified": {"state": "damaged"}}, "UTC") == "DAMAGED"
    assert verified({}, "UTC") == "not yet"
