"""What every run (a backup, a restore) has: an id, a pool, a datastore and a log."""

from __future__ import annotations

import logging

from xenkeep.repo.datastore import Datastore
from xenkeep.xapi.client import XapiClient

from .history import BackupHistory

log = logging.getLogger("xenkeep.backup.run")


class RunBase:
    """The parts a backup run and a restore run share; create one per run."""

    def __init__(
        self,
        *,
        run_id: int,
        client: XapiClient,
        datastore: Datastore,
        history: BackupHistory,
    ) -> None:
        self.run_id = run_id
        self.client = client
        self.datastore = datastore
        self.history = history

    async def _log(self, msg: str, *, level: str = "info", task_id: int | None = None) -> None:
        """One line in the run's log (UI, API, report) and in the journal."""
        log.log(logging.ERROR if level == "error" else logging.INFO, "run %s: %s", self.run_id, msg)
        await self.history.log(self.run_id, msg, level=level, task_id=task_id)
