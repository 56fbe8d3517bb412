"""Network and NTP changes that undo themselves unless confirmed (like Cockpit's checkpoints).

A change from the web UI or the console could cut the appliance off the
person making it. So each one is a *checkpoint*:

1. the files the change replaces are read (absent ones included) and
   written, with the change, its deadline and this boot's id, to
   ``checkpoint.json`` in the helper's state directory, synced, before
   anything else happens;
2. the change is applied (at once, or ``delay`` seconds after the answer so
   a web page's answer leaves by the old address first);
3. the administrator has ``timeout`` seconds to confirm it from wherever the
   appliance now answers; confirming removes ``checkpoint.json``;
4. otherwise the kept files are put back and the services told, and
   ``last-change.json`` says so (``expired``); an explicit revert does the
   same at once (``reverted``), a change that fails to apply too (``failed``).

The deadline belongs to the helper, never to its caller: the daemon or the
console may die, the browser may never come back. The helper keeps it in
CLOCK_BOOTTIME (it runs on across a suspended VM, and NTP never steps it)
and checks it every second. The checkpoint outlives the helper process:
a helper started again (``Restart=on-failure``, or the next connection)
resumes its deadline; one stopped (``systemctl stop``, shutdown) reverts
first; after a reboot (another boot id) the change is reverted at once,
before networkd starts (``xenkeep-network-checkpoint.service`` runs
:meth:`Checkpoints.revert_stale`). Reverting is idempotent: it writes the
kept bytes again, so a revert cut short is simply done again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from xenkeep.privhelper.files import write_atomic
from xenkeep.privhelper.netfiles import NETWORK, NTP, PARTS, NetworkFiles
from xenkeep.privhelper.request import Request
from xenkeep.repo.fsutil import durable_unlink
from xenkeep.system.helper_protocol import CONFLICT, RequestError
from xenkeep.system.netconf import NetworkSettings

log = logging.getLogger(__name__)

STATE_DIR: Final = Path("/var/lib/xenkeep-privhelper")
CHECKPOINT_NAME: Final = "checkpoint.json"
OUTCOME_NAME: Final = "last-change.json"
BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
#: How often the deadline is looked at; also the retry pace of a revert
#: whose files could not be written.
WATCH_SECONDS: Final = 1.0
RETRY_SECONDS: Final = 5.0

KEPT: Final = "kept"
REVERTED: Final = "reverted"
EXPIRED: Final = "expired"
FAILED: Final = "failed"


def boottime() -> float:
    """Seconds since boot, suspended time included; never stepped by NTP."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass
