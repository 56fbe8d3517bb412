"""Following a started run on the console: its log and progress as they
come, its summary at the end, and a cancel when the user presses Ctrl-C."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from xenkeep.backup.const import RunStatus
from xenkeep.cli.client import BACKUP_RUNS, Api, cancel_run, poll_run, run_finished
from xenkeep.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_WARNING, ConsoleError
from xenkeep.cli.output import emit, error, log_line, progress_line

#: Progress is printed at most once per PROGRESS_EVERY seconds, and only when it changed.
PROGRESS_EVERY: Final = 1.0
#: How long to wait, after asking for a cancel, for the run to say it ended.
CANCEL_WAIT_SECONDS: Final = 30.0


def follow(
    api: Api,
    run_id: int,
    *,
    clock: Callable[[], float] = time.monotonic,
    base: str = BACKUP_RUNS,
) -> dict[str, Any]:
    """Print a run's log and progress until it finishes; its final detail."""
    last_progress = ""
    printed_at = -PROGRESS_EVERY
    run: dict[str, Any] = {}
    zone = api.timezone()
    for run in poll_run(api, run_id, base=base):
        for line in run.get("log") or []:
            emit(log_line(line, zone))
        if run_finished(run):
            break
        progress = progress_line(run)
        now = clock()
        if progress != last_progress and now - printed_at >= PROGRESS_EVERY:
            emit(progress)
            last_progress, printed_at = progress, now
    return run


def cancel(api: Api, run_id: int, *, base: str = BACKUP_RUNS, listing: str = "backup") -> None:
    """After Ctrl-C: ask the daemon to cancel, then wait a little for the end."""
    print(f"\ninterrupted: asking the daemon to cancel run {run_id}", file=sys.stderr, flush=True)
    try:
        cancel_run(api, run_id, base=base)
    except ConsoleError as exc:
        error(exc.message)
        return
    try:
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        for run in poll_run(api, run_id, deadline=deadline, base=base):
            if run_finished(run):
                print(f"run {run_id} {run['status']}", file=sys.stderr)
                return
    except (ConsoleError, KeyboardInterrupt):
        pass
    print(f"cancel requested; see `xenkeep {listing} list` for run {run_id}", file=sys.stderr)


def follow_to_exit(
    api: Api,
    run_id: int,
    summary: Callable[[Mapping[str, Any]], str],
    *,
    base: str = BACKUP_RUNS,
    listing: str = "backup",
) -> int:
    """Follow a run, print its summary; the exit code of its result (130 after Ctrl-C).

    ``listing`` is the command whose ``list`` shows the run afterwards.
    """
    try:
        run = follow(api, run_id, base=base)
    except KeyboardInterrupt:
        cancel(api, run_id, base=base, listing=listing)
        return EXIT_INTERRUPTED
    emit(summary(run))
    return exit_code(run)


def exit_code(run: Mapping[str, Any]) -> int:
    """0 for a success, 2 for a success with warnings, 1 for anything else."""
    status = run.get("status")
    if status == RunStatus.SUCCESS.value:
        return EXIT_OK
    if status == RunStatus.WARNING.value:
        return EXIT_WARNING
    return EXIT_FAILED
