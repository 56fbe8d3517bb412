"""``xenkeepd``: parse arguments, set up logging, run the daemon."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from xenkeep import __version__, blocking
from xenkeep.app import create_app
from xenkeep.config import load_settings
from xenkeep.errors import XenKeepError
from xenkeep.system import sdnotify
from xenkeep.system.logs import setup_logging
from xenkeep.web import keys
from xenkeep.web.server import start_server

log = logging.getLogger("xenkeepd")


async def run(config: Path | None) -> None:
    """Run until SIGTERM or SIGINT."""
    settings = load_settings(config)
    setup_logging(settings.log_level)
    # Opt-in (XENKEEP_WATCH_BLOCKING=1 with dev): the rules are tuned for the
    # test suite's loops; a browser-driven daemon still trips aiohttp 3.8's
    # static-file stat under them.
    if settings.dev and os.environ.get("XENKEEP_WATCH_BLOCKING") == "1":
        blocking.watch_in_development()
    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with start_server(app) as server, sdnotify.watchdog():
        log.info(
            "XenKeep %s serving %s (TLS certificate SHA-256 %s)",
            __version__,
            server.url,
            keys.tls(app).fingerprint,
        )
        sdnotify.notify(f"READY=1\nSTATUS=serving on port {server.https_port}")
        await stop.wait()
        sdnotify.notify("STOPPING=1")
        log.info("stopping")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xenkeepd`` console script."""
    parser = argparse.ArgumentParser(prog="xenkeepd", description="The XenKeep daemon.")
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args.config))
    except XenKeepError as exc:
        hint = f"\nhint: {exc.hint}" if exc.hint else ""
        print(f"xenkeepd: {exc.message}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
