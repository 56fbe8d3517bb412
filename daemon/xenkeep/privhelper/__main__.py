"""Entry point of ``xenkeep-privhelper.service``: ``python3 -m xenkeep.privhelper``.

``--revert-stale`` is ``xenkeep-network-checkpoint.service``'s: at boot,
before networkd, it puts back the files of a change an earlier boot left
unconfirmed (see :mod:`xenkeep.privhelper.checkpoint`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from xenkeep.privhelper.applier import Applier
from xenkeep.privhelper.checkpoint import STATE_DIR
from xenkeep.privhelper.server import allowed_uids, listening_socket, run_helper


def main(argv: list[str] | None = None) -> int:
    """Serve the helper's socket until stopped (or revert a stale checkpoint)."""
    parser = argparse.ArgumentParser(
        prog="xenkeep-privhelper",
        description="The root operations of the XenKeep daemon, on a unix socket.",
    )
    parser.add_argument("--socket", type=Path, help="listen here instead of systemd's socket")
    parser.add_argument(
        "--state-dir", type=Path, help=f"where pending checkpoints are kept (default {STATE_DIR})"
    )
    parser.add_argument(
        "--revert-stale",
        action="store_true",
        help="at boot: revert a change an earlier boot left unconfirmed, then exit",
    )
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if ns.revert_stale:
        # Before networkd and timesyncd start: files only, nobody to tell.
        applier = Applier(live=False, state_dir=ns.state_dir)
        reverted = asyncio.run(applier.checkpoints.revert_stale())
        logging.info("reverted an unconfirmed change" if reverted else "nothing to revert")
        return 0
    sock = listening_socket(ns.socket)
    # What is mounted at the backup mount point is read from PID 1's view:
    # in this service's own namespace, ReadWritePaths= bind-mounts the empty
    # /srv/xenkeep onto itself, which would look like a mounted disk.
    applier = Applier(mountinfo=Path("/proc/1/mountinfo"), state_dir=ns.state_dir)
    asyncio.run(run_helper(sock, applier, allowed_uids()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
