"""What every console command is given: its arguments, the daemon's settings,
and the one way to open the daemon's database with an :class:`AuthManager`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.manager import AuthManager
from xenkeep.config import Settings, load_settings
from xenkeep.store import Database, open_database

T = TypeVar("T")


class State(NamedTuple):
    """The daemon's database, open, and the auth service over it."""

    db: Database
    auth: AuthManager


def become_state_owner(settings: Settings) -> None:
    """Run as the daemon's user when started as root.

    Files SQLite creates (the WAL, the shared-memory index) would otherwise
    belong to root and lock the unprivileged daemon out of its database.
    """
    if os.geteuid() != 0 or not settings.state_dir.exists():
        return
    st = settings.state_dir.stat()
    if st.st_uid == 0:
        return
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)


@dataclass(frozen=True)
class Context:
    """One command's parsed arguments and, when it needs them, the settings."""

    args: argparse.Namespace
    loaded: Settings | None = None

    @classmethod
    def build(
        cls, args: argparse.Namespace, *, needs_settings: bool, as_state_owner: bool
    ) -> Context:
        """Load the settings named by ``--config`` and drop root, as the command asks."""
        if not needs_settings:
            return cls(args)
        settings = load_settings(args.config)
        if as_state_owner:
            become_state_owner(settings)
        return cls(args, settings)

    @property
    def settings(self) -> Settings:
        """The daemon's settings; only for commands registered as needing them."""
        if self.loaded is None:
            raise RuntimeError(f"`{self.args.command}` was registered without settings")
        return self.loaded

    @contextlib.asynccontextmanager
    async def state(self) -> AsyncIterator[State]:
        """The database opened (and migrated) for the span of the block."""
        db = await open_database(self.settings.database_path)
        try:
            yield State(db, AuthManager(db, AuditLog(db), self.settings))
        finally:
            await db.close()

    def with_state(self, work: Callable[[State], Awaitable[T]]) -> T:
        """Run ``work`` on an open database in an event loop of its own; its result."""

        async def run() -> T:
            async with self.state() as state:
                return await work(state)

        return asyncio.run(run())
