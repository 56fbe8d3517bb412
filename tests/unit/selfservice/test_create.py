"""Batch names and the CloudInit-ready mark of templates."""

from __future__ import annotations

from xenkeep.selfservice.create import batch_names, is_cloud_ready


def test_batch_names() -> None:
    assert batch_names("web", 1) == ["web"]
    assert batch_names("web{index}", 1) == ["web1"]
    assert batch_names("web-{index}-eu", 3) == ["web-1-eu", "web-2-eu", "web-3-eu"]
    assert batch_names("db", 2) == ["db1", "db2"]


def test_cloud_ready_by_tag_or_other_config() -> None:
    assert is_cloud_ready({"tags": ["cloud-init"], "other_config": {}})
    assert is_cloud_ready({"tags": [], "other_config": {"cloud-init": "true"}})
    assert not is_cloud_ready({"tags": ["web"], "other_config": {"cloud-init": "false"}})
