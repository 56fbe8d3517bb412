"""Blocking calls in the event loop, caught: blockbuster's rules for XenKeep.

The test suite fails a test whose event loop runs a blocking call (file I/O,
``time.sleep``, a blocking socket, sqlite3 ...; see ``tests/conftest.py``),
and a development daemon (``dev = true``, as ``make run`` writes it) raises
``BlockingError`` on one, when blockbuster is installed: it comes with the
``test`` extra, the appliance does not ship it. Only a call with the daemon's
own code on its stack counts; the exceptions below are blocking accepted on
purpose, each with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blockbuster import BlockBuster

log = logging.getLogger(__name__)


def rules(scanned: Sequence[str | ModuleType] = ("xenkeep",)) -> BlockBuster:
    """blockbuster's checks for calls made from ``scanned``, with our allowlist.

    Raises ImportError without blockbuster.
    """
    from blockbuster import BlockBuster

    bb = BlockBuster(scanned_modules=list(scanned))
    for rule in bb.functions.values():
        # The composition root reads templates and settings once, before the
        # listener opens: nothing else is running on the loop yet.
        rule.can_block_in("xenkeep/app.py", "create_app")
        # Settings are read once, before the loop serves anything (tests build
        # them inside their loop, as the daemon's start-up would before it).
        rule.can_block_in("xenkeep/config.py", "load_settings")
        # aiohttp 3.8 (bookworm's) resolves and stats a static file's path in
        # the loop before it hands the file to a thread; newer aiohttp does
        # it all there.
        rule.can_block_in("aiohttp/web_urldispatcher.py", "_handle")
    # jinja2 reads a template at its first render and keeps it; only in
    # development (auto_reload) does it look at the file's time again.
    for name in ("os.stat", "io.BufferedReader.read"):
        bb.functions[name].can_block_in("jinja2/loaders.py", {"get_source", "uptodate"})
    # zoneinfo reads a zone's rules from tzdata once, then serves them from
    # its cache; a schedule names one or two zones.
    bb.functions["os.stat"].can_block_in("zoneinfo/_tzpath.py", "find_tzfile")
    bb.functions["io.BufferedReader.read"].can_block_in(
        "zoneinfo/_common.py", {"load_data", "load_tzdata"}
    )
    # Log records go to stderr (the journal on the appliance): a short write
    # to a pipe, which is what every asyncio program's logging does.
    bb.functions["io.TextIOWrapper.write"].can_block_in("logging/__init__.py", {"emit", "flush"})
    return bb


def watch_in_development() -> BlockBuster | None:
    """Make a blocking call in this process's event loop raise, if blockbuster
    is installed; the rules stay active until the process ends."""
    try:
        bb = rules()
    except ImportError:
        log.info("development mode without blockbuster: blocking calls go unnoticed")
        return None
    bb.activate()
    log.warning("development mode: a blocking call in the event loop raises BlockingError")
    return bb
