"""The console's failures and the exit codes they stand for.

Exit codes: 0 success, 1 failure (a failed run, a bad argument, an API
error), 2 done with warnings (a run whose points were made but that left
something to look at, e.g. a snapshot it could not remove), 3 the daemon
does not answer, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_WARNING: Final = 2
EXIT_DOWN: Final = 3
EXIT_INTERRUPTED: Final = 130


class ConsoleError(Exception):
    """A failure the console explains in one line (plus an optional hint)."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


class DaemonDownError(ConsoleError):
    """The daemon does not answer on its HTTPS port."""

    def __init__(self, url: str, detail: str = "") -> None:
        super().__init__(
            f"the daemon is not answering at {url}" + (f" ({detail})" if detail else ""),
            hint="start it with `systemctl start xenkeepd`; `xenkeep status` shows its state",
            exit_code=EXIT_DOWN,
        )
