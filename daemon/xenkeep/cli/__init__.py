"""``xenkeep``: the console tool on the appliance.

It reads the daemon's settings, then talks to the running daemon over
HTTPS (pinned to the appliance's own certificate) or opens its state
directory directly. The parser is built from the command table below; each
command module (:mod:`~xenkeep.cli.admin`, :mod:`~xenkeep.cli.health`, :mod:`~xenkeep.cli.network`,
:mod:`~xenkeep.cli.pools`, :mod:`~xenkeep.cli.backup`, :mod:`~xenkeep.cli.replication`)
contributes its rows.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from xenkeep.cli import admin, backup, health, network, pools, replication
from xenkeep.cli.command import Command
from xenkeep.cli.context import Context
from xenkeep.cli.errors import EXIT_FAILED, ConsoleError
from xenkeep.cli.output import error
from xenkeep.errors import XenKeepError

#: What a command piped into a reader that quit ends with (128 + SIGPIPE).
EXIT_BROKEN_PIPE: Final = 141

#: Every ``xenkeep`` subcommand, in the order ``--help`` lists them.
COMMANDS: Final[tuple[Command, ...]] = (
    *admin.COMMANDS,
    *health.COMMANDS,
    *network.COMMANDS,
    *pools.COMMANDS,
    *backup.COMMANDS,
    *replication.COMMANDS,
)


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The argument parser of ``xenkeep`` with one subparser per command."""
    parser = argparse.ArgumentParser(prog="xenkeep", description="XenKeep appliance console.")
    parser.add_argument("--config", type=Path, help="TOML settings file of the daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in commands:
        command.arguments(sub.add_parser(command.name, help=command.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xenkeep`` console script."""
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        ctx = Context.build(
            args, needs_settings=command.needs_settings, as_state_owner=command.as_state_owner
        )
        return command.run(ctx)
    except ConsoleError as exc:
        error(exc.message, exc.hint)
        return exc.exit_code
    except XenKeepError as exc:
        error(exc.message, exc.hint)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`xenkeep backup run nightly | head -3`): normal,
        # not an error. Python would report the pipe again while flushing at
        # exit, so stdout goes to /dev/null first; 141 is a shell's SIGPIPE status.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


__all__ = ["COMMANDS", "build_parser", "main"]
