"""``xenkeep check|support-bundle``: the appliance's health from the console.

``check`` runs every diagnostics check through the daemon (the same checks
as the Diagnostics page), prints each result, coloured only on a terminal,
and exits 1 when one fails. ``support-bundle`` saves the support bundle the
daemon streams. Both borrow the console's API token (see
:mod:`xenkeep.cli.client`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from xenkeep.cli.client import POLL_SECONDS, Api, console_token, run_finished
from xenkeep.cli.command import Command
from xenkeep.cli.context import Context
from xenkeep.cli.errors import EXIT_FAILED, EXIT_OK, ConsoleError
from xenkeep.cli.output import emit, emit_json
from xenkeep.units import human_bytes

#: ANSI colours of the statuses, used only when stdout is a terminal.
COLOURS: Final = {"ok": "\033[32m", "warning": "\033[33m", "failure": "\033[31;1m"}
RESET: Final = "\033[0m"
#: A run of the checks ends within this (each check has its own deadline).
CHECK_DEADLINE: Final = 600.0


def coloured(status: str, stream: TextIO) -> str:
    """``status`` padded, in its colour when ``stream`` is a terminal (and NO_COLOR unset)."""
    word = f"{status:<7}"
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        return f"{COLOURS.get(status, '')}{word}{RESET}"
    return word


def result_lines(results: Sequence[Mapping[str, Any]], stream: TextIO) -> list[str]:
    """One line per result, and its remedy indented under it when not ok."""
    lines = []
    for r in results:
        lines.append(f"{coloured(str(r['status']), stream)}  {r['title']}: {r['value']}")
        if r.get("remedy"):
            lines.append(f"         → {r['remedy']}")
    return lines


def summary_line(summary: Mapping[str, Any]) -> str:
    """``23 ok, 2 warning(s), 0 failure(s)``."""
    c = summary.get("counts") or {}
    return (
        f"{c.get('ok', 0)} ok, {c.get('warning', 0)} warning(s), {c.get('failure', 0)} failure(s)"
    )


def run_checks(api: Api) -> dict[str, Any]:
    """Run the checks (or join the run in progress) and wait; the results."""
    try:
        op_id = int(api.post("/api/v1/diagnostics/run")["operation_id"])
    except ConsoleError:
        running = api.get("/api/v1/diagnostics").get("running")
        if not running:
            raise
        op_id = int(running)  # one run at a time: follow the one going on
    deadline = time.monotonic() + CHECK_DEADLINE
    while not run_finished(api.get(f"/api/v1/operations/{op_id}?log_after=999999999")):
        if time.monotonic() > deadline:
            raise ConsoleError(f"the diagnostics run {op_id} did not finish in time")
        time.sleep(POLL_SECONDS)
    view: dict[str, Any] = api.get("/api/v1/diagnostics")
    return view


def check(ctx: Context) -> int:
    """Run every check; print the results; exit 1 when one fails."""
    with console_token(ctx, "console: check") as token:
        api = Api.for_settings(ctx.settings)
        api.token = token
        view = run_checks(api)
    if ctx.args.json:
        emit_json(view)
    else:
        for line in result_lines(view["results"], sys.stdout):
            emit(line)
        emit(summary_line(view["summary"]))
    failed = (view["summary"].get("counts") or {}).get("failure", 0)
    return EXIT_FAILED if failed else EXIT_OK


def check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def support_bundle(ctx: Context) -> int:
    """Save the support bundle (``-o FILE``, ``-o -`` for stdout)."""
    target = ctx.args.output
    with console_token(ctx, "console: support-bundle") as token:
        api = Api.for_settings(ctx.settings, timeout=300)
        api.token = token
        if target == "-":
            api.download("/api/v1/diagnostics/bundle", sys.stdout.buffer)
            return EXIT_OK
        # Written aside and renamed at the end: a cut download leaves no
        # file that looks complete.
        partial = Path(f"{target}.partial" if target else f".xenkeep-support-{os.getpid()}.partial")
        try:
            # Mode 0600: no secrets inside, but it is the appliance's inventory.
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise ConsoleError(f"cannot write {partial}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                name, size = api.download("/api/v1/diagnostics/bundle", out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    final = Path(target) if target else Path(Path(name).name or "xenkeep-support.tar.gz")
    partial.replace(final)
    emit(f"support bundle: {final} ({human_bytes(size)})")
    return EXIT_OK


def bundle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        help="file to write (default: the daemon's name for it, in this directory; - for stdout)",
    )


COMMANDS: Final = (
    Command("check", "run every health check; exit 1 when one fails", check, check_arguments),
    Command(
        "support-bundle",
        "save a support bundle (settings without secrets, logs, checks)",
        support_bundle,
        bundle_arguments,
    ),
)
