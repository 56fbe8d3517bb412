"""What the daemon and the privileged helper say to each other on the helper's socket.

Both sides import this module and nothing of each other: the daemon's client
is :mod:`xenkeep.system.helper`, the root side is :mod:`xenkeep.privhelper`.

One JSON object per line, one answer per line, on a unix socket systemd
listens on (``xenkeep-privhelper.socket``, ``root:xenkeep``, mode 0660)::

    request   {"op": "network.static", "args": {"address": "192.0.2.10/24",
               "gateway": "192.0.2.1", "dns": ["192.0.2.53"]}}
    answer    {"ok": true, "result": {...}}
              {"ok": false, "error": "message", "field": "gateway"}

Operations:

    ping               {}                                   -> {"version": ...}
    network.dhcp       {}                                   -> {}
    network.static     {address: "ip/prefix", gateway?: ip, dns?: [ip, ...]}
    ntp.set            {servers: [host, ...]}  (empty list: the defaults)
    storage.disks      {}                -> {"disks": [disk, ...], "mountpoint": str,
                                             "mounted": {device, uuid, fstype} | null,
                                             "configured": {uuid, fstype} | null}
    storage.format     {device: "xvdb", confirm: "xvdb"}
                                         -> {device, uuid, fstype: "xfs", mountpoint}
    storage.attach     {device: "xvdb"}  -> {device, uuid, fstype, mountpoint}
    storage.detach     {}                -> {device | null, mountpoint}

A ``disk`` is :meth:`xenkeep.system.blockdev.BlockDisk.to_json`. What each
operation does, and what it refuses, is in :mod:`xenkeep.privhelper`.

Who may call what (:data:`DAEMON_OPERATIONS`): the helper asks "what could a
compromised daemon do with this?" of every operation. The daemon's uid gets
only what it uses and what gives it nothing it does not already have: the
disk listing, and format/attach/detach of a disk that holds no mounted
filesystem (it can delete its backups anyway). The network and NTP
operations are root's: a daemon that could rewrite them could cut the
appliance off its administrators, or skew its clock, for good and across
restarts. There is no operation on accounts at all: the console password
comes from vm-data at first boot (applied as root, in-process) or from root
on the console, never through the daemon.

The helper carries out one operation at a time and bounds every command it
runs (:data:`COMMAND_TIMEOUT`, :data:`LONG_TIMEOUT`, :data:`MOUNT_TIMEOUT`);
the daemon waits for each answer at most :data:`CALL_TIMEOUTS` of its
operation, long enough for the commands the operation chains, so that the
helper's own, more precise error arrives first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

SOCKET_PATH: Final = Path("/run/xenkeep-privhelper.sock")
#: A request line longer than this is refused unread.
MAX_REQUEST: Final = 16 * 1024
#: An answer line; the disk listing of a dozen disks is a few KiB.
MAX_ANSWER: Final = 4 * MAX_REQUEST
OPERATIONS: Final = (
    "ping",
    "network.dhcp",
    "network.static",
    "ntp.set",
    "storage.disks",
    "storage.format",
    "storage.attach",
    "storage.detach",
)
#: What the daemon's uid may call; root may call every operation.
DAEMON_OPERATIONS: Final = frozenset(
    {"ping", "storage.disks", "storage.format", "storage.attach", "storage.detach"}
)

#: Any command the helper runs (systemctl, networkctl, lsblk ...).
COMMAND_TIMEOUT: Final = 60.0
#: wipefs, mkfs and chown -R of a large disk outlast the default timeout.
LONG_TIMEOUT: Final = 15 * 60.0
#: Starting a mount waits for udev to announce the disk, then for the mount.
MOUNT_TIMEOUT: Final = 5 * 60.0

#: How long the daemon waits for the answer to each operation: the commands
#: it chains at their bounds, plus a margin. An operation queued behind
#: another (the helper does one at a time) may still time out.
CALL_TIMEOUTS: Final[Mapping[str, float]] = {
    "ping": 10.0,
    # networkctl reload, then reconfigure.
    "network.dhcp": 2 * COMMAND_TIMEOUT + 10,
    "network.static": 2 * COMMAND_TIMEOUT + 10,
    "ntp.set": COMMAND_TIMEOUT + 10,
    # lsblk and one wipefs probe per blank disk: seconds on a healthy system.
    "storage.disks": 30.0,
    # wipefs -a, mkfs.xfs, blkid, then the mount (and its clean-up on failure).
    "storage.format": 2 * LONG_TIMEOUT + 3 * COMMAND_TIMEOUT + 2 * MOUNT_TIMEOUT,
    # wipefs probe, the mount, chown -R of a disk from another appliance.
    "storage.attach": LONG_TIMEOUT + 3 * COMMAND_TIMEOUT + 2 * MOUNT_TIMEOUT,
    "storage.detach": MOUNT_TIMEOUT + 2 * COMMAND_TIMEOUT + 10,
}
#: For an operation this side does not know (the helper refuses it at once).
DEFAULT_CALL_TIMEOUT: Final = 30.0


class RequestError(ValueError):
    """A request the helper refuses; ``field`` names the bad argument."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def encode_request(op: str, args: Mapping[str, Any] | None = None) -> bytes:
    """One request line."""
    return json.dumps({"op": op, "args": dict(args or {})}).encode() + b"\n"


def ok_answer(result: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to an operation that was carried out."""
    return {"ok": True, "result": dict(result)}


def error_answer(message: str, field: str = "") -> dict[str, Any]:
    """The answer to a request that was refused or failed."""
    return {"ok": False, "error": message, "field": field}


def encode_answer(answer: Mapping[str, Any]) -> bytes:
    """One answer line."""
    return json.dumps(answer).encode() + b"\n"


def decode_answer(line: bytes) -> Any:
    """The result in an answer line; raise RequestError for a refusal.

    An empty line means the helper closed the connection without answering
    (ConnectionError); a line that is not an answer raises ValueError.
    """
    if not line:
        raise ConnectionError("the privileged helper closed the connection without answering")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError("the privileged helper's answer is not a JSON object")
    if not answer.get("ok"):
        raise RequestError(str(answer.get("error", "failed")), field=answer.get("field") or "")
    return answer.get("result")
