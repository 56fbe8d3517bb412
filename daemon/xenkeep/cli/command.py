"""What a console command is: one row of the table ``xenkeep``'s parser is built from."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from xenkeep.cli.context import Context


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a command that takes none."""


@dataclass(frozen=True)
class Command:
    """A subcommand of ``xenkeep``: its name, help line, arguments and handler."""

    name: str
    help: str
    run: Callable[[Context], int]
    arguments: Callable[[argparse.ArgumentParser], None] = no_arguments
    #: Whether the command reads the daemon's settings file.
    needs_settings: bool = True
    #: Whether, started as root, it runs as the owner of the state directory
    #: (see :meth:`Context.become_state_owner`).
    as_state_owner: bool = True
