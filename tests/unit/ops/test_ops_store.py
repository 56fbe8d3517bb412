"""The operation store on a real SQLite database: a running parent task sums its children."""

from __future__ import annotations

from pathlib import Path

from xenkeep.ops import OpKind
from xenkeep.ops import OpStatus as RunStatus
from xenkeep.ops.store import OperationStore
from xenkeep.store import open_database

MiB = 1 << 20


async def test_a_running_vm_shows_the_sum_of_its_disks(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "x.db")
    try:
        h = OperationStore(db)
        run = await h.create(OpKind.BACKUP, target="", title="j", trigger="manual")
        vm = await h.create_task(run, subject="u", name="web", stage="export")
        running = RunStatus.RUNNING.value
        await h.update_task(vm, status=running)
        d0 = await h.create_task(
            run, subject="u", name="web", stage="export", parent_id=vm, part="0"
        )
        d1 = await h.create_task(
            run, subject="u", name="web", stage="export", parent_id=vm, part="1"
        )
        await h.update_task(
            d0, status=running, bytes=3 * MiB, total_bytes=4 * MiB, speed=2.0 * MiB, eta=0.5
        )
        await h.update_task(
            d1, status=running, bytes=1 * MiB, total_bytes=8 * MiB, speed=1.0 * MiB, eta=7.0
        )
        [row, *_] = await h.tasks(run)
        assert (row["bytes"], row["total_bytes"]) == (4 * MiB, 12 * MiB)
        assert (row["speed"], row["eta"]) == (3.0 * MiB, 7.0)

        # A finished disk still counts its bytes but no longer its speed.
        await h.update_task(d1, status=RunStatus.SUCCESS.value, bytes=8 * MiB, eta=0)
        [row, *_] = await h.tasks(run)
        assert (row["bytes"], row["speed"], row["eta"]) == (11 * MiB, 2.0 * MiB, 0.5)

        # An unknown size leaves the VM's total unknown.
        await h.update_task(d0, total_bytes=None)
        [row, *_] = await h.tasks(run)
        assert row["total_bytes"] is None

        # Once the VM ends, its own figures stand.
        await h.update_task(vm, status=RunStatus.SUCCESS.value, bytes=5, speed=1.0, eta=0)
        [row, *_] = await h.tasks(run)
        assert (row["bytes"], row["speed"], row["eta"]) == (5, 1.0, 0)
    finally:
        await db.close()
