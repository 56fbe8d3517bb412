"""What the daemon and the privileged helper say to each other on the helper's socket.

Both sides import this module and nothing of each other: the daemon's client
is :mod:`xenkeep.system.helper`, the root side is :mod:`xenkeep.privhelper`.

One JSON object per line, one answer per line, on a unix socket systemd
listens on (``xenkeep-privhelper.socket``, ``root:xenkeep``, mode 0660)::

    request   {"op": "network.static", "args": {"address": "192.0.2.10/24",
               "gateway": "192.0.2.1", "dns": ["192.0.2.53"]}}
    answer    {"ok": true, "result": {...}}
              {"ok": false, "error": "message", "field": "gateway", "kind": "invalid"}

Operations:

    ping               {}                                   -> {"version": ...}
    network.show       {}                -> {"settings": settings | null, "hand_edited": [path],
                                             "live": live, "pending": pending | null,
                                             "last": outcome | null}
    network.dhcp       {timeout?, delay?}                   -> {"pending": pending}
    network.static     {address: "ip/prefix", gateway?: ip, dns: [ip, ...],
                        timeout?, delay?}                   -> {"pending": pending}
    ntp.set            {servers: [host, ...], timeout?, delay?}
                       (empty list: the image's defaults)   -> {"pending": pending}
    network.confirm    {checkpoint: id}                     -> {"settings": settings}
    network.revert     {checkpoint: id}                     -> {"settings": settings}
    storage.disks      {}                -> {"disks": [disk, ...], "mountpoint": str,
                                             "mounted": {device, uuid, fstype} | null,
                                             "configured": {uuid, fstype} | null}
    storage.format     {device: "xvdb", confirm: "xvdb"}
                                         -> {device, uuid, fstype: "xfs", mountpoint}
    storage.attach     {device: "xvdb"}  -> {device, uuid, fstype, mountpoint}
    storage.detach     {}                -> {device | null, mountpoint}

A change of the network or of NTP is a *checkpoint* (like Cockpit's): the
helper keeps the files it replaces, applies the change ``delay`` seconds
after answering (0 to :data:`MAX_APPLY_DELAY`; a web page gets its answer
out before its address goes away), then gives the administrator
``timeout`` seconds (:data:`MIN_CONFIRM_SECONDS` to
:data:`MAX_CONFIRM_SECONDS`, default :data:`CONFIRM_SECONDS`) to confirm
it, from wherever the appliance now answers. Without ``network.confirm``
the previous files return by themselves: the helper owns that deadline,
not its caller (see :mod:`xenkeep.privhelper.checkpoint`). One change is
pending at a time; another is refused until it is confirmed or reverted.
``settings`` is :meth:`xenkeep.system.netconf.NetworkSettings.to_json`,
``pending`` says what changes and when it reverts (``deadline``, epoch
seconds, and ``seconds_left``), ``outcome`` how the last change ended
(``kept``, ``reverted``, ``expired`` or ``failed``, with ``at``).

A ``disk`` is :meth:`xenkeep.system.blockdev.BlockDisk.to_json`. What each
operation does, and what it refuses, is in :mod:`xenkeep.privhelper`.

Who may call what (:data:`DAEMON_OPERATIONS`): the helper asks "what could a
compromised daemon do with this?" of every operation. The daemon's uid gets
only what it uses and what gives it nothing it does not already have: the
disk listing, and format/attach/detach of a disk that holds no mounted
filesystem (it can delete its backups anyway), and network and NTP changes
as checkpoints. That uid is also the console account, and the console is
where an administrator fixes the network when the web UI is out of reach,
so it needs them; a compromised daemon could then change the address for
good (by confirming its own change), which cuts off the web UI and SSH but
not the VM's console, where the same account sets it back, and it could
point NTP elsewhere, which moves nothing it does not already control (its
schedules, its audit log). There is no operation on accounts at all: the
console password comes from vm-data at first boot (applied as root,
in-process) or from root on the console, never through the daemon.

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
    "network.show",
    "network.dhcp",
    "network.static",
    "ntp.set",
    "network.confirm",
    "network.revert",
    "storage.disks",
    "storage.format",
    "storage.attach",
    "storage.detach",
)
#: The operations that change the network or NTP: each is a checkpoint.
CHANGE_OPERATIONS: Final = frozenset({"network.dhcp", "network.static", "ntp.set"})
#: What the daemon's uid (also the console account) may call; root may call
#: every operation. Today that is all of them; the set stays so that a new
#: operation is root's until someone decides otherwise.
DAEMON_OPERATIONS: Final = frozenset(OPERATIONS)

#: Seconds an administrator has to confirm a change, unless the caller asks for
#: another time within the bounds below.
CONFIRM_SECONDS: Final = 120
MIN_CONFIRM_SECONDS: Final = 5
MAX_CONFIRM_SECONDS: Final = 600
#: The longest a caller may have the helper wait before applying its change.
MAX_APPLY_DELAY: Final = 10.0

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
    # Reading the files, the interfaces and networkd's state.
    "network.show": 30.0,
    # networkctl reload (when applied at once, delay 0),
    # and on failure the same again to put the old files back.
    "network.dhcp": 4 * COMMAND_TIMEOUT + 10,
    "network.static": 4 * COMMAND_TIMEOUT + 10,
    "ntp.set": 2 * COMMAND_TIMEOUT + 10,
    "network.confirm": 30.0,
    "network.revert": 4 * COMMAND_TIMEOUT + 10,
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


#: What kind of refusal an error answer is: bad input (the default), or a
#: request that does not fit the system's state (a change already waits for
#: confirmation, a checkpoint that is gone).
INVALID: Final = "invalid"
CONFLICT: Final = "conflict"


class RequestError(ValueError):
    """A request the helper refuses; ``field`` names the bad argument, ``kind``
    says whether the input was wrong (:data:`INVALID`) or the state (:data:`CONFLICT`)."""

    def __init__(self, message: str, field: str = "", kind: str = INVALID) -> None:
        super().__init__(message)
        self.field = field
        self.kind = kind


def encode_request(op: str, args: Mapping[str, Any] | None = None) -> bytes:
    """One request line."""
    return json.dumps({"op": op, "args": dict(args or {})}).encode() + b"\n"


def ok_answer(result: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to an operation that was carried out."""
    return {"ok": True, "result": dict(result)}


def error_answer(message: str, field: str = "", kind: str = INVALID) -> dict[str, Any]:
    """The answer to a request that was refused or failed."""
    return {"ok": False, "error": message, "field": field, "kind": kind}


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
        raise RequestError(
            str(answer.get("error", "failed")),
            field=str(answer.get("field") or ""),
            kind=CONFLICT if answer.get("kind") == CONFLICT else INVALID,
        )
    return answer.get("result")
