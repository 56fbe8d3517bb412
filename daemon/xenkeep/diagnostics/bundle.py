"""The support bundle: one ``tar.gz`` for a support call, streamed as it is made.

Members, under ``xenkeep-support-<host>-<UTC time>/``:

``README.txt``         what the bundle is and what was left out
``versions.json``      daemon, schema, image, Python, kernel
``diagnostics.json``   the latest result of every check, with the summary
``config.json``        settings, appliance, pools, mail, storage, verify
                       schedule, sign-in providers, accounts, the settings
                       table: passwords, tokens, keys, cookies and the setup
                       token left out or redacted
``jobs.json``          the backup jobs with their last run
``operations.json``    the recent operations, and the log of those that failed
``journal.log``        the system journal of the last three days (capped)

The archive is written by :mod:`tarfile` in stream mode in a worker thread,
and its bytes handed to the event loop a chunk at a time through a small
bounded queue: the answer starts at once, memory stays flat whatever the
journal's size (which is spooled to a temporary file, since a tar header
needs a member's size), and a client that goes away stops the writer.
Everything passes through a :class:`~.redact.Redactor` that knows every
secret the appliance holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import json
import platform
import re
import tarfile
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from xenkeep import __version__
from xenkeep.errors import XenKeepError
from xenkeep.secretbox import KEY_NAME, SecretBox
from xenkeep.store import Database, latest_schema_version
from xenkeep.system.journal import Journal, JournalQuery

from . import bundlestore
from .redact import REDACTED, Redactor

if TYPE_CHECKING:
    from xenkeep.backup.manager import BackupManager
    from xenkeep.config import Settings
    from xenkeep.pools.manager import PoolManager
    from xenkeep.system.identity import IdentityManager
    from xenkeep.system.tls import TlsMaterial

    from .manager import DiagnosticsService

#: How far back the journal goes, and at most how many entries.
JOURNAL_SPAN: Final = 3 * 86400.0
JOURNAL_MAX_ENTRIES: Final = 200_000
#: Recent operations listed, and how many failed ones bring their log.
OPERATIONS_LISTED: Final = 200
FAILED_LOGS: Final = 20
#: Chunks between the writer thread and the answer; a chunk is what gzip flushes.
QUEUE_CHUNKS: Final = 16


class BundleAbortedError(XenKeepError):
    """The reader of the bundle went away; the writer stops."""

    code = "bundle_aborted"


@dataclass
class BundleContent:
    """What goes in, gathered on the event loop before the writer starts."""

    folder: str
    members: dict[str, bytes]
    redactor: Redactor
    journal: Journal
    since: float


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:40] or "xenkeep"


README: Final = """XenKeep support bundle
======================

Made by XenKeep {version} on {host} at {when} (UTC).

versions.json      daemon, database schema, image, Python, kernel
diagnostics.json   the latest result of every health check
config.json        the appliance's settings, pools, mail, storage, jobs' schedules,
                   sign-in providers and accounts
jobs.json          backup jobs and their last runs
operations.json    recent operations; the logs of the failed ones
journal.log        the system journal of the last three days

