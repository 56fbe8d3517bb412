"""Entry point of ``xenkeep-privhelper.service``: ``python3 -m xenkeep.privhelper``."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from xenkeep.privhelper.applier import Applier
from xenkeep.privhelper.server import Server, allowed_uids, listening_socket, serve


def main(argv: list[str] | None = None) -> int:
    """Serve the helper's socket until stopped."""
    parser = argparse.ArgumentParser(
        prog="xenkeep-privhelper",
        description="The root operations of the XenKeep daemon, on a unix socket.",
    )
    parser.add_argument("--socket", type=Path, help="listen here instead of systemd's socket")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sock = listening_socket(ns.socket)
    # What is mounted at the backup mount point is read from PID 1's view:
    # in this service's own namespace, ReadWritePaths= bind-mounts the empty
    # /srv/xenkeep onto itself, which would look like a mounted disk.
    applier = Applier(mountinfo=Path("/proc/1/mountinfo"))
    asyncio.run(serve(sock, Server(applier, allowed_uids())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
