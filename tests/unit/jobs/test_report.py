"""Reports: totals, status, subject and body say what happened and why."""

from __future__ import annotations

from typing import Any

import pytest

from xenkeep.backup.const import RunStatus
from xenkeep.errors import ValidationError
from xenkeep.jobs.report import (
    build_report,
    failure_summary,
    mail_body,
    mail_subject,
    overall_status,
    run_warnings,
)
from xenkeep.mail import SmtpSettings
from xenkeep.mail.smtp import one_line

OK = {
    "vm_uuid": "u1",
    "vm_name": "web-01",
    "status": "success",
    "transfers": {"0": "delta"},
    "reasons": {"0": "delta against snapshot VDI s1"},
    "bytes": 3 << 20,
    "seconds": 2.0,
    "speed": 1.5 * (1 << 20),
    "merge_seconds": 0.25,
    "point_id": "p2",
    "error": "",
}
BAD = {
    "vm_uuid": "u2",
    "vm_name": "db-01",
    "status": "failed",
    "transfers": {},
    "reasons": {},
    "bytes": 0,
    "seconds": 0.5,
    "speed": 0,
    "merge_seconds": None,
    "point_id": "",
    "error": "the pool refused: SR_BACKEND_FAILURE_44",
}


def test_overall_status() -> None:
    assert overall_status([OK], cancelled=False) is RunStatus.SUCCESS
    assert overall_status([OK, BAD], cancelled=False) is RunStatus.FAILED
    assert overall_status([OK], cancelled=True) is RunStatus.CANCELLED


def test_report_subject_and_body() -> None:
    report = build_report(
        run_id=7,
        job_name="nightly",
        pool_name="Demo pool",
        appliance="xk-01",
        started=100.0,
        finished=104.0,
        vms=[OK, BAD],
        status=RunStatus.FAILED,
    )
    assert report["bytes"] == 3 << 20
    assert report["succeeded"] == 1 and report["failed"] == 1
    subject = mail_subject(report)
    assert subject == '[XenKeep xk-01] Backup "nightly" on Demo pool: failed (1/2 VMs)'
    body = mail_body(report)
    assert "disk 0: delta — delta against snapshot VDI s1" in body
    assert "merge 0.25 s" in body
    assert "error: the pool refused: SR_BACKEND_FAILURE_44" in body


def test_smtp_settings_validation() -> None:
    s = SmtpSettings.from_input(
        {"host": "mail", "port": "25", "sender": "xk@example.net", "recipients": "a@x, b@y"}
    )
    assert s.recipients == ("a@x", "b@y") and s.starttls
    for bad, field in [
        ({"host": ""}, "host"),
        ({"port": "70000"}, "port"),
        ({"recipients": "nobody"}, "recipients"),
        ({"sender": "me"}, "sender"),
    ]:
        data = {"host": "mail", "sender": "xk@example.net", "recipients": "a@x", **bad}
        with pytest.raises(ValidationError) as info:
            SmtpSettings.from_input(data)
        assert info.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"recipients": "ops@example.net\r\nBcc: x@example.org"}, "recipients"),
        ({"sender": "xk@example.net\nBcc: x@example.org"}, "sender"),
        ({"host": "smtp.example.net\r\nRCPT TO:<x@example.org>"}, "host"),
        ({"username": "ops\r\n"}, "username"),
    ],
)
def test_mail_settings_refuse_control_characters(change: dict[str, Any], field: str) -> None:
    good = {"host": "smtp.example.net", "sender": "xk@example.net", "recipients": "o@example.net"}
    with pytest.raises(ValidationError, match="control characters") as info:
        SmtpSettings.from_input({**good, **change})
    assert info.value.field == field


def test_a_subject_is_one_line() -> None:
    assert one_line('Backup "a\r\nBcc: x" on\u2028pool\x00') == 'Backup "a Bcc: x" on pool'


def test_a_failed_run_is_summed_up_in_one_line() -> None:
    bad = [{**BAD, "vm_name": f"vm-{n}", "error": f"cause {n}"} for n in range(5)]
    assert failure_summary([OK]) == ""
    assert (
        failure_summary([OK, bad[0], bad[1]]) == "2 of 3 VMs failed: vm-0: cause 0; vm-1: cause 1"
    )
    assert failure_summary(bad).endswith("vm-2: cause 2; and 2 more")


def test_a_run_that_left_something_ends_with_a_warning() -> None:
    ok = {"vm_name": "web", "status": "success"}
    leaky = {"vm_name": "db", "status": "warning", "warnings": ["snapshot X stays"]}
    failed = {"vm_name": "mail", "status": "failed", "error": "no"}
    assert overall_status([ok], cancelled=False) == "success"
    assert overall_status([ok, leaky], cancelled=False) == "warning"
    assert overall_status([ok, leaky, failed], cancelled=False) == "failed"
    assert overall_status([], cancelled=False, warnings=["selects no VM"]) == "warning"
    assert overall_status([leaky], cancelled=True) == "cancelled"
    assert run_warnings([ok, leaky], ["own"]) == ["own", "db: snapshot X stays"]
