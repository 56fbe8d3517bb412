"""Reading task results in both shapes pools send."""

from __future__ import annotations

import pytest

from xenkeep.xapi.errors import TaskCancelledError, TaskFailedError
from xenkeep.xapi.tasks import parse_task_result, task_outcome


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("<value>OpaqueRef:abc</value>", "OpaqueRef:abc"),
        ("  <value>OpaqueRef:abc</value>\n", "OpaqueRef:abc"),
        ("OpaqueRef:abc", "OpaqueRef:abc"),
        ("", ""),
        ("<value><array><data><value>a</value><value>b</value></data></array></value>", ["a", "b"]),
        (
            "<value><struct><member><name>k</name><value>v</value></member></struct></value>",
            {"k": "v"},
        ),
        ("<value><boolean>1</boolean></value>", True),
        ("<value>a &amp; b</value>", "a & b"),
        ("<value><broken", "<value><broken"),
    ],
)
def test_parse_task_result(text: str, value: object) -> None:
    assert parse_task_result(text) == value


def test_task_outcome() -> None:
    assert task_outcome({"status": "success", "result": "<value>OpaqueRef:1</value>"}) == (
        "OpaqueRef:1"
    )
    with pytest.raises(TaskFailedError) as info:
        task_outcome({"status": "failure", "error_info": ["SR_FULL", "1", "0"], "name_label": "x"})
    assert info.value.description == ["SR_FULL", "1", "0"]
    with pytest.raises(TaskCancelledError):
        task_outcome({"status": "cancelled", "error_info": ["TASK_CANCELLED", "t"]})
    with pytest.raises(TaskFailedError) as info:
        task_outcome({"status": "failure", "error_info": []})
    assert info.value.xapi_code == "INTERNAL_ERROR"
