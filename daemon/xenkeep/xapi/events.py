"""The object cache of one pool, kept current by an ``event.from`` loop.

XAPI's ``event.from(classes, token, timeout)`` long-polls: it answers with
the events newer than ``token`` (each carrying the object's full record as
``snapshot``) and a new token. Called with an empty token it returns every
current object of those classes, so one answer is a consistent snapshot and
its token the exact point to watch from; the cache is (re)built from that,
never from listings taken at another instant.

The watcher survives the pool: a dropped connection, a restarted master or
an answer such as ``EVENTS_LOST`` or ``SESSION_INVALID`` leads to a new
session if needed and a full resync, with exponential backoff while the pool
is unreachable. Subscribers receive :class:`Change` items on bounded queues;
a subscriber that falls behind gets one ``resync`` item instead of an
unbounded backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiConnectionError, XapiError, XapiFailure

log = logging.getLogger(__name__)

Record = dict[str, Any]

#: What the dashboard, backups and tasks need to see.
WATCHED_CLASSES = ("pool", "host", "SR", "PBD", "VDI", "VBD", "VM", "VIF", "network", "task")
#: Failures after which the token is worthless: start again from scratch.
RESYNC_CODES = frozenset(
    {"EVENTS_LOST", "EVENT_FROM_TOKEN_PARSE_FAILURE", "SESSION_INVALID", "SESSION_NOT_REGISTERED"}
)
SUBSCRIBER_QUEUE = 1000


class WatchState(StrEnum):
    """Where the watcher of one pool stands."""

    STARTING = "starting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Change:
    """One change seen in a pool.

    ``operation`` is XAPI's ``add``, ``mod`` or ``del`` for one object, or
    ``resync`` (everything may have changed: reread the cache) or ``state``
    (the watcher's connection state changed).
    """

    cls: str
    operation: str
    ref: str = ""
    record: Record | None = None
    #: Which watcher saw it (the pool id in the daemon); "" means any.
    source: str = ""


RESYNC = Change("*", "resync")


class ObjectCache:
    """The records of a pool by class (lower-case, as events name them) and
    ref, with an index by uuid (permissions name objects by uuid)."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, Record]] = {}
        self._uuids: dict[str, dict[str, str]] = {}

    def all(self, cls: str) -> dict[str, Record]:
        """Every cached object of a class, by ref (a copy of the index)."""
        return dict(self._tables.get(cls.lower(), {}))

    def get(self, cls: str, ref: str) -> Record | None:
        """One cached record, or None."""
        return self._tables.get(cls.lower(), {}).get(ref)

    def ref_of(self, cls: str, uuid: str) -> str | None:
        """The ref of the cached object of a class with this uuid, or None."""
        return self._uuids.get(cls.lower(), {}).get(uuid)

    def count(self, cls: str) -> int:
        """How many objects of a class are cached."""
        return len(self._tables.get(cls.lower(), {}))

    def apply(self, event: dict[str, Any]) -> Change | None:
        """Fold one ``event.from`` event into the cache."""
        cls = str(event.get("class", "")).lower()
        ref = str(event.get("ref", ""))
        op = str(event.get("operation", ""))
        if not cls or not ref:
            return None
        table = self._tables.setdefault(cls, {})
        uuids = self._uuids.setdefault(cls, {})
        snapshot = event.get("snapshot")
        if op != "del" and not isinstance(snapshot, dict):
            return None
        old = table.pop(ref, None)
        if old is not None and uuids.get(str(old.get("uuid", ""))) == ref:
            del uuids[str(old.get("uuid", ""))]
        if op == "del" or not isinstance(snapshot, dict):
            return Change(cls, "del", ref, None)
        table[ref] = snapshot
        if snapshot.get("uuid"):
            uuids[str(snapshot["uuid"])] = ref
        return Change(cls, op if op in ("add", "mod") else "mod", ref, snapshot)

    def replace(self, events: Iterable[dict[str, Any]], classes: Iterable[str]) -> None:
        """Rebuild from a full answer (every object of the watched classes)."""
        self._tables = {cls.lower(): {} for cls in classes}
        self._uuids = {cls.lower(): {} for cls in classes}
        for event in events:
            self.apply(event)


class Subscription:
    """A bounded queue of changes for one consumer (an SSE stream, a job)."""

    def __init__(self, hub: ChangeHub, maxsize: int = SUBSCRIBER_QUEUE) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize)
        self.closed = False

    def push(self, change: Change) -> None:
        """Queue a change; a full queue collapses into one ``resync``."""
        if self.closed:
            return
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(RESYNC)

    async def get(self) -> Change | None:
        """The next change; None once the subscription is closed."""
        if self.closed and self._queue.empty():
            return None
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving; a waiting ``get`` returns None."""
        if not self.closed:
            self.closed = True
            self._hub.unsubscribe(self)
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Change]:
        while True:
            change = await self.get()
            if change is None:
                return
            yield change


class ChangeHub:
    """Fan-out of changes to every subscriber."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def subscribe(self, maxsize: int = SUBSCRIBER_QUEUE) -> Subscription:
        """A new subscription; close it when done."""
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription (``Subscription.close`` calls this)."""
        self._subscribers.discard(sub)

    def publish(self, change: Change) -> None:
        """Hand a change to every subscriber without waiting."""
        for sub in list(self._subscribers):
            sub.push(change)

    def close(self) -> None:
        """End every subscription."""
        for sub in list(self._subscribers):
            sub.close()

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)


class EventWatcher:
    """Keeps an :class:`ObjectCache` of one pool current, forever.

    ``start`` launches the loop; ``wait_synced`` waits for the first full
    sync; ``stop`` ends it. Changes are published on ``hub``.
    """

    def __init__(
        self,
        client: XapiClient,
        classes: Iterable[str] = WATCHED_CLASSES,
        *,
        poll_seconds: float = 30.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        hub: ChangeHub | None = None,
        source: str = "",
    ) -> None:
        self.client = client
        self.classes = list(classes)
        self.poll_seconds = poll_seconds
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.cache = ObjectCache()
        self.hub = hub or ChangeHub()
        self.source = source
        self.state = WatchState.STARTING
        self.last_error = ""
        self.last_error_at: float | None = None
        self.resyncs = 0
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._logins_at_sync = -1

    def start(self) -> None:
        """Run the loop in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"xapi-events {self.client.url}")

    async def stop(self) -> None:
        """End the loop; the cache keeps its last contents."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state(WatchState.STOPPED)

    async def wait_synced(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until the cache holds a full sync; False on timeout."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def synced(self) -> bool:
        """Whether the cache holds a complete picture (it may be stale while
        reconnecting)."""
        return self._synced.is_set()

    def subscribe(self, maxsize: int = SUBSCRIBER_QUEUE) -> Subscription:
        """Changes of this pool from now on."""
        return self.hub.subscribe(maxsize)

    async def wait_for(
        self,
        cls: str,
        ref: str,
        predicate: Callable[[Record | None], bool],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Record | None:
        """Wait until an object's cached record satisfies ``predicate``
        (called with None while the object does not exist) and return it."""
        sub = self.subscribe()
        try:

            async def watch() -> Record | None:
                record = self.cache.get(cls, ref)
                if predicate(record):
                    return record
                async for change in sub:
                    if change.ref == ref or change.operation == "resync":
                        record = self.cache.get(cls, ref)
                        if predicate(record):
                            return record
                raise XapiConnectionError(f"stopped watching {self.client.url}")

            return await asyncio.wait_for(watch(), timeout)
        finally:
            sub.close()

    def _set_state(self, state: WatchState, error: str = "") -> None:
        changed = state != self.state or (error and error != self.last_error)
        self.state = state
        if error:
            self.last_error = error
            self.last_error_at = time.time()
        if changed:
            record = {"state": str(state), "error": self.last_error}
            self.hub.publish(Change("*", "state", "", record, self.source))

    async def _resync(self) -> str:
        answer = await self.client.call(
            "event.from", self.classes, "", 0.0, timeout=self.client.timeout
        )
        events, token = _unpack(answer)
        self.cache.replace(events, self.classes)
        self._logins_at_sync = self.client.logins
        self.resyncs += 1
        self._synced.set()
        self.hub.publish(Change("*", "resync", source=self.source))
        return token

    async def _run(self) -> None:
        backoff = self.backoff_min
        just_resynced = False
        while True:
            try:
                token = await self._resync()
                self._set_state(WatchState.CONNECTED)
                backoff = self.backoff_min
                just_resynced = True
                while True:
                    answer = await self.client.call(
                        "event.from",
                        self.classes,
                        token,
                        self.poll_seconds,
                        timeout=self.poll_seconds + self.client.timeout,
                    )
                    if self.client.logins != self._logins_at_sync:
                        # A new session means the pool may have restarted:
                        # events may have been missed in between.
                        log.info("new session on %s: resyncing", self.client.url)
                        break
                    just_resynced = False
                    events, token = _unpack(answer)
                    for event in events:
                        change = self.cache.apply(event)
                        if change is not None:
                            self.hub.publish(dataclasses.replace(change, source=self.source))
            except asyncio.CancelledError:
                raise
            except XapiFailure as exc:
                if exc.xapi_code in RESYNC_CODES and not just_resynced:
                    # Once at once; a pool that keeps saying so gets the backoff.
                    just_resynced = True
                    log.info("%s on %s: resyncing", exc.xapi_code, self.client.url)
                    self._set_state(WatchState.RECONNECTING, exc.message)
                    continue
                await self._pause(exc, backoff)
                backoff = min(backoff * 2, self.backoff_max)
            except (XapiConnectionError, XapiError) as exc:
                await self._pause(exc, backoff)
                backoff = min(backoff * 2, self.backoff_max)
            except Exception as exc:  # a bug must not end the watch for good
                log.exception("event loop of %s failed", self.client.url)
                await self._pause(exc, backoff)
                backoff = min(backoff * 2, self.backoff_max)

    async def _pause(self, exc: BaseException, delay: float) -> None:
        message = exc.message if isinstance(exc, XapiError) else repr(exc)
        log.warning("events of %s: %s; retrying in %.1f s", self.client.url, message, delay)
        self._set_state(WatchState.RECONNECTING, message)
        await asyncio.sleep(delay)


def _unpack(answer: Any) -> tuple[list[dict[str, Any]], str]:
    if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
        raise XapiConnectionError("event.from answered without a token")
    events = answer.get("events") or []
    if not isinstance(events, list):
        raise XapiConnectionError("event.from answered a malformed event list")
    return [e for e in events if isinstance(e, dict)], answer["token"]
