"""What the shipped appliance files let the console account and the daemon do as root.

The console/SSH account ``xenkeep`` is also the daemon's user: whatever sudo
gives it, a compromised daemon holding its password would have. So the
sudoers files must name exact commands with exact arguments, never ``ALL``.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

APPLIANCE = Path(__file__).resolve().parents[3] / "appliance"
SUDOERS_D = APPLIANCE / "etc/sudoers.d"
UNITS = APPLIANCE / "usr/lib/systemd/system"
CONSOLE = "xenkeep"
#: What the console account may run as root, exactly (arguments included).
#: Not the console tool: the account owns the daemon's state, and as root the
#: tool would read files in directories the account controls (a symbolic link
#: at /run/xenkeep/setup-token to /etc/shadow).
CONSOLE_COMMANDS = {"/usr/bin/systemctl reboot", "/usr/bin/systemctl poweroff"}


@dataclass(frozen=True)
class Rule:
    """One user specification: who, as whom, which commands (aliases refused)."""

    file: str
    users: tuple[str, ...]
    runas: str
    commands: tuple[str, ...]


def _logical_lines(text: str) -> list[str]:
    # sudoers continues a line that ends in a backslash; "#" starts a comment
    # (except "#include" and "#123" uids, which these files do not use).
    joined = re.sub(r"\\\n", " ", text)
    return [
        line.split("#", 1)[0].strip()
        for line in joined.splitlines()
        if line.split("#", 1)[0].strip()
    ]


def parse_sudoers(path: Path) -> list[Rule]:
    """The user specifications of one sudoers file; anything unexpected fails."""
    rules = []
    for line in _logical_lines(path.read_text()):
        if line.startswith("Defaults"):
            continue
        # An alias could hide ALL behind a name: these files use none.
        assert not re.match(r"(User|Runas|Host|Cmnd|Cmd)_Alias\b", line), f"{path.name}: {line}"
        m = re.fullmatch(r"(\S+(?:\s*,\s*\S+)*)\s+(\S+)\s*=\s*(\([^)]*\))?\s*(.*)", line)
        assert m, f"{path.name}: cannot read {line!r}"
        users = tuple(u.strip() for u in m.group(1).split(","))
        commands = tuple(c.strip() for c in m.group(4).split(","))
        rules.append(Rule(path.name, users, (m.group(3) or "(root)").strip("()"), commands))
    return rules


def _applies_to_console(rule: Rule) -> bool:
    return any(u in (CONSOLE, f"%{CONSOLE}", "ALL") for u in rule.users)


def _command(spec: str) -> str:
    # Tags (NOPASSWD:, SETENV: ...) come before the command.
    return re.sub(r"^(?:[A-Z_]+:\s*)+", "", spec).strip()


def test_the_shipped_sudoers_files_are_read() -> None:
    rules = [r for path in sorted(SUDOERS_D.iterdir()) for r in parse_sudoers(path)]
    assert any(_applies_to_console(r) for r in rules), "the console account has no rule at all"


@pytest.mark.parametrize("path", sorted(SUDOERS_D.iterdir()), ids=lambda p: p.name)
def test_the_console_account_gets_no_root_shell(path: Path) -> None:
    for rule in parse_sudoers(path):
        if not _applies_to_console(rule):
            continue
        # No "(ALL)" either: the commands run as root, not as any user.
        assert rule.runas == "root", f"{path.name}: runs as {rule.runas!r}"
        for spec in rule.commands:
            command = _command(spec)
            assert command != "ALL" and not command.startswith("ALL"), f"{path.name}: {spec}"
            assert "SETENV" not in spec, f"{path.name}: {spec} keeps the caller's environment"
            # Wildcards and "" let any argument through (--config ... as root).
            assert not re.search(r'[*?\[\]]|""', command), f"{path.name}: {spec}"
            assert command in CONSOLE_COMMANDS, f"{path.name}: {spec} is not on the list"


def test_visudo_accepts_the_files() -> None:
    visudo = shutil.which("visudo")
    if visudo is None:
        pytest.skip("visudo is not installed")
    for path in sorted(SUDOERS_D.iterdir()):
        out = subprocess.run([visudo, "-c", "-f", str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((UNITS / name).read_text())
    return unit


def test_the_daemon_can_never_gain_privileges() -> None:
    # Even with the console password, sudo does nothing under NoNewPrivileges=.
    service = _unit("xenkeepd.service")["Service"]
    assert service["User"] == CONSOLE
    assert service["NoNewPrivileges"] == "yes"
    # ~xenkeep/.ssh/authorized_keys would be an SSH login without a password.
    assert service["ProtectHome"] == "yes"