class Checkpoint:
    """One change waiting for its confirmation, as ``checkpoint.json`` holds it."""

    id: str
    op: str
    parts: list[str]
    #: What changes, for people: ``network: DHCP -> 192.0.2.10/24 via ...``.
    summary: str
    before: dict[str, Any]
    after: dict[str, Any]
    #: Each part's file as it was (None: absent): what a revert writes back.
    previous: dict[str, str | None]
    timeout: float
    created: float
    boot_id: str
    #: CLOCK_BOOTTIME of the deadline; ``deadline`` is the same moment in
    #: wall-clock time, for display only.
    deadline_boot: float
    deadline: float
    uid: int
    applied: bool = False

    def public(self) -> dict[str, Any]:
        """What the protocol shows of it: no file contents."""
        return {
            "id": self.id,
            "op": self.op,
            "summary": self.summary,
            "before": self.before,
            "after": self.after,
            "timeout": self.timeout,
            "deadline": self.deadline,
            "seconds_left": max(0.0, round(self.deadline_boot - boottime(), 1)),
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """Back from ``checkpoint.json``; ValueError when it is not one."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not a checkpoint: {exc}") from None


def describe_change(before: NetworkSettings, after: NetworkSettings, parts: list[str]) -> str:
    """``network: DHCP -> 192.0.2.10/24 via 192.0.2.1, DNS 192.0.2.53``."""
    lines = []
    if NETWORK in parts:
        lines.append(f"network: {before.describe_network()} -> {after.describe_network()}")
    if NTP in parts:
        lines.append(f"NTP: {before.describe_ntp()} -> {after.describe_ntp()}")
    return "; ".join(lines)


def changed_settings(current: NetworkSettings, req: Request) -> tuple[NetworkSettings, list[str]]:
    """The settings ``req`` asks for, and the parts that changes."""
    if req.op == "ntp.set":
        return NetworkSettings(current.static, req.ntp), [NTP]
    static = req.network if req.op == "network.static" else None
    return NetworkSettings(static, current.ntp), [NETWORK]


class Checkpoints:
    """The pending change, its deadline, and how the last one ended."""

    def __init__(
        self,
        files: NetworkFiles,
        state_dir: Path = STATE_DIR,
        *,
        boot_id: Path = BOOT_ID,
        live: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self._files = files
        self._state = state_dir
        self._boot_id_path = boot_id
        self._live = live
        self._lock = asyncio.Lock()
        self._pending: Checkpoint | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the operations ------------------------------------------------------------

    async def show(self) -> dict[str, Any]:
        """The settings in the files, the live state, the pending change, the last outcome."""
        settings, hand_edited = await self._files.read()
        live = await self._live() if self._live is not None else None
        return {
            "settings": settings.to_json(),
            "hand_edited": hand_edited,
            "live": live,
            "pending": self._pending.public() if self._pending else None,
            "last": await asyncio.to_thread(self._read_json, OUTCOME_NAME),
        }

    async def change(self, req: Request, uid: int) -> dict[str, Any]:
        """Start a checkpoint for ``req`` (a validated change) and apply it.

        Raise RequestError (kind conflict) while another change waits, or
        when nothing would change; RuntimeError/OSError when applying fails
        (the previous files are back by then).
        """
        async with self._lock:
            if self._pending is not None:
                raise RequestError(
                    f"another change waits for confirmation ({self._pending.summary}): "
                    "keep it or revert it first",
                    field="checkpoint",
                    kind=CONFLICT,
                )
            current, hand_edited = await self._files.read()
            wanted, parts = changed_settings(current, req)
            # A file edited by hand reads as the default: rewriting it is a change.
            by_hand = any(str(PARTS[part]) in hand_edited for part in parts)
            if wanted == current and not by_hand:
                raise RequestError(
                    f"nothing to change: {describe_change(current, wanted, parts)}",
                    kind=CONFLICT,
                )
            now, now_boot = time.time(), boottime()
            left = req.delay + req.timeout
            cp = Checkpoint(
                id=secrets.token_hex(8),
                op=req.op,
                parts=parts,
                summary=describe_change(current, wanted, parts),
                before=current.to_json(),
                after=wanted.to_json(),
                previous=await self._files.snapshot(parts),
                timeout=req.timeout,
                created=now,
                boot_id=await asyncio.to_thread(self._boot_id),
                deadline_boot=now_boot + left,
                deadline=now + left,
                uid=uid,
            )
            await self._save(cp)
            self._pending = cp
            log.info("checkpoint %s by uid %d: %s (%g s to confirm)", cp.id, uid, cp.summary, left)
            if req.delay == 0:
                await self._apply(cp, wanted)
            else:
                self._spawn(self._apply_later(cp, wanted, req.delay))
            self._spawn(self._watch(cp))
            return {"pending": cp.public()}

    async def confirm(self, checkpoint_id: str) -> dict[str, Any]:
        """Keep the pending change ``checkpoint_id``."""
        async with self._lock:
            cp = self._current(checkpoint_id)
            if not cp.applied:
                raise RequestError(
                    "the change is still being applied: confirm it once the appliance "
                    "answers with the new settings",
                    field="checkpoint",
                    kind=CONFLICT,
                )
            if boottime() >= cp.deadline_boot:
                raise RequestError(
                    "too late: the time to confirm is over and the previous settings "
                    "are coming back",
                    field="checkpoint",
                    kind=CONFLICT,
                )
            await asyncio.to_thread(durable_unlink, self._state / CHECKPOINT_NAME)
            self._pending = None
            await self._record(cp, KEPT, "confirmed")
            log.info("checkpoint %s kept: %s", cp.id, cp.summary)
        settings, _ = await self._files.read()
        return {"settings": settings.to_json()}

    async def revert(self, checkpoint_id: str) -> dict[str, Any]:
        """Put back the files the pending change ``checkpoint_id`` replaced, now."""
        async with self._lock:
            cp = self._current(checkpoint_id)
            await self._undo(cp, REVERTED, "reverted on request")
        settings, _ = await self._files.read()
        return {"settings": settings.to_json()}

    # --- the helper's life ---------------------------------------------------------

    async def resume(self) -> None:
        """At the helper's start: take up a checkpoint a previous helper left.

        From another boot, or never applied (the helper died while applying
        it): reverted now. Otherwise its deadline runs on.
        """
        async with self._lock:
            cp = await self._load()
            if cp is None:
                return
            if cp.boot_id != await asyncio.to_thread(self._boot_id):
                await self._undo(cp, EXPIRED, "the appliance restarted before it was confirmed")
                return
            if not cp.applied:
                await self._undo(cp, FAILED, "the helper stopped while applying it")
                return
            self._pending = cp
            log.info("checkpoint %s resumed: %s", cp.id, cp.summary)
            self._spawn(self._watch(cp))

    async def revert_stale(self) -> bool:
        """At boot, before networkd: revert a checkpoint left by an earlier boot.

        True when one was reverted. Files only (the services have not
        started); a checkpoint of this boot is left alone.
        """
        async with self._lock:
            cp = await self._load()
            if cp is None or cp.boot_id == await asyncio.to_thread(self._boot_id):
                return False
            await self._undo(cp, EXPIRED, "the appliance restarted before it was confirmed")
            return True

    async def close(self, *, revert_pending: bool) -> None:
        """Stop the timers; with ``revert_pending``, undo a change still unconfirmed.

        The helper is stopping (``systemctl stop``, shutdown): an unconfirmed
        change must not outlive the process that owns its deadline.
        """
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if revert_pending:
            async with self._lock:
                if self._pending is not None:
                    why = "the helper stopped before it was confirmed"
                    await self._undo(self._pending, REVERTED, why)

    # --- inside --------------------------------------------------------------------

    def _current(self, checkpoint_id: str) -> Checkpoint:
        cp = self._pending
        if cp is None or cp.id != checkpoint_id:
            raise RequestError(
                "no such change waits for confirmation (it was kept, reverted or expired)",
                field="checkpoint",
                kind=CONFLICT,
            )
        return cp

    async def _apply(self, cp: Checkpoint, wanted: NetworkSettings) -> None:
        """Write and apply ``wanted``; on failure put the old files back and raise."""
        try:
            await self._files.write(wanted, cp.parts)
            await self._files.reload(cp.parts)
        except (RuntimeError, OSError, RequestError) as exc:
            log.error("checkpoint %s: applying failed: %s", cp.id, exc)
            await self._undo(cp, FAILED, f"applying it failed: {exc}")
            raise
        cp.applied = True
        await self._save(cp)

    async def _apply_later(self, cp: Checkpoint, wanted: NetworkSettings, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            if self._pending is not cp:
                return  # reverted before it was applied
            with contextlib.suppress(RuntimeError, OSError, RequestError):
                await self._apply(cp, wanted)  # a failure is logged and recorded

    async def _watch(self, cp: Checkpoint) -> None:
        while self._pending is cp:  # kept or reverted meanwhile: nothing left to watch
            left = cp.deadline_boot - boottime()
            if left <= 0:
                async with self._lock:
                    if self._pending is not cp:
                        return
                    try:
                        await self._undo(cp, EXPIRED, f"not confirmed within {cp.timeout:g} s")
                        return
                    except OSError as exc:
                        log.error("checkpoint %s: cannot revert yet: %s", cp.id, exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            await asyncio.sleep(min(left, WATCH_SECONDS))

    async def _undo(self, cp: Checkpoint, outcome: str, why: str) -> None:
        """Write the kept files back, tell the services, forget the checkpoint.

        OSError when the files cannot be written: the checkpoint stays, to
        be tried again. A service that fails to take the files back is
        logged; the files are right, so the next start of it (a reboot at
        worst) reads them.
        """
        await self._files.restore(cp.previous)
        try:
            await self._files.reload(cp.parts)
        except (RuntimeError, OSError) as exc:
            log.error("checkpoint %s: the previous files are back, but: %s", cp.id, exc)
            why += f" (telling the services failed: {exc})"
        await asyncio.to_thread(durable_unlink, self._state / CHECKPOINT_NAME)
        if self._pending is cp:
            self._pending = None
        await self._record(cp, outcome, why)
        log.warning("checkpoint %s %s (%s): %s", cp.id, outcome, why, cp.summary)

    async def _record(self, cp: Checkpoint, outcome: str, why: str) -> None:
        last = {
            "id": cp.id,
            "summary": cp.summary,
            "outcome": outcome,
            "message": why,
            "at": time.time(),
        }
        await asyncio.to_thread(
            write_atomic, self._state / OUTCOME_NAME, json.dumps(last) + "\n", 0o644
        )

    async def _save(self, cp: Checkpoint) -> None:
        await asyncio.to_thread(
            write_atomic, self._state / CHECKPOINT_NAME, json.dumps(asdict(cp)) + "\n", 0o600
        )

    async def _load(self) -> Checkpoint | None:
        data = await asyncio.to_thread(self._read_json, CHECKPOINT_NAME)
        if data is None:
            return None
        try:
            return Checkpoint.from_json(data)
        except ValueError as exc:
            # Nothing to put back from: say so, keep the file for a person to read.
            log.error("%s cannot be read (%s); moving it aside", CHECKPOINT_NAME, exc)
            path = self._state / CHECKPOINT_NAME
            await asyncio.to_thread(path.replace, path.with_suffix(".unreadable"))
            return None

    def _read_json(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self._state / name).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("%s cannot be read: %s", name, exc)
            return None
        return data if isinstance(data, dict) else None

    def _boot_id(self) -> str:
        return self._boot_id_path.read_text().strip()

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
