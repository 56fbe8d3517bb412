"""What every backup-side run (a backup, a restore) has: its operation, a pool
and a datastore, and sub-tasks in the words of backups (VM, disk)."""

from __future__ import annotations

from typing import Any, Final

from xenkeep.ops import OperationContext
from xenkeep.repo.datastore import Datastore
from xenkeep.xapi.client import XapiClient

#: Facts of a backup sub-task kept beside the common columns of an operation task.
TASK_DETAIL: Final = frozenset({"transfer", "reason", "merge_seconds", "point_id"})


class RunBase:
    """The parts a backup run and a restore run share; create one per run."""

    def __init__(self, *, ctx: OperationContext, client: XapiClient, datastore: Datastore) -> None:
        self.ctx = ctx
        self.run_id = ctx.id
        self.client = client
        self.datastore = datastore

    async def _log(self, msg: str, *, level: str = "info", task_id: int | None = None) -> None:
        """One line in the run's log (UI, API, report) and in the journal."""
        await self.ctx.log(msg, level=level, task_id=task_id)

    async def _new_task(
        self,
        *,
        vm_uuid: str,
        vm_name: str,
        stage: str,
        parent_id: int | None = None,
        disk_key: str | None = None,
    ) -> int:
        """A sub-task for a VM (or, with ``parent_id``, one disk of it)."""
        return await self.ctx.task(
            subject=vm_uuid, name=vm_name, stage=stage, parent_id=parent_id, part=disk_key
        )

    async def _update_task(self, task_id: int, **fields: Any) -> None:
        """Change a VM's or disk's sub-task; backup facts go to its detail."""
        detail = {k: fields.pop(k) for k in list(fields) if k in TASK_DETAIL}
        if "vm_name" in fields:
            fields["name"] = fields.pop("vm_name")
        await self.ctx.update_task(task_id, detail, **fields)
