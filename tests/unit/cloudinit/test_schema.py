"""Custom #cloud-config against cloud-init's own schema (the file of Debian's
cloud-init package, unpacked by scripts/deps.sh test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xenkeep.cloudinit.schema import load_schema, schema_path
from xenkeep.formats.cloudinit import SchemaChecker, parse_custom
from xenkeep.formats.errors import CloudConfigError


@pytest.fixture(scope="module")
def schema() -> SchemaChecker:
    # Never skipped: the test machine has the schema (scripts/deps.sh test).
    found = load_schema()
    assert found is not None, "cloud-init's schema is missing: run scripts/deps.sh test"
    return found


def test_the_schema_is_cloud_inits_own() -> None:
    path = schema_path()
    assert path is not None and path.name == "schema-cloud-config-v1.json"
    assert json.loads(path.read_text())["$schema"].startswith("http://json-schema.org/")


def test_a_good_document_passes(schema: SchemaChecker) -> None:
    text = (
        "#cloud-config\npackages: [htop, git]\nruncmd:\n  - [touch, /tmp/x]\n"
        "write_files:\n  - path: /etc/motd\n    content: hello\n"
        "ntp: {enabled: true, servers: [192.0.2.1]}\n"
    )
    assert parse_custom(text, schema)["packages"] == ["htop", "git"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # Keys XenKeep knows nothing about are checked as the guest checks them.
        ("ntp: {enabled: maybe}", "ntp.enabled: 'maybe' is not of type 'boolean'"),
        ("write_files:\n  - content: x", "write_files.0: 'path' is a required property"),
        ("apt: {sources: 3}", "apt.sources: 3 is not of type 'object'"),
        ("resize_rootfs: sometimes", "resize_rootfs: 'sometimes' is not one of"),
    ],
)
def test_a_document_breaking_the_schema_is_refused_saying_where(
    schema: SchemaChecker, text: str, words: str
) -> None:
    with pytest.raises(CloudConfigError) as caught:
        parse_custom("#cloud-config\n" + text + "\n", schema)
    assert "cloud-init's schema" in str(caught.value) and words in str(caught.value)


def test_many_errors_are_summed_up(schema: SchemaChecker) -> None:
    text = "#cloud-config\n" + "".join(
        f"{k}: 7\n" for k in ("packages", "runcmd", "bootcmd", "write_files", "ntp")
    )
    with pytest.raises(CloudConfigError, match="and 2 more"):
        parse_custom(text, schema)


def test_a_named_schema_file_wins_and_a_broken_one_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "schema.json"
    broken.write_text("{not json")
    monkeypatch.setenv("XENKEEP_CLOUD_INIT_SCHEMA", str(broken))
    assert schema_path() == broken and load_schema() is None
    monkeypatch.setenv("XENKEEP_CLOUD_INIT_SCHEMA", str(tmp_path / "absent.json"))
    assert schema_path() is None and load_schema() is None
