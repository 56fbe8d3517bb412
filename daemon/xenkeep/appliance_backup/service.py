"""The appliance's own backup: copies of its configuration and of its pools'
databases in the backup storage, and the restore of a copy.

Created once by the composition root. It watches the database itself
(:meth:`~xenkeep.store.Database.watch_writes` on every carried table of
:mod:`.catalog`), so any change of the configuration, by any service,
schedules a copy: written once the changes have been quiet for
``debounce`` seconds (at the latest ``max_delay`` after the first). Once a
day a copy is written whatever changed, with a dump of every connected
pool's database. Each copy is an operation (:data:`.kinds.APPLIANCE_BACKUP`).

Nothing is written until the administrator sets a passphrase or creates a
recovery key (:mod:`.keys`); the derived key is kept sealed with the
appliance's own key, the passphrase never.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import xenkeep
from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import AuditEvent
from xenkeep.auth.errors import AccountInputError
from xenkeep.auth.passwords import check_new_password
from xenkeep.backup.storage import BackupStorage
from xenkeep.errors import StoreError, UpstreamError, ValidationError, XenKeepError
from xenkeep.formats.sealed import SealedFormatError, SealReader, key_id, read_header
from xenkeep.ops import OperationContext, Operations, OpStatus, Scheduler, ThreadWork
from xenkeep.ops.manager import Outcome
from xenkeep.pools.manager import PoolManager
from xenkeep.pools.pool import Pool
from xenkeep.repo.layout import config_copies_dir, pool_copies_dir, pool_copies_dirs
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database
from xenkeep.store.db import Changes, WatchedTable, read_snapshot
from xenkeep.xapi.transfer import export_pool_database

from . import copies
from .catalog import carried_tables, setting_carried
from .copies import CONFIG_SUFFIX, POOL_SUFFIX, CopyWriter
from .errors import (
    BackupKeyError,
    CopyDamagedError,
    CopyNotFoundError,
    NoBackupKeyError,
    RestoreConfirmationError,
)
from .keys import KdfParams, KeyMode, check_passphrase_length, derive, format_recovery_key
from .keys import new_recovery_key as random_key
from .kinds import APPLIANCE_BACKUP, CLAIMS, REPLACES_CONFIGURATION, CopyStage
from .payload import write_config
from .restore import CopySummary, apply_copy, load_copy, remove_scratch

log = logging.getLogger(__name__)

KEY_SETTING: Final = "appliance_backup.key"
#: The digest of the last copy's contents (an HMAC under the backup key).
MAC_SETTING: Final = "appliance_backup.content_mac"
RETENTION_SETTING: Final = "appliance_backup.retention"
DEFAULT_RETENTION: Final = 30
MAX_RETENTION: Final = 1000
#: Quiet seconds after a change before a copy is written, and the longest wait.
DEBOUNCE: Final = 10.0
MAX_DELAY: Final = 120.0
DAILY: Final = 86400.0
#: After a daily copy that failed, the next try.
RETRY: Final = 3600.0
#: How often the scheduler looks when nothing is due.
IDLE: Final = 300.0
#: An opened copy waits this long for its restore.
OPENED_SECONDS: Final = 15 * 60
#: What the administrator types to replace the configuration from the storage page.
RESTORE_WORD: Final = "RESTORE"
COPY_FORMAT: Final = "xenkeep-appliance-config"
POOL_FORMAT: Final = "xenkeep-pool-database"
#: Progress of a pool dump is written at most this often.
_PROGRESS_EVERY: Final = 0.5
_OWNER: Final = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class BackupKey:
    """The key copies are sealed with, and how it was made."""

    mode: KeyMode
    key: bytes
    kdf: KdfParams | None
    set_at: float

    @property
    def id(self) -> str:
        """The key id copies carry."""
        return key_id(self.key)

    def header(self) -> dict[str, Any]:
        """How a new appliance makes the key again, as the copies' header says."""
        spec: dict[str, Any] = {"mode": str(self.mode)}
        if self.kdf is not None:
            spec["kdf"] = self.kdf.to_json()
        return spec


@dataclass
class _Opened:
    """A copy opened for a restore: checked whole, loaded into a scratch database."""

    copy_id: str
    scratch: Path
    summary: CopySummary
    key: BackupKey
    expires: float


def watched_tables() -> list[WatchedTable]:
    """The writes that change the configuration: the catalog's carried columns."""
    return [
        WatchedTable(t.name, tuple(t.meaningful_columns()), t.key_column) for t in carried_tables()
    ]


