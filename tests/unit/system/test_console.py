"""Console banner and the addresses reported to xenstore."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from xenkeep import __version__
from xenkeep.system.console import (
    ConsoleState,
    read_token,
    render_banner,
    report_to_xenstore,
    url_for,
    usable_addresses,
    write_issue,
    xenstore_writes,
)

FP = ":".join(["AB"] * 32)


def test_banner_shows_everything_while_no_admin() -> None:
    text = render_banner(ConsoleState(("192.0.2.10", "2001:db8::10"), FP, "tok-123"))
    assert f"XenKeep {__version__}" in text
    assert "https://192.0.2.10/\n" in text
    assert "https://[2001:db8::10]/\n" in text
    assert FP in text
    assert "Setup token: tok-123\n" in text


def test_banner_without_token_or_address() -> None:
    text = render_banner(ConsoleState((), None, None, https_port=8443))
    assert "Setup token" not in text
    assert "No network address yet" in text
    assert "not created yet" in text


def test_banner_escapes_agetty_sequences() -> None:
    text = render_banner(ConsoleState(("192.0.2.10",), FP, "a\\nb"))
    assert "a\\\\nb" in text


def test_urls_and_address_filter() -> None:
    assert url_for("192.0.2.1", 8443) == "https://192.0.2.1:8443/"
    assert usable_addresses(
        ["127.0.0.1", "::1", "fe80::1%eth0", "2001:db8::1", "10.0.2.15", "junk", "10.0.2.15"]
    ) == ("10.0.2.15", "2001:db8::1")


def test_token_file(tmp_path: Path) -> None:
    token = tmp_path / "setup-token"
    assert read_token(token) is None
    token.write_text("abc\n")
    assert read_token(token) == "abc"


def test_issue_written_only_on_change(tmp_path: Path) -> None:
    issue = tmp_path / "issue.d/50-xenkeep.issue"
    assert write_issue(issue, "one\n")
    assert not write_issue(issue, "one\n")
    assert write_issue(issue, "two\n")
    assert issue.read_text() == "two\n"


def test_xenstore_keys() -> None:
    assert xenstore_writes(["10.0.2.15", "2001:db8::1"]) == [
        ("attr/vif/0/ipv4/0", "10.0.2.15"),
        ("attr/vif/0/ipv6/0", "2001:db8::1"),
        ("data/updated", "1"),
    ]


@pytest.fixture
def tool_dir(tmp_path: Path) -> Path:
    """A directory holding a stand-in ``xenstore-write``."""
    tool = tmp_path / "xenstore-write"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    return tmp_path


async def test_report_runs_xenstore_write(tool_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    async def run(argv: Sequence[str]) -> int:
        calls.append(list(argv))
        return 0

    # The host may have the tool.
    assert not await report_to_xenstore(["10.0.2.15"], run=run) or calls
    calls.clear()
    monkeypatch.setenv("PATH", str(tool_dir))
    assert await report_to_xenstore(["10.0.2.15"], run=run)
    assert calls[0] == ["xenstore-rm", "attr/vif/0"]
    assert calls[1] == ["xenstore-write", "attr/vif/0/ipv4/0", "10.0.2.15", "data/updated", "1"]
