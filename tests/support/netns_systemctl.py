#!/usr/bin/env python3
"""A stand-in for ``systemctl`` in the appliance namespace of tests/support/netns.py.

That namespace has no systemd as PID 1, so the one call the privileged
helper makes of it, ``systemctl try-restart [--no-block]
systemd-timesyncd.service``, is carried out here: the namespace's
timesyncd (started by ``start``, its pid kept in the namespace's private
/run) is stopped and started again, so that it reads the drop-in the helper
wrote. It runs as its own user with no capability at all, so it can never
set this machine's clock. Any other call fails loudly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

UNIT = "systemd-timesyncd.service"
PIDFILE = Path("/run/xenkeep-test-timesyncd.pid")
LOG = Path("/run/xenkeep-test-timesyncd.log")
TIMESYNCD = [
    "setpriv",
    "--reuid=systemd-timesync",
    "--regid=systemd-timesync",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "/lib/systemd/systemd-timesyncd",
]


def running() -> int | None:
    try:
        pid = int(PIDFILE.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None
    return None if state == "Z" else pid


def start() -> None:
    with LOG.open("ab") as log:
        proc = subprocess.Popen(TIMESYNCD, stdout=log, stderr=log, start_new_session=True)
    PIDFILE.write_text(f"{proc.pid}\n")


def stop() -> None:
    pid = running()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if running() is None:
                break
            time.sleep(0.05)
    PIDFILE.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--no-block"]
    if len(args) != 2 or args[1] != UNIT or args[0] not in ("start", "stop", "try-restart"):
        print(f"systemctl stand-in: not supported here: {argv}", file=sys.stderr)
        return 1
    verb = args[0]
    if verb == "stop":
        stop()
    elif verb == "start":
        if running() is None:
            start()
    elif running() is not None:  # try-restart: only what runs
        stop()
        start()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