def changes_configuration(changes: Changes) -> bool:
    """True when a committed write touched the configuration (not only state)."""
    return any(table != "settings" or setting_carried(key) for table, key in changes)


class ApplianceBackup:
    """Copies of the appliance, written after changes and daily, and their restore."""

    def __init__(
        self,
        *,
        db: Database,
        box: SecretBox,
        storage: BackupStorage,
        pools: PoolManager,
        ops: Operations,
        scheduler: Scheduler,
        audit: AuditLog,
        appliance_name: Callable[[], Awaitable[str]],
        state_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self._box = box
        self.storage = storage
        self.pools = pools
        self.ops = ops
        self.scheduler = scheduler
        self.audit = audit
        self._appliance_name = appliance_name
        self._scratch_dir = state_dir / "restore"
        self._clock = clock
        self.debounce = DEBOUNCE
        self.max_delay = MAX_DELAY
        self.daily = DAILY
        #: First and last configuration change not yet in a copy.
        self._dirty_since: float | None = None
        self._dirty_at = 0.0
        self._next_daily: float | None = None
        self._running: int | None = None
        self._opened: dict[str, _Opened] = {}
        # argon2id takes 64 MiB and a core for a quarter of a second: one at a
        # time, however many forms are sent at once.
        self._kdf = asyncio.Semaphore(1)

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Watch the configuration, find when the last daily copy was, schedule."""
        await asyncio.to_thread(self._clear_scratch)
        await self.db.watch_writes(watched_tables(), self._on_write)
        for op in await self.ops.find(kinds=[APPLIANCE_BACKUP.kind], statuses=["success"]):
            if (op.get("params") or {}).get("pools"):
                self._next_daily = float(op["finished_at"] or 0) + self.daily
                break
        self.scheduler.register("appliance backup", self.tick)

    def _clear_scratch(self) -> None:
        self._scratch_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for p in self._scratch_dir.iterdir():
            with contextlib.suppress(OSError):
                p.unlink()

    def _on_write(self, changes: Changes) -> None:
        if changes_configuration(changes):
            self._mark_dirty(now=self._clock())

    @property
    def change_pending(self) -> bool:
        """True while a configuration change waits for its copy."""
        return self._dirty_since is not None

    async def tick(self, now: float) -> float:
        """Start the copy that is due; the seconds until the next look."""
        if self._running is not None and self.ops.is_running(self._running):
            return 5.0
        if not self.storage.configured or await self.stored_key() is None:
            return IDLE
        if self._next_daily is None or now >= self._next_daily:
            await self._start_due("daily", pools=True, now=now)
            return 5.0
        wait = min(IDLE, self._next_daily - now)
        if self._dirty_since is not None:
            quiet, waited = now - self._dirty_at, now - self._dirty_since
            if quiet >= self.debounce or waited >= self.max_delay:
                await self._copy_if_changed(now)
                return 5.0
            wait = min(wait, self.debounce - quiet, self.max_delay - waited)
        return max(0.1, wait)

    async def _copy_if_changed(self, now: float) -> None:
        """A copy, unless the configuration is what the last copy holds (a
        sign-in through a provider writes its group memberships again; a
        value set to what it was)."""
        key = await self.stored_key()
        if key is None:
            return
        since = self._dirty_since
        self._dirty_since = None
        try:
            mac = await asyncio.to_thread(self._content_mac, key)
        except (XenKeepError, sqlite3.Error, OSError) as exc:
            # The copy's own operation meets it again and says so on its page.
            log.error("the configuration cannot be read for a copy: %s", exc)
            mac = ""
        if mac and mac == await self.db.get_setting(MAC_SETTING):
            log.debug("configuration written but unchanged since the last copy")
            return
        self._dirty_since = since
        await self._start_due("configuration changed", pools=False, now=now)

    async def _start_due(self, trigger: str, *, pools: bool, now: float) -> None:
        if pools:
            # Pushed on now; a success pushes it a day on (see _work).
            self._next_daily = now + RETRY
        try:
            await self.start_copy(trigger=trigger, pools=pools)
        except XenKeepError as exc:
            # The storage is being changed, a backup holds it...: next look.
            log.info("appliance backup not started (%s): %s", trigger, exc.message)

    # ------------------------------------------------------------------ key

    async def stored_key(self) -> BackupKey | None:
        """The backup key set on this appliance, or None."""
        raw = await self.db.get_setting(KEY_SETTING)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            key = base64.b64decode(self._box.decrypt(data["key_enc"]))
            kdf = KdfParams.from_json(data["kdf"]) if data.get("kdf") else None
            return BackupKey(KeyMode(data["mode"]), key, kdf, float(data["set_at"]))
        except (KeyError, TypeError, ValueError, StoreError, BackupKeyError) as exc:
            log.error("the stored backup key cannot be used: %s", exc)
            return None

    async def _store_key(self, key: BackupKey) -> None:
        data = {
            "mode": str(key.mode),
            "kdf": key.kdf.to_json() if key.kdf else None,
            "key_id": key.id,
            "key_enc": self._box.encrypt(base64.b64encode(key.key).decode()),
            "set_at": key.set_at,
        }
        await self.db.set_setting(KEY_SETTING, json.dumps(data))

    async def set_passphrase(
        self, passphrase: str, confirm: str, *, actor: str = "", ip: str = ""
    ) -> dict[str, Any] | None:
        """Copies from now on are sealed with a key derived from ``passphrase``."""
        if passphrase != confirm:
            raise BackupKeyError("the two passphrases differ", field="confirm")
        check_passphrase_length(passphrase)
        try:
            await check_new_password(passphrase, "", await self._appliance_name())
        except AccountInputError as exc:
            raise BackupKeyError(
                exc.message.replace("password", "passphrase"), field="passphrase", hint=exc.hint
            ) from None
        params = KdfParams.new()
        async with self._kdf:
            key = await asyncio.to_thread(derive, passphrase, params)
        await self._adopt(BackupKey(KeyMode.PASSPHRASE, key, params, self._clock()), actor, ip)
        return await self.key_status()

    async def create_recovery_key(self, *, actor: str = "", ip: str = "") -> str:
        """A new random key for the copies from now on; its text, shown only now."""
        key = BackupKey(KeyMode.RECOVERY_KEY, random_key(), None, self._clock())
        await self._adopt(key, actor, ip)
        return format_recovery_key(key.key)

    async def _adopt(self, key: BackupKey, actor: str, ip: str) -> None:
        await self._store_key(key)
        await self.audit.record(
            AuditEvent.BACKUP_KEY_SET, username=actor, ip=ip, mode=str(key.mode), key_id=key.id
        )
        log.info("backup key set (%s, %s)", key.mode, key.id)
        # The first copy under the new key is due now.
        self._mark_dirty(now=self._clock() - self.debounce)

    def _mark_dirty(self, *, now: float) -> None:
        self._dirty_at = now
        if self._dirty_since is None:
            self._dirty_since = now
        self.scheduler.wake()

    async def key_status(self) -> dict[str, Any] | None:
        """How copies are sealed now (never the key), or None when no key is set."""
        key = await self.stored_key()
        if key is None:
            return None
        return {"mode": str(key.mode), "key_id": key.id, "set_at": key.set_at}

    async def retention(self) -> int:
        """How many copies of each kind are kept."""
        raw = await self.db.get_setting(RETENTION_SETTING)
        with contextlib.suppress(TypeError, ValueError):
            return max(1, min(MAX_RETENTION, int(raw or DEFAULT_RETENTION)))
        return DEFAULT_RETENTION

    async def set_retention(self, value: str | int, *, actor: str = "", ip: str = "") -> int:
        """Keep the newest ``value`` copies (of the configuration, and per pool)."""
        try:
            keep = int(str(value).strip())
        except ValueError:
            raise ValidationError("give a whole number of copies", field="retention") from None
        if not 1 <= keep <= MAX_RETENTION:
            raise ValidationError(f"keep between 1 and {MAX_RETENTION} copies", field="retention")
        await self.db.set_setting(RETENTION_SETTING, str(keep))
        await self.audit.record(
            AuditEvent.SETTINGS_CHANGED,
            username=actor,
            ip=ip,
            what="appliance_backup_retention",
            retention=keep,
        )
        return keep

    # ----------------------------------------------------------------- write

    async def start_copy(self, *, trigger: str = "manual", pools: bool = True) -> int:
        """Start writing a copy now (with the pools' databases); its operation id."""
        key = await self.stored_key()
        if key is None:
            raise NoBackupKeyError(
                "no backup passphrase is set",
                hint="set a passphrase (or create a recovery key) for the appliance's own backup",
            )
        datastore = self.storage.datastore
        name = await self._appliance_name()
        version = await self.db.schema_version()
        # What changed up to now goes into this copy; later changes make a new one.
        dirty = self._dirty_since
        self._dirty_since = None

        async def work(ctx: OperationContext) -> Outcome:
            return await self._work(ctx, key, datastore.root, name, version, trigger, pools)

        title = "configuration and pool databases" if pools else "configuration"
        try:
            op_id = await self.ops.start(
                APPLIANCE_BACKUP,
                work,
                target="appliance",
                title=title,
                action="copy the appliance's configuration",
                trigger=trigger,
                params={"pools": pools},
                claims=CLAIMS,
            )
        except BaseException:
            # Not started: the change still waits for a copy.
            if dirty is not None and self._dirty_since is None:
                self._dirty_since = dirty
            raise
        self._running = op_id
        return op_id

    def _header(self, key: BackupKey, name: str, trigger: str) -> dict[str, Any]:
        return {
            "created": self._clock(),
            "appliance": name,
            "xenkeep_version": xenkeep.__version__,
            "trigger": trigger,
            "key": key.header(),
        }

    async def _work(
        self,
        ctx: OperationContext,
        key: BackupKey,
        root: Path,
        name: str,
        version: int,
        trigger: str,
        pools: bool,
    ) -> Outcome:
        await ctx.stage(CopyStage.CONFIG)
        header = {
            "format": COPY_FORMAT,
            **self._header(key, name, trigger),
            "schema_version": version,
        }
        config = await ctx.in_thread(lambda w: self._write_config_copy(w, root, key, header))
        await self.db.set_setting(MAC_SETTING, config.pop("digest"))
        for warning in config.pop("warnings"):
            await ctx.log(f"catalog: {warning}", level="warning")
        await ctx.log(
            f"configuration copy {config['copy_id']} written ({config['size']} bytes; "
            + ", ".join(f"{n} {t}" for t, n in config["rows"].items() if n)
            + ")"
        )
        report: dict[str, Any] = {"config": config, "pools": []}
        failed: list[str] = []
        if pools:
            await ctx.stage(CopyStage.POOLS)
            for pool in await self.pools.pools():
                try:
                    report["pools"].append(await self._dump_pool(ctx, pool, root, key, name))
                except (XenKeepError, OSError) as exc:
                    message = exc.message if isinstance(exc, XenKeepError) else str(exc)
                    failed.append(f"{pool.name}: {message}")
                    await ctx.log(f"pool {pool.name}: database not saved: {message}", level="error")
        await ctx.stage(CopyStage.PRUNE)
        keep = await self.retention()
        removed = await asyncio.to_thread(self._prune, root, keep)
        if removed:
            await ctx.log(f"retention ({keep} copies): removed {', '.join(removed)}")
        report["removed"] = removed
        if failed:
            return Outcome(report, status=OpStatus.FAILED, error="; ".join(failed))
        if pools:
            self._next_daily = self._clock() + self.daily
        return Outcome(report)

    def _snapshot_path(self) -> Path:
        if self.db.path is None:
            raise StoreError("the database has no file to copy")
        return self.db.path

    def _write_config_copy(
        self, work: ThreadWork, root: Path, key: BackupKey, header: dict[str, Any]
    ) -> dict[str, Any]:
        copy_id = copies.new_copy_id(float(header["created"]))
        writer = CopyWriter(config_copies_dir(root), copy_id, CONFIG_SUFFIX, key.key, header)
        try:
            with read_snapshot(self._snapshot_path()) as conn:
                result = write_config(
                    conn, writer.write, self._box, mac_key=key.key, check=work.check
                )
            size = writer.commit()
        except BaseException:
            writer.abort()
            raise
        return {
            "copy_id": copy_id,
            "rows": result.rows,
            "size": size,
            "leftovers": writer.leftovers,
            "warnings": result.warnings,
            "digest": result.digest,
        }

    def _content_mac(self, key: BackupKey) -> str:
        """What a copy written now would hold, as its digest (nothing is written)."""
        with read_snapshot(self._snapshot_path()) as conn:
            return write_config(conn, lambda _data: None, self._box, mac_key=key.key).digest

    async def _dump_pool(
        self, ctx: OperationContext, pool: Pool, root: Path, key: BackupKey, name: str
    ) -> dict[str, Any]:
        client = self.pools.connection(pool.id).client
        refs = await client.call("pool.get_all")
        if not refs:
            raise UpstreamError(f"{pool.url} answers but has no pool")
        pool_uuid = str(await client.call("pool.get_uuid", refs[0]))
        task = await ctx.task(subject=pool_uuid, name=pool.name, stage="dump")
        await ctx.update_task(task, status="running", started_at=self._clock())
        header = {
            "format": POOL_FORMAT,
            **self._header(key, name, "daily"),
            "pool_uuid": pool_uuid,
            "pool_name": pool.name,
        }
        copy_id = copies.new_copy_id(float(header["created"]))
        writer = await asyncio.to_thread(
            CopyWriter, pool_copies_dir(root, pool_uuid), copy_id, POOL_SUFFIX, key.key, header
        )
        last = 0.0

        async def sink(data: bytes) -> None:
            await asyncio.to_thread(writer.write, data)

        async def progress(done: int, _total: int | None) -> None:
            nonlocal last
            if self._clock() - last >= _PROGRESS_EVERY:
                last = self._clock()
                await ctx.update_task(task, bytes=done)

        try:
            result = await export_pool_database(client, sink, progress=progress)
            size = await asyncio.to_thread(writer.commit)
        except BaseException as exc:
            await asyncio.to_thread(writer.abort)
            error = exc.message if isinstance(exc, XenKeepError) else str(exc) or type(exc).__name__
            await ctx.update_task(task, status="failed", error=error, finished_at=self._clock())
            raise
        await ctx.update_task(
            task, status="success", bytes=result.bytes, finished_at=self._clock(), stage="done"
        )
        await ctx.log(f"pool {pool.name}: database saved as {copy_id} ({result.bytes} bytes)")
        return {
            "pool_uuid": pool_uuid,
            "pool": pool.name,
            "copy_id": copy_id,
            "bytes": result.bytes,
            "size": size,
        }

    @staticmethod
    def _prune(root: Path, keep: int) -> list[str]:
        removed = copies.prune(config_copies_dir(root), CONFIG_SUFFIX, keep)
        for _uuid, directory in pool_copies_dirs(root):
            removed += copies.prune(directory, POOL_SUFFIX, keep)
        return removed

    # ------------------------------------------------------------------ read

    async def copies(self) -> list[dict[str, Any]]:
        """The configuration copies in the backup storage, newest first."""
        if not self.storage.configured:
            return []
        root = self.storage.datastore.root
        found = await asyncio.to_thread(copies.list_copies, config_copies_dir(root), CONFIG_SUFFIX)
        return [c.as_dict() for c in found]

    async def pool_copies(self) -> list[dict[str, Any]]:
        """Per pool: its database dumps in the backup storage, newest first."""
        if not self.storage.configured:
            return []
        root = self.storage.datastore.root

        def gather() -> list[dict[str, Any]]:
            out = []
            for pool_uuid, directory in pool_copies_dirs(root):
                found = [c.as_dict() for c in copies.list_copies(directory, POOL_SUFFIX)]
                if found:
                    name = next((c["pool_name"] for c in found if c["pool_name"]), "")
                    out.append({"pool_uuid": pool_uuid, "pool_name": name, "copies": found})
            return out

        return await asyncio.to_thread(gather)

    async def status(self) -> dict[str, Any]:
        """Everything the storage page and the API show about the appliance's backup."""
        recent = await self.ops.find(kinds=[APPLIANCE_BACKUP.kind], limit=5)
        return {
            "key": await self.key_status(),
            "retention": await self.retention(),
            "storage_configured": self.storage.configured,
            "copies": await self.copies(),
            "pools": await self.pool_copies(),
            "change_pending": self.change_pending,
            "next_daily": self._next_daily,
            "running": self._running
            if self._running and self.ops.is_running(self._running)
            else None,
            "recent": recent,
        }

    async def pool_dump(self, pool_uuid: str, copy_id: str) -> AsyncGenerator[bytes, None]:
        """A pool database dump, decrypted with the appliance's backup key, piece by piece.

        The first piece is read before this returns: a wrong key or a
        damaged start is an error before any byte is sent.
        """
        key = await self.stored_key()
        if key is None:
            raise NoBackupKeyError("no backup key is set on this appliance")
        try:
            directory = pool_copies_dir(self.storage.datastore.root, pool_uuid)
        except ValueError:
            raise CopyNotFoundError(f"there is no pool {pool_uuid!r}") from None
        path = copies.copy_path(directory, copy_id, POOL_SUFFIX)
        try:
            f = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise CopyNotFoundError(f"there is no copy {copy_id} of pool {pool_uuid}") from None
        try:
            header = await asyncio.to_thread(read_header, cast(BinaryIO, f))
            reader = iter(SealReader(cast(BinaryIO, f), key.key, header))
            first = await asyncio.to_thread(next, reader, b"")
        except SealedFormatError as exc:
            await asyncio.to_thread(f.close)
            raise CopyDamagedError(f"this dump cannot be opened: {exc}") from None
        except BaseException:
            await asyncio.to_thread(f.close)
            raise
        return _pieces(f, reader, first)

    # --------------------------------------------------------------- restore

    @staticmethod
    def _scratch_name(owner: str) -> str:
        return _OWNER.sub("_", owner)[:64] + ".sqlite"

    async def open_copy(self, owner: str, copy_id: str, secret: str) -> dict[str, Any]:
        """Check a whole copy with ``secret`` and keep it ready for :meth:`restore`
        by ``owner``; what it holds. Nothing of the configuration changes."""
        if not secret:
            raise BackupKeyError("enter the passphrase (or the recovery key)", field="secret")
        if len(secret) > 1024:
            raise BackupKeyError("that is longer than any passphrase", field="secret")
        directory = config_copies_dir(self.storage.datastore.root)
        path = copies.copy_path(directory, copy_id, CONFIG_SUFFIX)
        if not await asyncio.to_thread(path.exists):
            raise CopyNotFoundError(f"there is no copy {copy_id}")
        await self.discard(owner)
        scratch = self._scratch_dir / self._scratch_name(owner)
        async with self._kdf:
            loaded = await asyncio.to_thread(load_copy, path, secret, self._box, scratch)
        spec = loaded.header.fields.get("key") or {}
        kdf = KdfParams.from_json(spec["kdf"]) if spec.get("kdf") else None
        key = BackupKey(KeyMode(str(spec.get("mode", ""))), loaded.key, kdf, self._clock())
        summary = loaded.summary
        self._opened[owner] = _Opened(
            copy_id, scratch, summary, key, self._clock() + OPENED_SECONDS
        )
        return summary.as_dict()

    async def opened(self, owner: str) -> dict[str, Any] | None:
        """The copy ``owner`` opened and has not restored yet, or None."""
        opened = self._opened.get(owner)
        if opened is None:
            return None
        if opened.expires < self._clock():
            await self.discard(owner)
            return None
        return opened.summary.as_dict()

    async def discard(self, owner: str) -> None:
        """Forget the copy ``owner`` opened."""
        opened = self._opened.pop(owner, None)
        if opened is not None:
            await asyncio.to_thread(remove_scratch, opened.scratch)

    async def restore(
        self,
        owner: str,
        *,
        confirm: str | None,
        actor: str = "",
        ip: str = "",
        where: str = "",
    ) -> dict[str, Any]:
        """Replace the configuration with the copy ``owner`` opened, in one transaction.

        ``confirm`` must be :data:`RESTORE_WORD` unless None (the first-boot
        wizard, where there is nothing to lose). Every session ends (the
        accounts are the copy's now); the pools are connected again. Audited.
        """
        if confirm is not None and confirm.strip() != RESTORE_WORD:
            raise RestoreConfirmationError(
                f"type {RESTORE_WORD} to replace this appliance's configuration", field="confirm"
            )
        if await self.opened(owner) is None:
            raise CopyNotFoundError(
                "open a copy with its passphrase first (an opened copy waits 15 minutes)"
            )
        opened = self._opened[owner]
        async with self.ops.holding(
            [REPLACES_CONFIGURATION], action="replace the configuration", noun="restore"
        ):
            rows = await apply_copy(self.db, opened.scratch)
        for other in list(self._opened):
            await self.discard(other)
        if await self.stored_key() is None:
            # A new appliance goes on with the key its configuration came with.
            await self._store_key(opened.key)
        summary = opened.summary.as_dict()
        await self.audit.record(
            AuditEvent.CONFIG_RESTORED,
            username=actor,
            ip=ip,
            copy=opened.copy_id,
            copied_from=summary["appliance"],
            created=summary["created"],
            where=where,
            **{k: v for k, v in summary["counts"].items() if k in ("jobs", "pools", "users")},
        )
        log.warning(
            "configuration restored from copy %s of %s (%s)",
            opened.copy_id,
            summary["appliance"],
            ", ".join(f"{n} {t}" for t, n in rows.items()),
        )
        await self.pools.reload()
        self.scheduler.wake()
        return summary


async def _pieces(f: Any, reader: Any, first: bytes) -> AsyncGenerator[bytes, None]:
    try:
        piece = first
        while piece:
            yield piece
            piece = await asyncio.to_thread(next, reader, b"")
    finally:
        await asyncio.to_thread(f.close)