Left out on purpose: passwords (pools, mail, sign-in providers), API tokens,
session cookies and CSRF tokens, TOTP secrets, the setup token, the TLS
private key and the key that encrypts stored secrets. Text that looked like
one of them was replaced by "{redacted}".
"""


class SupportBundle:
    """Makes support bundles from the daemon's services."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        secrets: SecretBox | None,
        diagnostics: DiagnosticsService,
        backup: BackupManager,
        pools: PoolManager,
        identity: IdentityManager,
        journal: Journal,
        tls: TlsMaterial,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.db = db
        self.secrets = secrets
        self.diagnostics = diagnostics
        self.backup = backup
        self.pools = pools
        self.identity = identity
        self.journal = journal
        self.tls = tls
        self._clock = clock

    def filename(self, now: float | None = None) -> str:
        """``xenkeep-support-<host>-<UTC time>.tar.gz``."""
        return self._folder(self._clock() if now is None else now) + ".tar.gz"

    def _folder(self, now: float) -> str:
        stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%d-%H%M%S")
        return f"xenkeep-support-{_safe_name(self.settings.effective_hostname)}-{stamp}"

    # ---------------------------------------------------------------- gather

    async def _known_secrets(self) -> list[str]:
        values = await bundlestore.secret_values(self.db, self.secrets)
        smtp = await self.backup.smtp_settings()
        if smtp is not None and smtp.password:
            values.append(smtp.password)

        def files() -> list[str]:
            found = []
            for path in (
                self.settings.setup_token_path,
                self.settings.state_dir / KEY_NAME,
                self.tls.key_path,
            ):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    text = path.read_text().strip()
                    found += [text, *(line for line in text.splitlines() if len(line) > 16)]
            return found

        return values + await asyncio.to_thread(files)

    async def _config(self) -> dict[str, Any]:
        ident = await self.identity.get()
        smtp = await self.backup.smtp_settings()
        mail = None
        if smtp is not None:
            mail = dataclasses.asdict(smtp)
            mail["password"] = REDACTED if smtp.password else ""
        return {
            "settings": {
                f.name: str(getattr(self.settings, f.name))
                for f in dataclasses.fields(self.settings)
            },
            "appliance": {"name": ident.name, "timezone": ident.timezone},
            "tls_fingerprint": self.tls.fingerprint,
            "pools": [
                {**dataclasses.asdict(p), "status": self.pools.status(p.id)}
                for p in await self.pools.pools()
            ],
            "mail": mail,
            "storage": await self.backup.storage_status(),
            "verify_schedule": await self.backup.verify_schedule(),
            "sign_in_providers": await bundlestore.providers(self.db),
            "accounts": await bundlestore.accounts(self.db),
            "settings_table": await bundlestore.settings_table(self.db),
        }

    async def _versions(self) -> dict[str, Any]:
        image = {}
        for r in await self.diagnostics.latest():
            if r.check.startswith("version."):
                image[r.check] = r.value
        return {
            "daemon": __version__,
            "schema": await self.db.schema_version(),
            "schema_of_this_daemon": await asyncio.to_thread(latest_schema_version),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "checks": image,
        }

    async def _operations(self) -> dict[str, Any]:
        ops = await self.backup.ops.find(limit=OPERATIONS_LISTED)
        failed = [op for op in ops if op["status"] == "failed"][:FAILED_LOGS]
        logs = {
            str(op["id"]): await self.backup.ops.store.log_lines(int(op["id"])) for op in failed
        }
        return {"operations": ops, "failed_logs": logs}

    async def collect(self) -> BundleContent:
        """Everything but the journal, gathered and redacted."""
        now = self._clock()
        redactor = Redactor(await self._known_secrets())
        view = await self.diagnostics.view()
        parts = {
            "versions.json": await self._versions(),
            "diagnostics.json": {"results": view["results"], "summary": view["summary"]},
            "config.json": await self._config(),
            "jobs.json": {"jobs": await self.backup.jobs()},
            "operations.json": await self._operations(),
        }
        stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        members = {
            "README.txt": README.format(
                version=__version__,
                host=self.settings.effective_hostname,
                when=stamp,
                redacted=REDACTED,
            ).encode()
        }
        members.update({name: _json(redactor.data(data)) for name, data in parts.items()})
        return BundleContent(self._folder(now), members, redactor, self.journal, now - JOURNAL_SPAN)

    # ----------------------------------------------------------------- write

    @staticmethod
    def write_blocking(content: BundleContent, sink: BinaryIO) -> None:
        """Write the archive to ``sink`` (blocking; run in a thread)."""
        mtime = int(content.since + JOURNAL_SPAN)
        with tarfile.open(fileobj=sink, mode="w|gz") as tar:

            def add(name: str, data: BinaryIO, size: int) -> None:
                info = tarfile.TarInfo(f"{content.folder}/{name}")
                info.size, info.mtime, info.mode = size, mtime, 0o600
                tar.addfile(info, data)

            for name, data in content.members.items():
                add(name, io.BytesIO(data), len(data))
            with tempfile.TemporaryFile() as spool:
                query = JournalQuery(since=content.since)
                for n, entry in enumerate(content.journal.iter_blocking(query)):
                    if n >= JOURNAL_MAX_ENTRIES:
                        spool.write(b"[journal cut: more entries than a bundle carries]\n")
                        break
                    spool.write((content.redactor.text(entry.line()) + "\n").encode())
                size = spool.tell()
                spool.seek(0)
                add("journal.log", spool, size)

    async def stream(self, write: Callable[[bytes], Awaitable[Any]]) -> None:
        """Make a bundle, handing its bytes to ``write`` as they come."""
        content = await self.collect()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        stop = threading.Event()

        def put(item: bytes | None) -> None:
            if stop.is_set():
                raise BundleAbortedError("the bundle's reader went away")
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

        class Sink(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b: Any) -> int:
                data = bytes(b)
                if data:
                    put(data)
                return len(data)

        def produce() -> None:
            try:
                self.write_blocking(content, Sink())  # type: ignore[arg-type]
            finally:
                with contextlib.suppress(BundleAbortedError):
                    put(None)

        producer = asyncio.ensure_future(asyncio.to_thread(produce))
        try:
            while (chunk := await queue.get()) is not None:
                await write(chunk)
        finally:
            stop.set()
            # Free a writer blocked on the full queue, then let it end.
            while not producer.done():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                await asyncio.wait({producer}, timeout=0.05)
        if not producer.cancelled() and producer.exception() is not None:
            exc = producer.exception()
            if not isinstance(exc, BundleAbortedError):
                raise exc  # type: ignore[misc]
