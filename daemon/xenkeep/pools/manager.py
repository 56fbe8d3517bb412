"""The pools XenKeep is connected to, and one live connection per pool.

``PoolManager`` keeps the registrations in the :class:`PoolRegistry` (the
password encrypted, see :mod:`xenkeep.secretbox`) and, while the daemon runs, one
:class:`XapiClient` and one :class:`EventWatcher` per pool, all publishing
their changes on one :class:`ChangeHub` (``source`` is the pool id) that the
dashboard's event stream reads. Connection trouble is kept as the pool's
``last_error`` so the Pools page can show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import AuditEvent
from xenkeep.auth.permissions import Path
from xenkeep.errors import XenKeepError
from xenkeep.pools.const import PENDING_SECONDS
from xenkeep.pools.errors import PoolExistsError, PoolInputError, PoolNotFoundError
from xenkeep.pools.pool import Pending, Pool, PoolFacts, Probe
from xenkeep.pools.registry import PoolRegistry
from xenkeep.pools.tree import live_pool_uuid, visible_entry
from xenkeep.pools.validate import clean_field, pool_url, require_password
from xenkeep.secretbox import SecretBox
from xenkeep.xapi.client import XapiClient, parse_fingerprint, probe_fingerprint
from xenkeep.xapi.events import Change, ChangeHub, EventWatcher, Subscription, WatchState
from xenkeep.xapi.summary import pool_summary

log = logging.getLogger(__name__)


class PoolConnection:
    """The live client and object cache of one registered pool."""

    def __init__(self, pool: Pool, client: XapiClient, watcher: EventWatcher) -> None:
        self.pool = pool
        self.client = client
        self.watcher = watcher

    async def close(self) -> None:
        """Stop watching and log out."""
        await self.watcher.stop()
        await self.client.close()


class PoolManager:
    """Registers pools and keeps one connection per pool while running."""

    def __init__(
        self,
        registry: PoolRegistry,
        box: SecretBox,
        audit: AuditLog | None = None,
        *,
        poll_seconds: float = 30.0,
        backoff_max: float = 30.0,
        call_timeout: float = 60.0,
        allow_http: bool = False,
    ) -> None:
        # ``allow_http``: development mode only (Settings.dev). Outside it a
        # plain http:// pool is refused, because its login carries the
        # password in clear and every later call the session.
        self._registry = registry
        self._box = box
        self._audit = audit
        self._poll_seconds = poll_seconds
        self._backoff_max = backoff_max
        self._call_timeout = call_timeout
        self._allow_http = allow_http
        self.hub = ChangeHub()
        self._connections: dict[int, PoolConnection] = {}
        self._recorder: asyncio.Task[None] | None = None
        self._recorder_sub: Subscription | None = None
        self._pending: dict[str, Pending] = {}

    # -- lifetime ------------------------------------------------------------
    async def start(self) -> None:
        """Connect to every registered pool (in the background)."""
        self._recorder_sub = self.hub.subscribe()
        self._recorder = asyncio.create_task(self._record_states(self._recorder_sub))
        await self._connect_all()

    async def _connect_all(self) -> None:
        for pool in await self.pools():
            try:
                await self._connect(pool)
            except XenKeepError as exc:
                # One unusable registration (a lost key, a damaged row) must
                # not keep the daemon, or the other pools, from starting.
                log.error("pool %s (%s) not connected: %s", pool.name, pool.url, exc.message)
                await self._registry.record_error(pool.id, exc.message)

    async def reload(self) -> None:
        """The registrations were replaced (a configuration restored from a
        copy): drop every connection and connect to the pools registered now."""
        for pool_id in list(self._connections):
            await self._disconnect(pool_id)
            self.hub.publish(Change("*", "removed", source=str(pool_id)))
        self._pending.clear()
        await self._connect_all()

    async def close(self) -> None:
        """Close every connection and end every subscription."""
        for pool_id in list(self._connections):
            await self._disconnect(pool_id)
        self.hub.close()
        if self._recorder is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder
            self._recorder = None

    def _client(self, url: str, username: str, password: str, fingerprint: str) -> XapiClient:
        return XapiClient(
            url,
            username,
            password,
            fingerprint=fingerprint or None,
            timeout=self._call_timeout,
        )

    async def _connect(self, pool: Pool) -> None:
        # A pool registered in development mode is not logged into in clear
        # once the appliance runs without it (PoolInputError, kept as the
        # pool's last error by start()).
        pool_url(pool.url, allow_http=self._allow_http)
        password_enc = await self._registry.password_enc(pool.id)
        if password_enc is None:
            return
        password = self._box.decrypt(password_enc)
        client = self._client(pool.url, pool.username, password, pool.fingerprint)
        watcher = EventWatcher(
            client,
            poll_seconds=self._poll_seconds,
            backoff_max=self._backoff_max,
            hub=self.hub,
            source=str(pool.id),
        )
        self._connections[pool.id] = PoolConnection(pool, client, watcher)
        watcher.start()

    async def _disconnect(self, pool_id: int) -> None:
        conn = self._connections.pop(pool_id, None)
        if conn is not None:
            await conn.close()

    async def _record_states(self, sub: Subscription) -> None:
        """Keep each pool's last error, last connection and uuid in the database."""
        async for change in sub:
            if change.operation == "resync" and change.source:
                with contextlib.suppress(Exception):
                    await self._record_uuid(int(change.source))
                continue
            if change.operation != "state" or not change.source or change.record is None:
                continue
            pool_id = int(change.source)
            with contextlib.suppress(Exception):
                if change.record.get("state") == WatchState.CONNECTED:
                    await self._registry.record_connected(pool_id)
                elif change.record.get("state") == WatchState.RECONNECTING:
                    await self._registry.record_error(pool_id, str(change.record.get("error", "")))

    async def _record_uuid(self, pool_id: int) -> None:
        """After a full sync: the uuid the pool reports is the one grants name.

        A registration made before pools had uuids gets its uuid here; a URL
        that now reaches another pool gets that pool's uuid, so grants on the
        old pool never apply to the new one.
        """
        conn = self._connections.get(pool_id)
        if conn is None:
            return
        uuid = live_pool_uuid(conn.watcher.cache)
        if not uuid or uuid == conn.pool.uuid:
            return
        if conn.pool.uuid:
            log.warning(
                "pool %s (%s) now answers as pool %s, not %s: its grants no longer apply",
                conn.pool.name,
                conn.pool.url,
                uuid,
                conn.pool.uuid,
            )
        try:
            await self._registry.record_uuid(pool_id, uuid)
        except XenKeepError as exc:
            log.error("pool %s (%s): %s", conn.pool.name, conn.pool.url, exc.message)
            await self._registry.record_error(pool_id, exc.message)
            return
        conn.pool = dataclasses.replace(conn.pool, uuid=uuid)

    # -- queries ---------------------------------------------------------------
    async def pools(self) -> list[Pool]:
        """Every registered pool, by name."""
        return await self._registry.all()

    async def get(self, pool_id: int) -> Pool:
        """One pool, or PoolNotFoundError (a NotFoundError)."""
        pool = await self._registry.get(pool_id)
        if pool is None:
            raise PoolNotFoundError(f"there is no pool {pool_id}")
        return pool

    def connection(self, pool_id: int) -> PoolConnection:
        """The live connection of a pool, or PoolNotFoundError (a NotFoundError)."""
        conn = self._connections.get(pool_id)
        if conn is None:
            raise PoolNotFoundError(f"pool {pool_id} is not connected")
        return conn

    def status(self, pool_id: int) -> dict[str, Any]:
        """The live state of a pool's connection."""
        conn = self._connections.get(pool_id)
        if conn is None:
            return {"state": str(WatchState.STOPPED), "synced": False, "error": ""}
        w = conn.watcher
        return {
            "state": str(w.state),
            "synced": w.synced,
            "error": w.last_error if w.state is not WatchState.CONNECTED else "",
        }

    def summary(self, pool_id: int) -> dict[str, Any]:
        """Hosts, SRs and VMs of a pool from its live cache."""
        conn = self._connections.get(pool_id)
        if conn is None:
            return {"name": "", "hosts": [], "srs": [], "vms": [], "running": 0}
        return pool_summary(conn.watcher.cache)

    def connections(self) -> list[PoolConnection]:
        """The live connections, one per connected pool."""
        return list(self._connections.values())

    async def overview(self, visible: Callable[[Path], bool] | None = None) -> list[dict[str, Any]]:
        """Every pool with its status and summary, for the dashboard.

        With ``visible`` (whether a path may be seen), only what it allows:
        a pool whose objects are all hidden is left out, and one seen only
        in part shows only those parts (see :func:`.tree.visible_entry`).
        """
        out = []
        for pool in await self.pools():
            summary = self.summary(pool.id)
            entry = {
                "id": pool.id,
                "name": summary["name"] or pool.name,
                "url": pool.url,
                "status": self.status(pool.id),
                **{k: summary[k] for k in ("hosts", "srs", "vms", "running")},
            }
            if visible is not None:
                conn = self._connections.get(pool.id)
                shown = visible_entry(
                    entry, pool.uuid, conn.watcher.cache if conn else None, visible
                )
                if shown is None:
                    continue
                entry = shown
            out.append(entry)
        return out

    def subscribe(self) -> Subscription:
        """Changes of every pool (``Change.source`` is the pool id)."""
        return self.hub.subscribe()

    # -- registration ------------------------------------------------------------
    async def probe(self, url: str) -> Probe:
        """The certificate fingerprint to confirm (https), before any password is sent."""
        base = pool_url(url, allow_http=self._allow_http)
        if not base.startswith("https://"):
            return Probe(base, False, "")
        return Probe(base, True, await probe_fingerprint(base))

    async def stage(self, owner: str, url: str, username: str, password: str) -> Pending:
        """Step one of registering: read the fingerprint, keep the rest aside."""
        username = clean_field(username, "username", "the user name")
        require_password(password)
        probe = await self.probe(url)
        if await self._registry.has_url(probe.url):
            raise PoolExistsError(f"{probe.url} is already connected")
        pending = Pending(
            probe.url,
            username,
            self._box.encrypt(password),
            probe.tls,
            probe.fingerprint,
            time.time() + PENDING_SECONDS,
        )
        self._pending[owner] = pending
        return pending

    def pending(self, owner: str) -> Pending | None:
        """The registration ``owner`` has staged and not yet confirmed."""
        pending = self._pending.get(owner)
        if pending is not None and pending.expires < time.time():
            del self._pending[owner]
            return None
        return pending

    def discard(self, owner: str) -> None:
        """Forget a staged registration."""
        self._pending.pop(owner, None)

    async def confirm(self, owner: str, *, actor: str = "", ip: str = "") -> Pool:
        """Step two: the admin confirmed the fingerprint; log in and save."""
        pending = self.pending(owner)
        if pending is None:
            raise PoolInputError("nothing to confirm (it may have expired); start again")
        pool = await self.add(
            pending.url,
            pending.username,
            self._box.decrypt(pending.password_enc),
            pending.fingerprint,
            actor=actor,
            ip=ip,
        )
        self.discard(owner)
        return pool

    async def test(self, url: str, username: str, password: str, fingerprint: str) -> PoolFacts:
        """Log in with these credentials (pinning ``fingerprint``) and look around."""
        base = pool_url(url, allow_http=self._allow_http)
        username = clean_field(username, "username", "the user name")
        require_password(password)
        if base.startswith("https://"):
            if not fingerprint:
                raise PoolInputError(
                    "confirm the pool's certificate fingerprint first", field="fingerprint"
                )
            parse_fingerprint(fingerprint)
        else:
            fingerprint = ""
        async with self._client(base, username, password, fingerprint) as client:
            pools = await client.call("pool.get_all_records")
            if not pools:
                raise PoolInputError("the server answered but has no pool")
            pool = next(iter(pools.values()))
            master = await client.call("host.get_name_label", pool["master"])
            hosts = await client.call("host.get_all")
        return PoolFacts(
            base,
            str(pool.get("uuid", "")),
            str(pool["name_label"]),
            str(master),
            len(hosts),
            fingerprint,
        )

    async def add(
        self,
        url: str,
        username: str,
        password: str,
        fingerprint: str = "",
        *,
        actor: str = "",
        ip: str = "",
    ) -> Pool:
        """Test the credentials, then register the pool and connect to it."""
        base = pool_url(url, allow_http=self._allow_http)
        if await self._registry.has_url(base):
            raise PoolExistsError(f"{base} is already connected")
        facts = await self.test(base, username, password, fingerprint)
        same = await self._registry.has_uuid(facts.uuid) if facts.uuid else None
        if same is not None:
            raise PoolExistsError(
                f"this pool is already connected, as {same.name} ({same.url})",
                hint="one pool is registered once, whichever host's URL reaches it",
            )
        pool_id = await self._registry.add(
            uuid=facts.uuid,
            name=facts.name or base,
            url=base,
            username=username.strip(),
            password_enc=self._box.encrypt(password),
            fingerprint=facts.fingerprint,
        )
        pool = await self.get(pool_id)
        if self._audit is not None:
            await self._audit.record(
                AuditEvent.SETTINGS_CHANGED,
                username=actor,
                ip=ip,
                what="pool_added",
                pool=pool.name,
                url=pool.url,
                fingerprint=pool.fingerprint,
            )
        log.info("pool %s (%s) added", pool.name, pool.url)
        await self._connect(pool)
        return pool

    async def remove(self, pool_id: int, *, actor: str = "", ip: str = "") -> None:
        """Disconnect and forget a pool."""
        pool = await self.get(pool_id)
        await self._disconnect(pool_id)
        await self._registry.remove(pool_id)
        if self._audit is not None:
            await self._audit.record(
                AuditEvent.SETTINGS_CHANGED,
                username=actor,
                ip=ip,
                what="pool_removed",
                pool=pool.name,
                url=pool.url,
            )
        self.hub.publish(Change("*", "removed", source=str(pool_id)))
        log.info("pool %s (%s) removed", pool.name, pool.url)
