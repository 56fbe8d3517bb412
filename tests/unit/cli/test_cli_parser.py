"""The ``xenkeep`` parser is built from the command table: every command
parses, and ``python -m xenkeep.cli`` lists them in the table's order."""

from __future__ import annotations

import subprocess
import sys

from xenkeep.cli import COMMANDS, build_parser


def test_every_command_of_the_table_parses() -> None:
    parser = build_parser()
    examples = {
        "backup": ["backup", "restore", "vm", "--sr", "sr-uuid", "--disk", "1", "--salvage"],
        "network": ["network", "static", "192.0.2.10/24", "--dns", "192.0.2.53", "--no-wait"],
        "replication": ["replication", "start", "web-01", "--point", "p-uuid", "--yes"],
    }
    for command in COMMANDS:
        args = parser.parse_args(examples.get(command.name, [command.name]))
        assert args.command == command.name
    assert len({c.name for c in COMMANDS}) == len(COMMANDS)


def test_module_invocation_lists_the_commands_in_order() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xenkeep.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = ",".join(c.name for c in COMMANDS)
    assert f"{{{names}}}" in result.stdout
    assert names == (
        "status,setup-token,reset-admin,version,check,support-bundle,network,ntp,pools,backup,"
        "replication"
    )
