"""Logging set-up: the journal with structured fields under systemd,
plain stderr otherwise."""

from __future__ import annotations

import logging
import os
import sys

try:
    from systemd.journal import JournalHandler
except ImportError:  # pragma: no cover
    JournalHandler = None


def under_systemd() -> bool:
    """True when stderr is connected to the journal by systemd."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup_logging(level: str) -> None:
    """Route the root logger to the journal or stderr at ``level``."""
    root = logging.getLogger()
    root.handlers.clear()
    handler: logging.Handler
    if under_systemd() and JournalHandler is not None:
        # SYSLOG_IDENTIFIER groups our lines; `extra={...}` fields (upper-case
        # names) become journal fields such as XENKEEP_EVENT.
        handler = JournalHandler(SYSLOG_IDENTIFIER="xenkeepd")
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log repeats every request; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level == "debug" else logging.WARNING
    )
